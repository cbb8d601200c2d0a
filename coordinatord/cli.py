"""The ``coordinatord`` command: parse, load settings, configure logging, run.

Only the standard library is imported at module level: ``coordinatord shim`` must not pay for
pydantic, mcp, redis or structlog. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from coordinatord import __version__

# Every command, the shim included, starts here: importing typing would cost each ~1.7 ms, and
# the annotations need it only for type checkers (mypy takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EPILOG = """\
examples:
  coordinatord serve                       run the daemon (embedded Valkey unless a backend is set)
  coordinatord editor add kilocode         put the shim into an editor's MCP config (see editor -h)
  coordinatord editor list                 editor configs naming coordinatord; do they reach it
  coordinatord doctor                      check the set-up, each problem with its fix
  coordinatord status                      is the daemon up; connections, jobs, backend health
  coordinatord top                         live view: agents, locks, tasks, budgets, activity
  coordinatord tail --follow               agent activity as it happens
  coordinatord service install --now       run it as a systemd user service, socket-activated
  coordinatord stop                        stop the daemon (and systemd's socket for it, if any)
  coordinatord archive --all               archive every live session to .kilocode/sessions/ now
  coordinatord sessions list               sessions of this project, live and archived
  coordinatord projects list               the projects the jobs walk, and where they live
  coordinatord projects forget ID --purge  forget a project no editor uses and delete its keys
  coordinatord git-guard install           refuse commits of files other agents reserved
  coordinatord config                      print the effective settings, secrets masked
  coordinatord shim --agent kilocode       what an editor's MCP config runs
"""


SHIM_HELP: dict[str, str] = {
    "help": "relay an editor's stdio to the daemon (put this in mcp.json)",
    "description": (
        "Relay MCP between stdin/stdout and the daemon's socket. Standard library only. Survives "
        "daemon restarts (calls in flight get an error, the session goes on) and starts the daemon "
        "when none answers."
    ),
    "epilog": 'example mcp.json entry:\n  "command": "coordinatord", "args": ["shim", "--agent", "kilocode"]',
}


def _add_shim_arguments(shim: argparse.ArgumentParser) -> None:
    shim.add_argument("--socket", metavar="PATH", help="daemon socket (default: as the daemon finds it)")
    shim.add_argument(
        "--config", metavar="FILE", help="config file (default: ~/.config/coordinatord/config.toml)"
    )
    shim.add_argument(
        "--no-autostart",
        action="store_true",
        help="never start a daemon; wait shim.wait_for_daemon_s for one (default: shim.autostart)",
    )
    shim.add_argument("--agent", metavar="NAME", help="this agent's name (default: the MCP client's name)")
    shim.add_argument(
        "--project",
        metavar="DIR",
        help="project root (default: the repository holding the cwd; outside one, no project)",
    )
    shim.add_argument(
        "--tools",
        metavar="PROFILE|GROUPS",
        help="what this editor sees: a profile (default: the seed's tools and everyday coordination; "
        "minimal: less; full: every group) or comma-separated tool groups, e.g. kv,locks "
        "(default: tools.groups)",
    )


def _shim_parser() -> argparse.ArgumentParser:
    """``coordinatord shim`` alone: every editor session starts one, so it must not build the
    other commands' parsers (``editor`` lists every editor's targets: ~12 ms of imports)."""
    parser = argparse.ArgumentParser(
        prog="coordinatord shim",
        description=SHIM_HELP["description"],
        epilog=SHIM_HELP["epilog"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The same flags as `coordinatord shim` in the full parser, whose --help lists them.
    _add_shim_arguments(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordinatord",
        description="Coordination daemon for AI coding agents: shared state in Redis, served as MCP tools.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"coordinatord {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = _command(
        commands,
        "serve",
        help="run the daemon in the foreground",
        description="Run the daemon: listen on the Unix socket and serve MCP tools until SIGTERM/SIGINT.",
        epilog="example:\n  coordinatord serve --socket /tmp/coord.sock --state-dir /tmp/coord-state",
    )
    _add_settings_flags(serve)
    _add_host_id_flag(serve)

    _add_shim_arguments(_command(commands, "shim", **SHIM_HELP))

    config = _command(
        commands,
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the settings the daemon would run with, as JSON, secrets masked.",
        epilog="example:\n  REDIS_URL=redis://localhost:6379/0 coordinatord config",
    )
    _add_settings_flags(config)
    _add_host_id_flag(config)

    doctor = _command(
        commands,
        "doctor",
        help="check the set-up: settings, socket, daemon, backend, service, editors, folders",
        description=(
            "Check everything coordinatord depends on, one line each (✓ fine, ! worth a look, ✗ broken), "
            "each problem with what fixes it. Compares this shell's settings with those a daemon "
            "started by an editor's shim would see. Exits 1 when something is broken."
        ),
        epilog=(
            "examples:\n  coordinatord doctor\n"
            "  coordinatord doctor --json | jq '.checks[] | select(.status != \"ok\")'"
        ),
    )
    doctor.add_argument("--config", metavar="FILE", help="config file (default: see README)")
    doctor.add_argument(
        "--json", action="store_true", help="print JSON: {ok, checks: [{name, status, summary, fix}]}"
    )
    _add_no_color_flag(doctor)

    status = _command(
        commands,
        "status",
        help="is the daemon up: pid, uptime, backend health, connections, agents, locks, jobs",
        description="Ask the running daemon for its status. Exits 1 when no daemon answers. Coloured "
        "on a terminal, unless --no-color or NO_COLOR is set.",
        epilog="examples:\n  coordinatord status\n  coordinatord status --json | jq .jobs",
    )
    _add_client_socket_flag(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a report")
    _add_no_color_flag(status)

    stop = _command(
        commands,
        "stop",
        help="stop the running daemon and wait until it has",
        description=(
            "Stop the running daemon: calls in flight finish first, as on SIGTERM. Under the systemd "
            "units this stops both coordinatord.socket and coordinatord.service (stopping the service "
            "alone leaves systemd listening, and the next connection starts it again). Exits 0 when it "
            "stopped, 1 when none was running, 3 when it did not stop."
        ),
        epilog="examples:\n  coordinatord stop\n  coordinatord stop --socket /tmp/coord.sock --timeout 5",
    )
    _add_client_socket_flag(stop)
    stop.add_argument(
        "--timeout",
        type=float,
        default=40.0,
        metavar="S",
        help="how long to wait for it to exit (default 40)",
    )

    service = _command(
        commands,
        "service",
        help="install or uninstall the systemd user units (service + socket)",
        description=(
            "Write coordinatord.service (ExecStart: this coordinatord, Type=notify, watchdog) and "
            "coordinatord.socket (socket activation on the daemon's socket) into "
            "~/.config/systemd/user, then daemon-reload and enable the socket; or disable and remove "
            "them. Without a systemd user manager (WSL without systemd, containers) nothing is "
            "written: the shim's auto-start covers that case. See docs/service.md."
        ),
        epilog=(
            "examples:\n  coordinatord service install --dry-run\n  coordinatord service install --now\n"
            "  coordinatord service uninstall"
        ),
    )
    service.add_argument("action", choices=["install", "uninstall"], help="what to do")
    service.add_argument("--now", action="store_true", help="install: also start the socket now")
    service.add_argument(
        "--dry-run", action="store_true", help="print the files and the commands; write and run nothing"
    )
    service.add_argument(
        "--force", action="store_true", help="install: replace unit files that coordinatord did not write"
    )

    tail = _command(
        commands,
        "tail",
        help="show agent activity (tool calls, job actions) from the Redis stream",
        description="Print activity events of a project, read from its Redis stream, so it works "
        "against a shared Redis from any machine.",
        epilog="examples:\n  coordinatord tail --follow\n  coordinatord tail --agent kilocode --json",
    )
    _add_settings_flags(tail)
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument("--agent", metavar="NAME", help="only this agent's events")
    tail.add_argument(
        "--project", metavar="DIR_OR_ID", help="project root or id (default: git root of the cwd)"
    )
    tail.add_argument(
        "--lines", "-n", type=int, default=20, metavar="N", help="events to show first (default 20)"
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per event")

    top = _command(
        commands,
        "top",
        help="live view of a project: agents, locks, tasks, rate limits, activity (q quits)",
        description="A live view of one project (default: the one holding the current directory) or "
        "of every known one, refreshed from the running daemon. q or Ctrl-C quits. Prints one frame "
        "and exits with --once or when stdout is not a terminal; exits 1 then if no daemon answers.",
        epilog="examples:\n  coordinatord top\n  coordinatord top --all\n"
        "  coordinatord top --once --project ~/src/app | less",
    )
    which = top.add_mutually_exclusive_group()
    which.add_argument(
        "--project", metavar="DIR_OR_ID", help="project root or id (default: git root of the cwd)"
    )
    which.add_argument("--all", action="store_true", help="every known project (the most recent first)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    _add_client_socket_flag(top)
    _add_no_color_flag(top)
    top.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between refreshes (default 1)"
    )

    archive = _command(
        commands,
        "archive",
        help="run the session archiver now",
        description="Ask the daemon to archive sessions to <project>/.kilocode/sessions/ now.",
        epilog="examples:\n  coordinatord archive\n  coordinatord archive --all --project ~/src/app",
    )
    _add_client_socket_flag(archive)
    archive.add_argument(
        "--project", metavar="DIR_OR_ID", help="only this project (default: every known project on this host)"
    )
    archive.add_argument(
        "--all",
        action="store_true",
        help="every live session, not only the due ones (idle past jobs.archive_idle_s or expiring)",
    )
    archive.add_argument("--json", action="store_true", help="print JSON instead of a report")

    sessions = _command(
        commands,
        "sessions",
        help="list sessions, or restore an archived one",
        description="Sessions of a project: live ones in Redis and archived ones on disk.",
        epilog=(
            "examples:\n  coordinatord sessions list\n  coordinatord sessions restore session-2026-02-13-001"
        ),
    )
    sessions.add_argument("action", choices=["list", "restore"], help="what to do")
    sessions.add_argument("session_id", nargs="?", help="the session to restore")
    _add_client_socket_flag(sessions)
    sessions.add_argument(
        "--project", metavar="DIR_OR_ID", help="project root or id (default: git root of the cwd)"
    )
    sessions.add_argument("--force", action="store_true", help="restore over a live session")
    sessions.add_argument("--json", action="store_true", help="print JSON")

    projects = _command(
        commands,
        "projects",
        help="list the known projects, forget one, or move one's keys to a new id",
        description="The projects the daemon's jobs walk (announced by shims or in [[projects]] of "
        "config): list them (with where each id comes from: .coordinatord.toml, origin or the path), "
        "forget one (and with --purge delete every key of its namespace), or migrate: copy every key "
        "of namespace OLD into NEW with its TTL (page by page, safe on Redis Cluster), then delete OLD "
        "and forget it (unless --keep). A lock held in OLD arrives in NEW with its holder, token, "
        "fencing number and remaining lease; an agent still working in OLD through a daemon on "
        "another host loses it when OLD is deleted: use --keep until every host resolves NEW.",
        epilog=(
            "examples:\n  coordinatord projects list\n  coordinatord projects forget my-app-845bd79b59\n"
            "  coordinatord projects forget ~/src/old-app --purge\n"
            "  coordinatord projects migrate app-1a2b3c4d5e github.com/org/app\n"
            "  coordinatord projects migrate app-1a2b3c4d5e ~/src/app --keep"
        ),
    )
    projects.add_argument("action", choices=["list", "forget", "migrate"], help="what to do")
    projects.add_argument(
        "project",
        nargs="?",
        metavar="ID_OR_ROOT",
        help="forget: the project; migrate: OLD, the id to move from",
    )
    projects.add_argument(
        "new", nargs="?", metavar="NEW", help="migrate: the id (or root, for its id) to move the keys to"
    )
    _add_client_socket_flag(projects)
    projects.add_argument(
        "--purge", action="store_true", help="forget: also delete every key of the project's namespace"
    )
    projects.add_argument(
        "--force",
        action="store_true",
        help="forget: even while an editor is connected in it; migrate: even when NEW holds keys "
        "(NEW's own keys win, sets and indexes merge, counters keep the larger value) or an editor "
        "works in OLD",
    )
    projects.add_argument("--keep", action="store_true", help="migrate: keep OLD's keys and registry entry")
    projects.add_argument("--json", action="store_true", help="print JSON")

    # --- git-guard (issue 12: file reservations) ---
    git_guard = _command(
        commands,
        "git-guard",
        help="a git pre-commit hook refusing commits of files another agent reserved",
        description="Install (or uninstall) a pre-commit hook in a repository that refuses a commit "
        "whose staged files another agent reserved exclusively (files_reserve), naming the agent, the "
        "reason and the time left. It respects core.hooksPath and worktrees; an existing pre-commit "
        "hook is moved aside and run after the check, and uninstall puts it back. The hook asks the "
        "daemon over its socket and lets the commit through, with a warning, when no daemon answers. "
        "This agent (whose own reservations never block) is $COORDINATORD_AGENT; unset, every "
        "exclusive reservation blocks. Bypass: COORDINATORD_GUARD=off, or git commit --no-verify. "
        "check: run the hook's check on the staged files now.",
        epilog="examples:\n  coordinatord git-guard install\n"
        "  coordinatord git-guard uninstall --repo ~/src/app\n"
        "  COORDINATORD_AGENT=kilocode coordinatord git-guard check",
    )
    git_guard.add_argument("action", choices=["install", "uninstall", "check"], help="what to do")
    git_guard.add_argument("--repo", metavar="DIR", help="the repository (default: the cwd's)")
    git_guard.add_argument(
        "--socket", metavar="PATH", help="daemon socket the hook asks (install: written into the hook)"
    )
    git_guard.add_argument(
        "--config", metavar="FILE", help="check: config file (default: as the shim finds it)"
    )
    git_guard.add_argument("--agent", metavar="NAME", help="check: this agent (default: $COORDINATORD_AGENT)")

    _add_editor_parser(commands)
    return parser


def _add_editor_parser(commands: Any) -> None:
    from coordinatord.editors.targets import TARGETS

    names = [target.editor for target in TARGETS]
    editor = _command(
        commands,
        "editor",
        help="add coordinatord to an editor's MCP config, list those configs, remove it again",
        description="Write the shim into an editor's own MCP config file (merged, comments kept, a "
        "backup next to it), list the configs that name coordinatord, or take it out again. "
        "See docs/editors.md.",
        epilog=(
            "examples:\n  coordinatord editor add kilocode            this project's kilo.jsonc\n"
            "  coordinatord editor add cline-cli --global\n"
            "  coordinatord editor add claude-code --dry-run\n"
            "  coordinatord editor list --json\n  coordinatord editor remove kilocode\n\n"
            f"editors: {', '.join(names)}"
        ),
    )
    actions = editor.add_subparsers(dest="editor_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add (or update) the server in an editor's config")
    remove = actions.add_parser("remove", help="undo add")
    for sub in (add, remove):
        sub.add_argument("editor", choices=names, metavar="EDITOR", help=", ".join(names))
        where = sub.add_mutually_exclusive_group()
        where.add_argument(
            "--project",
            nargs="?",
            const="",
            metavar="DIR",
            help="the project's config (DIR: the project root; default inside a project)",
        )
        where.add_argument("--global", dest="global_", action="store_true", help="the user-wide config")
        sub.add_argument("--name", default="redis", help="the server's name (default: redis, the seed's)")
        sub.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    add.add_argument("--agent", metavar="NAME", help="the shim's --agent (default: the editor's name)")
    add.add_argument("--tools", metavar="PROFILE|GROUPS", help="the shim's --tools, e.g. minimal or kv,locks")
    add.add_argument(
        "--allow-writes",
        action="store_true",
        help="alwaysAllow the seed's eight raw tools too (default: read-only tools only)",
    )
    add.add_argument("--force", action="store_true", help="replace a server of that name that is not ours")
    add.add_argument("--config", metavar="FILE", help="written into the shim's args as --config FILE")
    add.add_argument("--socket", metavar="PATH", help="written into the shim's args as --socket PATH")
    listing = actions.add_parser("list", help="configs naming coordinatord, and whether they reach it")
    listing.add_argument("--project", metavar="DIR", help="project root (default: the cwd's project)")
    listing.add_argument("--json", action="store_true", help="print JSON")


def _command(commands: Any, name: str, **options: Any) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their line breaks."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, formatter_class=argparse.RawDescriptionHelpFormatter, **options
    )
    return parser


def _add_no_color_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-color", action="store_true", help="no colours (also: NO_COLOR set, or not a terminal)"
    )


def _add_client_socket_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", help="daemon socket (default: as the shim finds it)")


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="config file (default: see README)")
    parser.add_argument("--socket", metavar="PATH", help="socket path (env COORDINATORD_SOCKET)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (env COORDINATORD_STATE_DIR)")


def _add_host_id_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host-id",
        metavar="ID",
        help="this host's name among the daemons sharing a backend (env COORDINATORD_DAEMON__HOST_ID; "
        "default: the hostname)",
    )


OPERATOR_COMMANDS = (
    "status",
    "doctor",
    "stop",
    "service",
    "editor",
    "top",
    "tail",
    "archive",
    "sessions",
    "projects",
)
"""Commands that live in coordinatord/commands/<name>.py, each with ``main(args) -> int``."""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["shim"]:
        from coordinatord import shim

        args = _shim_parser().parse_args(arguments[1:])
        tools = [group.strip() for group in args.tools.split(",") if group.strip()] if args.tools else None
        return shim.main(args.socket, args.agent, args.project, tools, args.config, args.no_autostart)
    args = build_parser().parse_args(arguments)
    if args.command == "git-guard":
        from coordinatord.commands import git_guard

        return git_guard.main(args)
    if args.command in OPERATOR_COMMANDS:
        # Each operator command lives in its own module, imported only when it runs.
        import importlib

        module = importlib.import_module(f"coordinatord.commands.{args.command}")
        code: int = module.main(args)
        return code
    cli_settings: dict[str, Any] = {"socket": args.socket, "state_dir": args.state_dir}
    if getattr(args, "host_id", None) is not None:
        cli_settings["daemon"] = {"host_id": args.host_id}
    if args.command == "config":
        return _config(cli_settings, args.config)
    return _serve(cli_settings, args.config)


def _load(cli_settings: dict[str, Any], config_file: str | None) -> Any:
    from coordinatord.errors import ConfigError
    from coordinatord.settings import load_settings

    try:
        return load_settings(cli_settings, config_file=config_file)
    except ConfigError as exc:
        sys.stderr.write(f"coordinatord: {exc}\n")
        return None


def _config(cli_settings: dict[str, Any], config_file: str | None) -> int:
    import json

    from coordinatord.paths import user_config_file
    from coordinatord.settings import effective_settings

    settings = _load(cli_settings, config_file)
    if settings is None:
        return 2
    source = settings.config_file or f"none (defaults and environment; it would be {user_config_file()})"
    sys.stderr.write(f"coordinatord: config file: {source}\n")
    try:
        print(json.dumps(effective_settings(settings), indent=2), flush=True)
    except BrokenPipeError:  # `coordinatord config | head`: the reader has what it wanted
        sys.stderr.close()
    return 0


def keep_rich_out() -> None:
    """Keep ``rich`` out of this process: structlog imports it when it is installed (for
    ``top``) to draw tracebacks on a console, which the daemon's plain lines do without; it is
    ~5 MB of the daemon's resident memory. A module set to None in ``sys.modules`` raises
    ImportError when imported, which structlog handles."""
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]


def _serve(cli_settings: dict[str, Any], config_file: str | None) -> int:
    keep_rich_out()
    settings = _load(cli_settings, config_file)
    if settings is None:
        return 2
    from coordinatord.daemon.lifecycle import run_daemon

    return run_daemon(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
