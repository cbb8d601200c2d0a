"""Default locations on disk: socket, state dir, config file, project root.

Standard library only: the shim imports this module, and the shim must start in tens of
milliseconds (no pydantic, no tomllib unless a config file is actually read).

Every default here comes from the uid and the home directory alone, never from variables such
as ``XDG_RUNTIME_DIR``: MCP clients start their servers with a stripped environment (the Python
SDK passes only HOME, LOGNAME, PATH, SHELL, TERM and USER), so a default that followed such a
variable would put the daemon started from a shell and the shim started by an editor in two
different places. Only the explicit overrides (``--socket``, ``COORDINATORD_SOCKET``,
``--config``, ``COORDINATORD_CONFIG``, ``COORDINATORD_STATE_DIR``) move them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from coordinatord import private_folder
from coordinatord.errors import ConfigError

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MCP_CLIENT_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
"""All of the environment an MCP client is sure to pass to the servers it starts (the Python
SDK's list): what a shim, and a daemon a shim starts, can count on."""

SOCKET_ENV = "COORDINATORD_SOCKET"
STATE_DIR_ENV = "COORDINATORD_STATE_DIR"
CONFIG_ENV = "COORDINATORD_CONFIG"
SOCKET_NAME = "coordinatord.sock"
RUN_USER = Path("/run/user")
TMP = Path("/tmp")
"""Where ``/tmp/coordinatord-<uid>`` is made; its folder is judged before use (default_socket)."""

PROJECT_MARKERS = (".git", ".hg", ".jj", ".svn", ".kilocode")
"""What makes a directory a project root: a repository (``.git`` is a directory, or a file in
worktrees and submodules), or the seed's own ``.kilocode`` folder."""


class DefaultSocket:
    """Where the default socket is, and why there.

    ``usual``: the folder the socket belongs in (``/run/user/<uid>/coordinatord`` or
    ``/tmp/coordinatord-<uid>``); ``unsafe``: why that folder was passed over for the private
    fallback in the home directory (None: the socket is in ``usual``).
    """

    __slots__ = ("path", "unsafe", "usual")

    def __init__(self, path: Path, usual: Path, unsafe: str | None) -> None:
        self.path = path
        self.usual = usual
        self.unsafe = unsafe

    def note(self) -> str:
        """Why the socket's folder is the one in use, for ``serve``, ``status`` and ``doctor``."""
        if self.unsafe is None:
            return f"the default folder {self.path.parent}"
        return f"the default's private fallback, because {self.unsafe}"


def default_socket(
    uid: int | None = None, run_user: Path | None = None, tmp: Path | None = None, home: Path | None = None
) -> DefaultSocket:
    """The default socket: ``/run/user/<uid>/coordinatord/coordinatord.sock`` when
    ``/run/user/<uid>`` exists and belongs to the uid (systemd's runtime dir), else
    ``/tmp/coordinatord-<uid>/coordinatord.sock``, as long as that folder is missing or private
    to the uid (see :mod:`coordinatord.private_folder`). When it is not (another local user made
    it first, or opened it), ``~/.local/state/coordinatord/run/coordinatord.sock``: still from
    the uid and the home directory alone, so the daemon, the shims and the operator commands
    all make the same choice without being told.

    ``run_user``, ``tmp`` and ``home`` default to :data:`RUN_USER`, :data:`TMP` (read when
    called, so that tests can move them) and the home directory.
    """
    uid = os.getuid() if uid is None else uid
    runtime_dir = (RUN_USER if run_user is None else run_user) / str(uid)
    try:
        info = runtime_dir.stat()
    except OSError:
        info = None
    if info is not None and runtime_dir.is_dir() and info.st_uid == uid:
        usual = runtime_dir / "coordinatord"
    else:
        usual = (TMP if tmp is None else tmp) / f"coordinatord-{uid}"
    unsafe = private_folder.inspect(usual, uid)
    if unsafe is None:
        return DefaultSocket(usual / SOCKET_NAME, usual, None)
    home = Path.home() if home is None else home
    return DefaultSocket(fallback_socket_dir(home) / SOCKET_NAME, usual, unsafe)


def default_socket_path(
    uid: int | None = None, run_user: Path | None = None, tmp: Path | None = None, home: Path | None = None
) -> Path:
    """The path of :func:`default_socket`."""
    return default_socket(uid, run_user, tmp, home).path


def fallback_socket_dir(home: Path | None = None) -> Path:
    """``~/.local/state/coordinatord/run``: the default socket's folder when the usual one is
    not private (see :func:`default_socket`). In the home directory, which no other user can
    write, under the default state dir (``run``: nothing in it outlives the daemon)."""
    return (Path.home() if home is None else home) / ".local" / "state" / "coordinatord" / "run"


def socket_note(socket_path: Path, default: DefaultSocket | None = None) -> str:
    """Why ``socket_path``'s folder is the one in use: the default folder, the default's
    fallback (and why), or the one given by ``--socket``, ``COORDINATORD_SOCKET`` or the config
    file's ``socket``. ``default``: :func:`default_socket`, when the caller has it."""
    default = default_socket() if default is None else default
    if socket_path == default.path:
        return default.note()
    return f"given by --socket, {SOCKET_ENV} or the config file's socket (the default is {default.path})"


def default_state_dir() -> Path:
    """``~/.local/state/coordinatord``."""
    return Path.home() / ".local" / "state" / "coordinatord"


def user_config_file(home: Path | None = None) -> Path:
    """``~/.config/coordinatord/config.toml``: the config file read when none is named."""
    return (Path.home() if home is None else home) / ".config" / "coordinatord" / "config.toml"


def find_config_file(
    explicit: str | None = None, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> Path | None:
    """The config file to read: ``--config``, ``$COORDINATORD_CONFIG``, else
    ``~/.config/coordinatord/config.toml`` when it exists. Never a ``config.toml`` of the
    current directory: an editor starts the shim in whatever folder it likes.

    An explicitly named file is returned even when missing, so that the caller can report it.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    user = user_config_file(home)
    return user if user.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's TOML, or :class:`ConfigError` naming the file and what is wrong. The
    one reader of it: the daemon's settings, the shim and the operator commands all use it."""
    import tomllib  # only when a config file exists: it costs the shim a few ms

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def canonical_root(path: str | os.PathLike[str]) -> str:
    """The one spelling of a project root: absolute, symlinks resolved, no ``.``/``..``, no
    doubled or trailing slash. Every project id is a hash of this, so ``/x/A/../B``, ``/x/B/``,
    ``//x/B`` and a symlink to ``/x/B`` are one project."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def find_project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a :data:`PROJECT_MARKERS` entry;
    ``None`` when there is none, or when it is ``/`` or the home directory (a dotfiles
    repository in ``$HOME`` does not make every folder below it one project).

    Looks for the markers instead of spawning ``git``: a process start would cost the shim more
    than it saves.
    """
    start = Path(canonical_root(start))
    for candidate in (start, *start.parents):
        if any(os.path.lexists(candidate / marker) for marker in PROJECT_MARKERS):
            return None if _too_wide(candidate) else candidate
    return None


def _too_wide(directory: Path) -> bool:
    if directory == Path(directory.anchor):
        return True
    try:
        home = Path(canonical_root(Path.home()))
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return False
    return directory == home


def not_a_project(start: Path) -> str:
    """Why ``start`` belongs to no project, for messages that then name the fix."""
    markers = ", ".join(PROJECT_MARKERS)
    return (
        f"{canonical_root(start)} is not inside a project (no {markers} there or above, "
        "other than in / or the home directory)"
    )


SHIM_PROJECT_FIX = (
    'start the editor in the repository, or add "--project", "/path/to/repo" to the shim\'s args '
    "in the editor's MCP config"
)


def serve_command(socket_path: Path) -> str:
    """How to start a daemon on ``socket_path``, for messages that find none there."""
    if socket_path == default_socket_path():
        return "coordinatord serve"
    return f"coordinatord serve --socket {socket_path}"


def shim_socket_path(
    explicit: str | None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    home: Path | None = None,
) -> Path:
    """The socket a shim connects to, found the way the daemon finds the one it listens on:
    ``--socket``, ``$COORDINATORD_SOCKET``, the ``socket`` of the config file (``--config``,
    ``$COORDINATORD_CONFIG``, the one in ``home``), the default.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(SOCKET_ENV):
        return Path(env[SOCKET_ENV])
    config = find_config_file(config_file, env, home)
    if config is not None:
        try:
            value = read_config_file(config).get("socket")
        except ConfigError:
            value = None  # the command asks the daemon anyway; the daemon reports the file
        if isinstance(value, str) and value:
            return Path(value)
    return default_socket_path()


def shim_state_dir(
    environ: Mapping[str, str] | None = None, config_file: str | None = None, home: Path | None = None
) -> Path:
    """The state dir a shim hands to the daemon it starts, found as the daemon finds its own:
    ``$COORDINATORD_STATE_DIR``, the ``state_dir`` of the config file, the default. Where the
    daemon's lock (``daemon.lock``, naming its socket) is when its socket is gone."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    config = find_config_file(config_file, env, home)
    if config is not None:
        try:
            value = read_config_file(config).get("state_dir")
        except ConfigError:
            value = None
        if isinstance(value, str) and value:
            return Path(value).expanduser()
    return default_state_dir() if home is None else home / ".local" / "state" / "coordinatord"


def socket_flag(socket_path: Path) -> str:
    """`` --socket PATH`` for a command about ``socket_path``, or nothing for the default one."""
    return "" if socket_path == default_socket_path() else f" --socket {socket_path}"
