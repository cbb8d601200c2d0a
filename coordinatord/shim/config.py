"""The few settings the shim needs, read without pydantic (standard library only).

The daemon reads every setting through :mod:`coordinatord.settings`; the shim must start in
tens of milliseconds, so it reads the same sources for its own handful by hand, with the same
precedence (flag > ``COORDINATORD_*`` variable > config file > default) and the same bounds
(``ShimSettings`` in settings.py; a unit test holds the two together).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from coordinatord import paths
from coordinatord.errors import ConfigError

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WAIT_FOR_DAEMON_S = 10.0
WAIT_FOR_DAEMON_MAX_S = 600.0
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES_RANGE = (4096, 256 * 1024 * 1024)


class ShimConfigError(ConfigError):
    """A setting the shim reads is invalid; the message names it, the value and its source."""


class ShimConfig:
    """What one shim runs with."""

    __slots__ = (
        "autostart",
        "config_file",
        "max_line_bytes",
        "socket",
        "socket_is_default",
        "state_dir",
        "wait_for_daemon_s",
    )

    def __init__(
        self,
        socket: Path,
        state_dir: Path,
        config_file: Path | None = None,
        autostart: bool = True,
        wait_for_daemon_s: float = WAIT_FOR_DAEMON_S,
        max_line_bytes: int = MAX_LINE_BYTES,
        socket_is_default: bool = False,
    ) -> None:
        self.socket = socket
        self.state_dir = state_dir
        self.config_file = config_file
        self.autostart = autostart
        self.wait_for_daemon_s = wait_for_daemon_s
        self.max_line_bytes = max_line_bytes
        self.socket_is_default = socket_is_default

    @property
    def autostart_log(self) -> Path:
        """Where an auto-started daemon's stdout and stderr go (its JSON log is separate)."""
        return self.state_dir / "autostart.log"

    def serve_command(self) -> str:
        """How a person starts the daemon this shim looks for."""
        command = "coordinatord serve"
        if self.config_file is not None:
            command += f" --config {self.config_file}"
        if not self.socket_is_default:
            command += f" --socket {self.socket}"
        return command


def load(
    socket_flag: str | None,
    config_flag: str | None,
    no_autostart: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ShimConfig:
    env = os.environ if environ is None else environ
    config_file = paths.find_config_file(config_flag, env)
    data: dict[str, Any] = _read(config_file) if config_file is not None else {}
    source = f"config file {config_file}"

    socket_value = socket_flag or env.get(paths.SOCKET_ENV) or _string(data, "socket", source)
    socket_path = Path(socket_value) if socket_value else paths.default_socket_path()
    state_value = env.get(paths.STATE_DIR_ENV) or _string(data, "state_dir", source)
    state_dir = Path(state_value).expanduser() if state_value else paths.default_state_dir()

    shim = _section(data, "shim", source)
    autostart = _boolean("shim.autostart", env, shim.get("autostart"), source, default=True)
    wait = _number("shim.wait_for_daemon_s", env, shim.get("wait_for_daemon_s"), source, WAIT_FOR_DAEMON_S)
    if not 0 < wait <= WAIT_FOR_DAEMON_MAX_S:
        raise ShimConfigError(f"shim.wait_for_daemon_s = {wait!r}: must be above 0 and at most 600 seconds")
    server = _section(data, "server", source)
    line = _number("server.max_line_bytes", env, server.get("max_line_bytes"), source, MAX_LINE_BYTES)
    low, high = MAX_LINE_BYTES_RANGE
    if line != int(line) or not low <= line <= high:
        raise ShimConfigError(
            f"server.max_line_bytes = {line!r}: must be a whole number from {low} to {high}"
        )
    return ShimConfig(
        socket=socket_path,
        state_dir=state_dir,
        config_file=config_file,
        autostart=autostart and not no_autostart,
        wait_for_daemon_s=float(wait),
        max_line_bytes=int(line),
        socket_is_default=not socket_value,
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        return paths.read_config_file(path)
    except ConfigError as exc:
        raise ShimConfigError(str(exc)) from None


def _env_name(setting: str) -> str:
    return "COORDINATORD_" + setting.replace(".", "__").upper()


def _section(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ShimConfigError(f"{name} (from {source}) must be a table, [{name}]")
    return section


def _string(data: dict[str, Any], name: str, source: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ShimConfigError(f"{name} = {value!r} (from {source}): must be a string")
    return value or None


def _boolean(name: str, env: Mapping[str, str], value: Any, source: str, default: bool) -> bool:
    raw = env.get(_env_name(name))
    if raw is not None:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ShimConfigError(
            f"{name} = {raw!r} (from environment variable {_env_name(name)}): must be true or false"
        )
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ShimConfigError(f"{name} = {value!r} (from {source}): must be true or false")
    return value


def _number(name: str, env: Mapping[str, str], value: Any, source: str, default: float) -> float:
    raw = env.get(_env_name(name))
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            raise ShimConfigError(
                f"{name} = {raw!r} (from environment variable {_env_name(name)}): must be a number"
            ) from None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShimConfigError(f"{name} = {value!r} (from {source}): must be a number")
    return float(value)
