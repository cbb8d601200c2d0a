"""The ``coordinatord`` command: parse, load settings, configure logging, run.

Only the standard library is imported at module level: ``coordinatord shim`` must not pay for
pydantic, mcp, redis or structlog. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from coordinatord import __version__

EPILOG = """\
examples:
  coordinatord serve                       run the daemon (embedded Valkey unless REDIS_URL is set)
  coordinatord shim --agent kilocode       what an editor's mcp.json runs
  coordinatord config                      print the effective settings, secrets masked
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordinatord",
        description="Coordination daemon for AI coding agents: shared state in Redis, served as MCP tools.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"coordinatord {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run the daemon: listen on the Unix socket and serve MCP tools until SIGTERM/SIGINT.",
        epilog="example:\n  coordinatord serve --socket /tmp/coord.sock --state-dir /tmp/coord-state",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings_flags(serve)

    shim = commands.add_parser(
        "shim",
        help="relay an editor's stdio to the daemon (put this in mcp.json)",
        description="Relay MCP between stdin/stdout and the daemon's socket. Standard library only.",
        epilog=(
            'example mcp.json entry:\n  "command": "coordinatord", "args": ["shim", "--agent", "kilocode"]'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shim.add_argument("--socket", metavar="PATH", help="daemon socket (default: as the daemon finds it)")
    shim.add_argument("--agent", metavar="NAME", help="this agent's name (default: the MCP client's name)")
    shim.add_argument(
        "--project", metavar="DIR", help="project root (default: git root of the cwd, else the cwd)"
    )
    shim.add_argument(
        "--tools",
        metavar="GROUPS",
        help="comma-separated tool groups this editor sees, e.g. kv,locks (default: tools.groups)",
    )

    config = commands.add_parser(
        "config",
        help="print the effective settings (secrets masked)",
        description="Print the settings the daemon would run with, as JSON, secrets masked.",
        epilog="example:\n  REDIS_URL=redis://localhost:6379/0 coordinatord config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_settings_flags(config)
    return parser


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="config file (default: see README)")
    parser.add_argument("--socket", metavar="PATH", help="socket path (env COORDINATORD_SOCKET)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (env COORDINATORD_STATE_DIR)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "shim":
        from coordinatord import paths, shim

        tools = [group.strip() for group in args.tools.split(",") if group.strip()] if args.tools else None
        return shim.run(paths.shim_socket_path(args.socket), args.agent, args.project, tools)
    cli_settings: dict[str, Any] = {"socket": args.socket, "state_dir": args.state_dir}
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

    from coordinatord.settings import effective_settings

    settings = _load(cli_settings, config_file)
    if settings is None:
        return 2
    print(json.dumps(effective_settings(settings), indent=2))
    return 0


def _serve(cli_settings: dict[str, Any], config_file: str | None) -> int:
    settings = _load(cli_settings, config_file)
    if settings is None:
        return 2
    from coordinatord.daemon import run_daemon

    return run_daemon(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
