"""Default locations on disk: socket, state dir, config file, project root.

Standard library only: the shim imports this module, and the shim must start in tens of
milliseconds (no pydantic, no tomllib unless a config file is actually read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SOCKET_ENV = "COORDINATORD_SOCKET"
STATE_DIR_ENV = "COORDINATORD_STATE_DIR"
CONFIG_ENV = "COORDINATORD_CONFIG"
SOCKET_NAME = "coordinatord.sock"


def default_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/coordinatord/coordinatord.sock``, else ``/tmp/coordinatord-$UID/…``."""
    env = os.environ if environ is None else environ
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "coordinatord" / SOCKET_NAME
    return Path(f"/tmp/coordinatord-{os.getuid()}") / SOCKET_NAME


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/coordinatord``, else ``~/.local/state/coordinatord``."""
    env = os.environ if environ is None else environ
    state_home = env.get("XDG_STATE_HOME")
    if state_home:
        return Path(state_home) / "coordinatord"
    return Path.home() / ".local" / "state" / "coordinatord"


def find_config_file(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: ``--config``, ``$COORDINATORD_CONFIG``, ``./config.toml``,
    ``$XDG_CONFIG_HOME/coordinatord/config.toml`` (the first that is given or exists).

    An explicitly named file is returned even when missing, so that the caller can report it.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path("config.toml")
    if local.is_file():
        return local
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user = Path(config_home) / "coordinatord" / "config.toml"
    if user.is_file():
        return user
    return None


def project_root(start: Path) -> Path:
    """The git work tree containing ``start``, else ``start`` itself.

    Walks up looking for ``.git`` (a directory, or a file in worktrees and submodules)
    instead of spawning ``git``: a process start would cost the shim more than it saves.
    """
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def shim_socket_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The socket a shim connects to, found the way the daemon finds the one it listens on:
    ``--socket``, ``$COORDINATORD_SOCKET``, the config file's ``socket``, the default.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(SOCKET_ENV):
        return Path(env[SOCKET_ENV])
    config = find_config_file(None, env)
    if config is not None:
        import tomllib  # only when a config file exists: it costs the shim a few ms

        try:
            with config.open("rb") as handle:
                value = tomllib.load(handle).get("socket")
        except (OSError, tomllib.TOMLDecodeError):
            value = None
        if isinstance(value, str) and value:
            return Path(value)
    return default_socket_path(env)
