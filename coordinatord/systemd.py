"""systemd's side of the daemon, without libsystemd: notifications, socket activation, the
watchdog's interval, and what the user manager says about our two units.

Each of these is a few lines of a documented protocol (sd_notify(3), sd_listen_fds(3),
sd_watchdog_enabled(3)); a library for them would be either unmaintained (``sdnotify``) or
need libsystemd's headers to build (``systemd-python``), for less than this module does.

Standard library only, and nothing heavier than :mod:`socket` at import: ``coordinatord stop``
and ``coordinatord service`` import it too.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

SERVICE = "coordinatord.service"
SOCKET = "coordinatord.socket"
UNITS = (SERVICE, SOCKET)

LISTEN_FDS_START = 3
"""The first file descriptor systemd passes (SD_LISTEN_FDS_START)."""

_ACTIVATION_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_WATCHDOG_VARS = ("WATCHDOG_USEC", "WATCHDOG_PID")


class ActivationError(Exception):
    """systemd passed a file descriptor this daemon cannot serve; the message says which."""


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """One datagram to ``$NOTIFY_SOCKET`` (``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``,
    ``STATUS=…``; several may be joined by newlines). Whether it was sent: False when no
    systemd asked for notifications, or the socket refused it (systemd went away)."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def status(text: str) -> str:
    """A ``STATUS=`` line for :func:`notify` (what ``systemctl status`` shows), on one line."""
    return "STATUS=" + " ".join(text.split())


def _for_us(env: Mapping[str, str], pid_var: str, pid: int) -> bool:
    value = env.get(pid_var)
    if value is None:
        return True
    try:
        return int(value) == pid
    except ValueError:
        return False


def watchdog_interval_s(environ: MutableMapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when systemd expects ``WATCHDOG=1`` from this process (its
    ``WATCHDOG_USEC``, with ``WATCHDOG_PID`` absent or ours), else None. The variables are
    removed, so that no child (the embedded Valkey) takes them for its own."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    ours = _for_us(env, "WATCHDOG_PID", os.getpid())
    for name in _WATCHDOG_VARS:
        env.pop(name, None)
    if raw is None or not ours:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[tuple[int, str]]:
    """The file descriptors systemd passed to this process, with their names (``LISTEN_FDNAMES``,
    ``unknown`` where none is given): ``[(3, "coordinatord.socket")]`` under our socket unit,
    ``[]`` when none was passed or they were meant for another process (``LISTEN_PID``). The
    variables are removed either way, so that no child inherits them."""
    env = os.environ if environ is None else environ
    pid, count, names = (env.get(name) for name in _ACTIVATION_VARS)
    for name in _ACTIVATION_VARS:
        env.pop(name, None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        number = int(count)
    except ValueError:
        return []
    labels = names.split(":") if names else []
    return [
        (fd, labels[i] if i < len(labels) and labels[i] else "unknown")
        for i, fd in enumerate(range(LISTEN_FDS_START, LISTEN_FDS_START + max(number, 0)))
    ]


def inherited_listener(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening Unix stream socket systemd passed (the first one, fd 3), or None when the
    daemon was not socket-activated. :class:`ActivationError` when what fd 3 holds is not
    something this daemon can serve (a TCP port, a datagram socket, a file, nothing)."""
    fds = listen_fds(environ)
    if not fds:
        return None
    fd, name = fds[0]
    return check_listener(fd, f"fd {fd} ({name}) passed by systemd (LISTEN_FDS={len(fds)})")


def check_listener(fd: int, described: str) -> socket.socket:
    """``fd`` as a socket object when it is a listening AF_UNIX stream socket with a path;
    else :class:`ActivationError`, ``fd`` left open as it was."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ActivationError(f"{described} is not open: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"{described} is not a socket")
    sock = socket.socket(fileno=fd)
    problem = None
    if sock.family != socket.AF_UNIX:
        problem = f"is a {sock.family.name} socket, not AF_UNIX: use ListenStream=/path/to.sock"
    elif sock.type != socket.SOCK_STREAM:
        problem = f"is a {sock.type.name} socket, not SOCK_STREAM: use ListenStream="
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "is not listening (Accept=no and ListenStream= make a listening socket)"
    elif not isinstance(sock.getsockname(), str) or not sock.getsockname():
        problem = "has no path (an abstract or unnamed socket): use ListenStream=/path/to.sock"
    if problem is not None:
        sock.detach()  # systemd's descriptor: leave it open, as it was
        raise ActivationError(f"{described} {problem}")
    sock.set_inheritable(False)
    return sock


def own_unit() -> str | None:
    """The systemd unit this process runs in (``coordinatord.service``), read from its cgroup;
    None outside a unit (a shell, a shim's start)."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.rpartition(":")[2]
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return part
    return None


# The user manager, through systemctl.

Runner = Callable[[list[str], float], tuple[int, str]]
"""Runs a command with a timeout: (exit status, stdout + stderr). Tests pass their own."""


def run_command(argv: list[str], timeout: float = 30.0) -> tuple[int, str]:
    """Run ``argv`` (systemctl) with the runtime dir an editor's environment may lack."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout,
            check=False,
        )  # fmt: skip
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except OSError as exc:
        return 126, f"{argv[0]}: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(argv)}: no answer within {timeout:g} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def user_manager_problem(run: Runner = run_command) -> str | None:
    """None when ``systemctl --user`` reaches a user manager; else why not, in its words."""
    code, said = run(["systemctl", "--user", "show", "--property=Version"], 15.0)
    if code == 0:
        return None
    if code == 127:
        return "there is no systemctl on PATH"
    return f"`systemctl --user` cannot reach a user manager: {said or f'exit status {code}'}"


def user_unit_dir(home: Path | None = None) -> Path:
    """``~/.config/systemd/user``: where user units go (from HOME, never XDG_CONFIG_HOME, which
    editors strip: the shim looks for the unit there too)."""
    return (Path.home() if home is None else home) / ".config" / "systemd" / "user"


@dataclass(frozen=True)
class UnitState:
    """One unit as ``coordinatord doctor`` reports it."""

    name: str
    installed: bool
    """Its file is in ~/.config/systemd/user."""
    ours: bool
    """That file was written by ``coordinatord service install``."""
    enabled: bool | None
    """``systemctl --user is-enabled`` says enabled; None when no user manager answers."""
    active: str | None
    """``ActiveState`` (``active``, ``inactive``, ``failed``, ``activating``…); None likewise."""
    sub_state: str | None = None
    """``SubState`` (``running``, ``listening``, ``dead``…); None likewise."""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "installed": self.installed,
            "ours": self.ours,
            "enabled": self.enabled,
            "active": self.active,
            "sub_state": self.sub_state,
        }


@dataclass(frozen=True)
class ServiceState:
    """Both units, and whether a user manager answered at all."""

    service: UnitState
    socket: UnitState
    manager_problem: str | None
    """None when ``systemctl --user`` works; else why not (then enabled/active are None)."""

    @property
    def running_under_systemd(self) -> bool:
        """systemd listens on the socket or runs the daemon: stopping goes through it."""
        live = ("active", "activating", "reloading", "deactivating")
        return any(unit.active in live for unit in (self.service, self.socket))

    def as_dict(self) -> dict[str, object]:
        return {
            "manager_problem": self.manager_problem,
            "service": self.service.as_dict(),
            "socket": self.socket.as_dict(),
        }


MARKER = "# Written by `coordinatord service install`"
"""The first line of each unit file we write: a file without it is somebody else's."""


def unit_state(home: Path | None = None, run: Runner = run_command) -> ServiceState:
    """Installed / ours / enabled / active for ``coordinatord.service`` and ``coordinatord.socket``.

    For ``coordinatord doctor``: never raises; without a user manager (no systemctl, WSL without
    systemd, a container) the files are still reported and ``manager_problem`` says why the rest
    is unknown."""
    directory = user_unit_dir(home)
    problem = user_manager_problem(run)
    states = []
    for name in UNITS:
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = None
        enabled: bool | None = None
        active = sub = None
        if problem is None:
            code, said = run(
                ["systemctl", "--user", "show", "--property=UnitFileState,ActiveState,SubState", name], 15.0
            )
            if code == 0:
                props = dict(line.split("=", 1) for line in said.splitlines() if "=" in line)
                enabled = props.get("UnitFileState") == "enabled"
                active = props.get("ActiveState") or None
                sub = props.get("SubState") or None
        states.append(
            UnitState(
                name=name,
                installed=text is not None,
                ours=text is not None and text.startswith(MARKER),
                enabled=enabled,
                active=active,
                sub_state=sub,
            )
        )
    return ServiceState(service=states[0], socket=states[1], manager_problem=problem)


def unit_socket_path(home: Path | None = None, uid: int | None = None) -> Path | None:
    """The socket path of the installed ``coordinatord.socket`` (its ``ListenStream=``, ``%t``
    resolved to ``/run/user/<uid>``), or None when there is none."""
    try:
        text = (user_unit_dir(home) / SOCKET).read_text(encoding="utf-8")
    except OSError:
        return None
    uid = os.getuid() if uid is None else uid
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "ListenStream" and value.strip().startswith(("/", "%t/")):
            listen = value.strip().replace("%t", f"/run/user/{uid}", 1)
            return Path(listen.replace("%%", "%"))
    return None
