"""Editor MCP configs: write coordinatord's shim into them, find it there, take it out again.

Public API (also for ``coordinatord doctor``):

- :func:`discover` ``(home, project) -> list[FoundConfig]``: every known config location of
  every editor, global and the project's, whose file names coordinatord, with per-entry
  validity (does the file parse, does the command exist and run) and the socket the shim
  would use. No network: :func:`reaches` pings that socket.
- :func:`plan_add` / :func:`plan_remove` return a :class:`Change` (the file's text before and
  after); :func:`apply` writes it with a timestamped backup next to the file.

Standard library only at import time (``tomlkit`` is imported for TOML files only).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from coordinatord import paths, safe_read
from coordinatord.editors import jsonc
from coordinatord.editors.targets import ANTIGRAVITY_PATHS, BY_NAME, TARGETS, Target, choose
from coordinatord.errors import ConfigError, FileRefusedError

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BY_NAME",
    "TARGETS",
    "Change",
    "EditorConfigError",
    "FoundConfig",
    "Target",
    "apply",
    "config_path",
    "coordinatord_command",
    "discover",
    "entry_for",
    "plan_add",
    "plan_remove",
    "reaches",
    "shim_argv",
]

DEFAULT_NAME = "redis"
"""The seed's server name: prompts and allow lists written for the seed keep matching."""
BACKUP_INFIX = ".coordinatord-backup-"


class EditorConfigError(ConfigError):
    """A config file that cannot be changed safely: it does not parse, or it holds a server of
    the same name that is not coordinatord's. Nothing was written."""


# --- what is written --------------------------------------------------------------------------


def coordinatord_command() -> list[str]:
    """How the running coordinatord is started, as an absolute command: the ``coordinatord``
    script that runs now, else the one next to this Python, else on PATH, else
    ``python -m coordinatord``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "coordinatord" and argv0.is_file():
        return [os.path.abspath(argv0)]
    sibling = Path(sys.executable).parent / "coordinatord"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    found = shutil.which("coordinatord")
    if found:
        return [os.path.abspath(found)]
    return [sys.executable, "-m", "coordinatord"]


def shim_argv(
    command: list[str],
    agent: str,
    tools: list[str] | None = None,
    config: str | None = None,
    socket: str | None = None,
    project: Path | None = None,
) -> list[str]:
    """The full command line of the shim an editor starts."""
    argv = [*command, "shim", "--agent", agent]
    if tools:
        argv += ["--tools", ",".join(tools)]
    if project is not None:
        argv += ["--project", str(project)]
    if config:
        argv += ["--config", os.path.abspath(config)]
    if socket:
        argv += ["--socket", os.path.abspath(socket)]
    return argv


def entry_for(target: Target, argv: list[str], allow: list[str] | None) -> dict[str, Any]:
    """The server entry in the editor's own shape."""
    if target.shape == "kilo":
        return {"type": "local", "command": argv, "environment": {}, "enabled": True}
    entry: dict[str, Any] = {"type": "stdio"} if target.shape == "typed" else {}
    entry.update(command=argv[0], args=argv[1:])
    if target.shape == "zed":
        entry["env"] = {}
    if target.allow_key and allow is not None:
        entry[target.allow_key] = allow
    return entry


def entry_argv(value: Any) -> list[str] | None:
    """The command line of a server entry of any editor's shape, None for other entries."""
    if not isinstance(value, dict):
        return None
    command = value.get("command")
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        return list(command)  # Kilo's argv array
    if isinstance(command, dict):  # Zed's older {"command": {"path", "args"}}
        value, command = command, command.get("path")
    if not isinstance(command, str):
        return None
    args = value.get("args") or []
    return [command, *(arg for arg in args if isinstance(arg, str))] if isinstance(args, list) else [command]


def is_coordinatord(argv: list[str] | None) -> bool:
    """Whether a command line runs coordinatord's shim."""
    if not argv or "shim" not in argv:
        return False
    if os.path.basename(argv[0]) == "coordinatord":
        return True
    return any(a == "-m" and b == "coordinatord" for a, b in itertools.pairwise(argv))


# --- where -----------------------------------------------------------------------------------


def config_path(target: Target, scope: str, home: Path, project: Path | None) -> Path:
    """The file ``editor add`` writes for ``target`` in ``scope`` ("global" or "project")."""
    if scope == "project":
        if not target.project_paths:
            raise EditorConfigError(f"{target.title} has no project config; use --global")
        if project is None:
            raise EditorConfigError("no project: pass --project DIR, or --global")
        return choose(project, target.project_paths)
    if not target.global_paths:
        raise EditorConfigError(f"{target.title} has no global config; use --project")
    if target.global_paths == ANTIGRAVITY_PATHS and (home / ".gemini" / "config").is_dir():
        # Antigravity 2.0 is installed: its file, even where a pre-2.0 one is left behind.
        return home / ANTIGRAVITY_PATHS[0]
    return choose(home, target.global_paths)


# --- formats ---------------------------------------------------------------------------------


class _Format:
    """One syntax: parse, read the servers, set one, remove one. Offsets and newlines stay the
    file's: a CRLF file is edited as LF and given back its CRLFs."""

    def __init__(self, syntax: str) -> None:
        self.syntax = syntax

    def _load(self, text: str, path: Path) -> Any:
        try:
            if self.syntax == "toml":
                from coordinatord.editors import toml_edit

                return toml_edit.parse(text)
            return jsonc.parse(text, strict=self.syntax == "json")
        except (jsonc.JsoncError, ValueError) as exc:
            line, column = getattr(exc, "line", 0), getattr(exc, "column", 0)
            reason = getattr(exc, "reason", str(exc))
            kind = {"toml": "TOML", "json": "JSON", "jsonc": "JSON (with comments)"}[self.syntax]
            raise EditorConfigError(
                f"{path}:{line}:{column}: not valid {kind}: {reason}\n"
                "fix or move the file and try again (nothing was written)"
            ) from None

    def servers(self, text: str, path: Path, container: tuple[str, ...]) -> dict[str, Any] | None:
        doc = self._load(_lf(text), path)
        try:
            if self.syntax == "toml":
                from coordinatord.editors import toml_edit

                return toml_edit.servers(doc, container)
            node = jsonc.lookup(doc, container)
        except ValueError as exc:
            raise EditorConfigError(f"{path}: {exc}") from None
        if node is None:
            if doc.root is not None and not isinstance(doc.root, jsonc.ObjectNode):
                raise EditorConfigError(f"{path}: the file holds no JSON object")
            return None
        if not isinstance(node, jsonc.ObjectNode):
            raise EditorConfigError(f"{path}: {'.'.join(container)} is not an object")
        value = jsonc.python(node)
        assert isinstance(value, dict)
        return value

    def set(self, text: str, path: Path, container: tuple[str, ...], name: str, value: Any) -> str:
        lf = _lf(text)
        doc = self._load(lf, path)
        try:
            if self.syntax == "toml":
                from coordinatord.editors import toml_edit

                out = toml_edit.set_entry(doc, container, name, value)
            else:
                out = jsonc.set_member(doc, container, name, value)
        except ValueError as exc:
            raise EditorConfigError(f"{path}: {exc}; nothing was written") from None
        return _crlf(out) if lf != text else out

    def remove(self, text: str, path: Path, container: tuple[str, ...], name: str) -> str:
        lf = _lf(text)
        doc = self._load(lf, path)
        if self.syntax == "toml":
            from coordinatord.editors import toml_edit

            out = toml_edit.remove_entry(doc, container, name)
        else:
            out = jsonc.remove_member(doc, container, name)
        return _crlf(out) if lf != text else out


def _lf(text: str) -> str:
    """LF text for a file whose every newline is CRLF; any other text as it is."""
    if "\r\n" in text and text.count("\r\n") == text.count("\n"):
        return text.replace("\r\n", "\n")
    return text


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""An editor's config larger than this is not one to edit."""


def _read_bytes(path: Path) -> bytes:
    return safe_read.read_bytes(path, MAX_CONFIG_BYTES, setting="16 MiB for an editor's config")


def format_of(target: Target) -> _Format:
    return _Format(target.syntax)


def read_text(path: Path) -> str | None:
    """The file's text, None when it does not exist. A project's config may be anything its
    repository holds: read with :mod:`coordinatord.safe_read` (a FIFO or a device is refused,
    never waited on)."""
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        return None
    except FileRefusedError as exc:
        raise EditorConfigError(f"{exc}; nothing was written") from None
    except OSError as exc:
        raise EditorConfigError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditorConfigError(f"{path} is not UTF-8 text (byte {exc.start}); nothing was written") from None


# --- changes ---------------------------------------------------------------------------------


@dataclass
class Change:
    target: Target
    path: Path
    name: str
    before: str | None
    """The file's text now; None when it does not exist."""
    after: str | None
    """The text to write; None to delete the file."""
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.before != self.after


def plan_add(
    target: Target, path: Path, entry: dict[str, Any], name: str = DEFAULT_NAME, force: bool = False
) -> Change:
    """What ``editor add`` would write. An existing entry of coordinatord's is updated (keys
    the user added to it are kept); a foreign one of the same name is refused unless ``force``."""
    fmt = format_of(target)
    before = read_text(path)
    text = before if before is not None else ""
    servers = fmt.servers(text, path, target.container) or {}
    existing = servers.get(name)
    value = entry
    note = "added"
    if existing is not None:
        if is_coordinatord(entry_argv(existing)):
            if isinstance(existing, dict):
                value = {**existing, **entry}
            note = "updated"
            if value == existing:
                return Change(target, path, name, before, before, "already set up")
        elif not force:
            shown = " ".join(entry_argv(existing) or []) or repr(existing)[:80]
            raise EditorConfigError(
                f"{path} already has an MCP server named {name!r} that is not coordinatord's "
                f"({shown}); nothing was written.\n"
                f"add ours under another name with --name NAME, or replace that one with --force "
                "(a backup of the file is kept)"
            )
        else:
            note = "replaced"
    after = fmt.set(text, path, target.container, name, value)
    return Change(target, path, name, before, after, note)


def plan_remove(target: Target, path: Path, name: str = DEFAULT_NAME) -> Change:
    """What ``editor remove`` would do: give back the bytes from before ``add`` when the file
    holds nothing since (its newest backup plus our entry is the file), delete a file ``add``
    created that holds nothing else, else take out just our entry."""
    fmt = format_of(target)
    before = read_text(path)
    if before is None:
        return Change(target, path, name, None, None, "no such file")
    servers = fmt.servers(before, path, target.container) or {}
    if name not in servers:
        return Change(target, path, name, before, before, f"no server named {name!r}")
    value = servers[name]
    if not is_coordinatord(entry_argv(value)):
        raise EditorConfigError(f"the server {name!r} in {path} is not coordinatord's; nothing was changed")
    backup = newest_backup(path)
    if backup is not None:
        original = read_text(backup)
        if original is not None:
            try:
                if name not in (fmt.servers(original, path, target.container) or {}) and (
                    fmt.set(original, path, target.container, name, value) == before
                ):
                    return Change(target, path, name, before, original, f"restored from {backup.name}")
            except EditorConfigError:
                pass  # a backup that does not parse is not the one add made
    if fmt.set("", path, target.container, name, value) == before:
        return Change(target, path, name, before, None, "deleted (editor add created it)")
    return Change(target, path, name, before, fmt.remove(before, path, target.container, name), "removed")


def newest_backup(path: Path) -> Path | None:
    prefix = path.name + BACKUP_INFIX
    try:
        found = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return None
    return max(found, key=lambda p: [*p.name[len(prefix) :].split("-")[:2], p.name], default=None)


def apply(change: Change, now: float | None = None) -> Path | None:
    """Write ``change``; return the backup made of the file it replaced (None when it created
    the file, deleted it, restored a backup, or changed nothing)."""
    if not change.changed:
        return None
    path = change.path
    if change.after is None:
        path.unlink()
        return None
    backup = None
    restoring = change.note.startswith("restored from")
    if change.before is not None and not restoring:
        backup = _backup_path(path, time.time() if now is None else now)
        shutil.copy2(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.coordinatord-{os.getpid()}.tmp")
    try:
        temporary.write_bytes(change.after.encode("utf-8"))
        if change.before is not None:
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return backup


def _backup_path(path: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}-{counter}")
        counter += 1
    return candidate


# --- discovery -------------------------------------------------------------------------------


@dataclass
class FoundConfig:
    """One editor config location that names coordinatord."""

    editor: str
    title: str
    scope: str  # "global" or "project"
    path: str
    server: str | None  # the server's name; None when the file does not parse
    command: list[str]
    parses: bool
    command_ok: bool
    """The command exists and is executable (looked up on PATH when not absolute)."""
    socket: str | None
    """The socket this shim connects to (from --socket, its env, its config file, the default)."""
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.parses and self.command_ok

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


def discover(home: Path, project: Path | None) -> list[FoundConfig]:
    """Every known config location (each editor's global ones under ``home``, and the
    project's under ``project``) whose file names coordinatord's shim."""
    found: list[FoundConfig] = []
    seen: set[Path] = set()
    for target in TARGETS:
        places = [("global", home / p) for p in target.global_paths]
        if project is not None:
            places += [("project", project / p) for p in target.project_paths]
        for scope, path in places:
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            found += _found_in(target, scope, path, home)
    return found


def _found_in(target: Target, scope: str, path: Path, home: Path) -> list[FoundConfig]:
    try:
        text = read_text(path) or ""
        servers = format_of(target).servers(text, path, target.container) or {}
    except EditorConfigError as exc:
        try:
            raw = _read_bytes(path)
        except (OSError, FileRefusedError):
            raw = b""
        if b"coordinatord" not in raw:
            return []
        return [
            FoundConfig(target.editor, target.title, scope, str(path), None, [], False, False, None, str(exc))
        ]
    result = []
    for name, value in servers.items():
        argv = entry_argv(value)
        if not is_coordinatord(argv):
            continue
        assert argv is not None
        problem = _command_problem(argv[0])
        env = _entry_env(value)
        try:
            socket: str | None = str(shim_socket(argv, env, home))
        except ConfigError as exc:
            socket, problem = None, problem or str(exc)
        result.append(
            FoundConfig(
                target.editor,
                target.title,
                scope,
                str(path),
                name,
                argv,
                True,
                problem is None,
                socket,
                problem,
            )
        )
    return result


def _command_problem(command: str) -> str | None:
    if os.sep not in command:
        return None if shutil.which(command) else f"{command} is not on PATH"
    if not os.path.isfile(command):
        return f"{command} does not exist"
    if not os.access(command, os.X_OK):
        return f"{command} is not executable"
    return None


def _entry_env(value: Any) -> dict[str, str]:
    env = value.get("env") or value.get("environment") or {} if isinstance(value, dict) else {}
    return {k: v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) else {}


def _flag(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def shim_socket(argv: list[str], env: dict[str, str], home: Path) -> Path:
    """The socket the shim of ``argv`` connects to, found as the shim finds it, with ``home`` as
    its home directory and ``env`` as its environment (the entry's own, not this shell's)."""
    return paths.shim_socket_path(
        _flag(argv, "--socket"), env, config_file=_flag(argv, "--config"), home=home
    )


def reaches(socket: str | None, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether a daemon answers ``ping`` on ``socket`` over the control channel, and what it
    said (``pid … version …``) or why not."""
    from coordinatord import control
    from coordinatord.errors import DaemonError

    if socket is None:
        return False, "no socket"
    try:
        result = control.request(Path(socket), "ping", timeout=timeout)
    except DaemonError as exc:
        return False, str(exc).splitlines()[0]
    if isinstance(result, dict):
        return True, f"pid {result.get('pid', '?')}, version {result.get('version', '?')}"
    return True, "answers"
