"""``coordinatord service install [--now] [--dry-run] [--force]`` and ``coordinatord service
uninstall [--dry-run]``: the systemd user units, written for this install.

``install`` writes ``coordinatord.service`` (ExecStart: the absolute path of this coordinatord)
and ``coordinatord.socket`` (ListenStream: the daemon's socket) into ~/.config/systemd/user,
then ``systemctl --user daemon-reload`` and ``enable [--now] coordinatord.socket``. A unit file
there that we did not write and that differs is left alone unless ``--force``. Without a user
manager (no systemctl, WSL without ``systemd=true``, a container) nothing is written: the shim's
auto-start runs the daemon there instead.

Exit status: 0 done (or, with --dry-run, shown), 1 refused or failed (the message says why).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from coordinatord import paths, systemd, units
from coordinatord.errors import ConfigError

NO_SYSTEMD = """\
coordinatord: no systemd user manager here: {problem}.
Nothing was written. That is expected on WSL without systemd (no `systemd=true` under [boot] in
/etc/wsl.conf) and in most containers, and nothing is lost: the first editor's shim that finds no
daemon starts one itself (auto-start), detached, logging to ~/.local/state/coordinatord/autostart.log.
See deploy/wsl.md ("Without systemd") and docs/service.md ("Without systemd") in coordinatord's
repository; `coordinatord stop` stops such a daemon.
"""


def main(args: argparse.Namespace) -> int:
    if args.action == "install":
        return install(now=args.now, dry_run=args.dry_run, force=args.force)
    return uninstall(dry_run=args.dry_run)


def unit_socket_path() -> Path:
    """The socket the unit's daemon serves: the ``socket`` of ~/.config/coordinatord/config.toml
    (the config file every daemon reads), else the default one. ``COORDINATORD_SOCKET`` and
    ``--config`` of this shell do not reach the unit, so they are not looked at."""
    config = paths.user_config_file()
    if config.is_file():
        value = paths.read_config_file(config).get("socket")
        if isinstance(value, str) and value:
            return Path(value).expanduser()
    return paths.default_socket_path()


def _say(text: str) -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def install(now: bool, dry_run: bool, force: bool, run: systemd.Runner = systemd.run_command) -> int:
    try:
        socket_path = unit_socket_path()
    except ConfigError as exc:
        _warn(f"coordinatord: {exc}")
        return 1
    directory = systemd.user_unit_dir()
    files = units.render(units.coordinatord_command(), socket_path)
    commands = [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", *(["--now"] if now else []), systemd.SOCKET],
    ]
    env_socket = os.environ.get(paths.SOCKET_ENV)
    if env_socket and Path(env_socket) != socket_path:
        _warn(
            f"coordinatord: note: {paths.SOCKET_ENV}={env_socket} in this shell does not reach the "
            f"unit, which serves {socket_path}; put `socket = ...` in {paths.user_config_file()} "
            "to move it"
        )
    if dry_run:
        for name, text in files.items():
            _say(f"# --- {directory / name}\n{text}")
        _say("# --- then:\n" + "\n".join(" ".join(command) for command in commands))
        problem = systemd.user_manager_problem(run)
        if problem is not None:
            _warn(f"coordinatord: (dry run) install would stop here: {problem}")
        return 0
    problem = systemd.user_manager_problem(run)
    if problem is not None:
        _warn(NO_SYSTEMD.format(problem=problem).rstrip())
        return 1
    refused = [name for name, text in files.items() if _foreign(directory / name, text)]
    if refused and not force:
        for name in refused:
            _warn(
                f"coordinatord: {directory / name} exists, differs from what `coordinatord service "
                "install` writes, and was not written by it (its first line is not ours)"
            )
        _warn("coordinatord: nothing was written; to replace it, run again with --force")
        return 1
    if now:
        blocker = _daemon_outside_systemd(socket_path)
        if blocker is not None:
            _warn(
                f"coordinatord: {blocker} answers at {socket_path}, not started by systemd; the "
                "socket unit cannot take over its socket while it runs. Stop it first "
                f"(coordinatord stop{_socket_flag(socket_path)}), then install again; nothing was written"
            )
            return 1
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            _say(f"unchanged {path}")
            continue
        _write(path, text)
        _say(f"wrote {path}")
    for command in commands:
        if not _ran(run, command):
            return 1
    exec_start = " ".join(units.coordinatord_command())
    if now:
        listens = f"{systemd.SOCKET} listens on {socket_path}"
    else:
        listens = (
            f"{systemd.SOCKET} listens on {socket_path} from your next login "
            f"(now: systemctl --user start {systemd.SOCKET})"
        )
    _say(
        f"\n{listens};\nthe first connection starts {systemd.SERVICE} ({exec_start} serve).\n"
        f"Logs: journalctl --user -u {systemd.SERVICE} -f. Stop both: coordinatord stop.\n"
        'To keep them running without an open login session: loginctl enable-linger "$USER".'
    )
    return 0


def _socket_flag(socket_path: Path) -> str:
    return "" if socket_path == paths.default_socket_path() else f" --socket {socket_path}"


def _foreign(path: Path, text: str) -> bool:
    """The file exists, says something else, and is not one of ours."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):
        return True
    return current != text and not current.startswith(systemd.MARKER)


def _write(path: Path, text: str) -> None:
    """Atomically: a reader (systemd's daemon-reload) never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.chmod(partial, 0o644)
    os.replace(partial, path)


def _daemon_outside_systemd(socket_path: Path) -> str | None:
    """Who answers on the socket ("a coordinatord daemon (pid N)") when systemd does not run it."""
    from coordinatord import control
    from coordinatord.errors import DaemonError

    try:
        result = control.request(socket_path, "status", timeout=10)
    except DaemonError:
        return None
    daemon = result.get("daemon", {}) if isinstance(result, dict) else {}
    if (daemon.get("systemd") or {}).get("unit") == systemd.SERVICE:
        return None
    return f"a coordinatord daemon (pid {daemon.get('pid', '?')})"


def _ran(run: systemd.Runner, command: list[str]) -> bool:
    """Run one systemctl command, saying what it did or why it failed."""
    code, said = run(command, 60.0)
    if code != 0:
        _warn(f"coordinatord: `{' '.join(command)}` failed (exit status {code}): {said}")
        return False
    _say(f"ran `{' '.join(command)}`")
    return True


def uninstall(dry_run: bool, run: systemd.Runner = systemd.run_command) -> int:
    directory = systemd.user_unit_dir()
    ours: list[Path] = []
    foreign: list[Path] = []
    for name in systemd.UNITS:
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        (ours if text.startswith(systemd.MARKER) else foreign).append(path)
    for path in foreign:
        _warn(f"coordinatord: left {path}: `coordinatord service install` did not write it")
    if not ours:
        _say(f"no unit of `coordinatord service install` in {directory}: nothing to uninstall")
        return 0
    names = [path.name for path in ours]
    commands = [["systemctl", "--user", "disable", "--now", *names], ["systemctl", "--user", "daemon-reload"]]
    if dry_run:
        _say("\n".join([*(f"would remove {path}" for path in ours), *(" ".join(c) for c in commands)]))
        return 0
    problem = systemd.user_manager_problem(run)
    if problem is None and not _ran(run, commands[0]):
        return 1
    for path in ours:
        path.unlink(missing_ok=True)
        _say(f"removed {path}")
    if problem is None:
        if not _ran(run, commands[1]):
            return 1
    else:
        for link in _dangling_links(directory, ours):
            link.unlink()
            _say(f"removed {link}")
        _warn(f"coordinatord: no systemd user manager to tell ({problem}); the files are gone")
    return 0


def _dangling_links(directory: Path, removed: list[Path]) -> list[Path]:
    """``*.wants/`` links to the files just removed (what ``disable`` would have removed)."""
    names = {path.name for path in removed}
    return [
        link
        for wants in sorted(directory.glob("*.wants"))
        for link in sorted(wants.iterdir())
        if link.name in names and link.is_symlink() and not link.exists()
    ]
