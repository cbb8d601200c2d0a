"""Which daemon holds a socket's claim, found from its lock files when its socket does not answer.

A daemon holds an exclusive ``flock`` on ``<socket>.lock`` beside its socket and on
``<state_dir>/daemon.lock`` (whose second line names the socket it serves) for as long as it
runs (:mod:`coordinatord.daemon.claim`). The kernel drops a ``flock`` when its holder dies, so a
held lock is a live daemon even when its socket file is gone: removed by a tmp cleaner, or with
the whole folder by a logout that empties ``/run/user/<uid>``. ``coordinatord status`` and
``coordinatord stop`` find it here, and the shim does not start a second daemon that could only
be refused.

Whether a lock is held is tested by trying it (``LOCK_EX | LOCK_NB``) and letting go at once;
:func:`~coordinatord.daemon.claim.hold_lock` tries again briefly before it calls a lock taken, so
that such a look never makes a daemon starting at that moment give up. Standard library only,
and cheap to import: the shim uses it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from coordinatord.paths import socket_flag

STATE_LOCK_NAME = "daemon.lock"


def socket_lock_path(socket_path: Path) -> Path:
    """``<socket>.lock``: whoever holds it owns the socket path."""
    return socket_path.with_name(socket_path.name + ".lock")


def state_lock_path(state_dir: Path) -> Path:
    """``<state_dir>/daemon.lock``: whoever holds it runs on the state dir (and names its socket)."""
    return state_dir / STATE_LOCK_NAME


class LockOwner:
    """What the holder of a lock wrote in it: its pid and, if it gave one, its socket."""

    __slots__ = ("pid", "socket")

    def __init__(self, pid: str, socket: str | None) -> None:
        self.pid = pid
        self.socket = socket

    @classmethod
    def parse(cls, text: str) -> LockOwner:
        lines = text.splitlines()
        pid = (lines[0].strip() if lines else "") or "unknown"
        socket = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
        return cls(pid=pid, socket=socket)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LockOwner) and (self.pid, self.socket) == (other.pid, other.socket)

    def __hash__(self) -> int:
        return hash((self.pid, self.socket))

    def __repr__(self) -> str:
        return f"LockOwner(pid={self.pid!r}, socket={self.socket!r})"


class Holder:
    """A live process holding a daemon's lock: the lock file and what its holder wrote in it."""

    __slots__ = ("lock", "owner")

    def __init__(self, lock: Path, owner: LockOwner) -> None:
        self.lock = lock
        self.owner = owner

    @property
    def pid(self) -> int | None:
        """The pid written in the lock, when it is one."""
        return int(self.owner.pid) if self.owner.pid.isdigit() and int(self.owner.pid) > 0 else None

    def verified_pid(self) -> int | None:
        """The pid written in the lock, if that process has the lock file open right now (seen
        in ``/proc/<pid>/fd``): the lock is held, and this is the process holding it, not a pid
        left over from an earlier holder and reused since."""
        pid = self.pid
        if pid is None:
            return None
        try:
            wanted = os.stat(self.lock)
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return None
        for fd in fds:
            try:
                opened = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (opened.st_dev, opened.st_ino) == (wanted.st_dev, wanted.st_ino):
                return pid
        return None


def held(lock: Path) -> Holder | None:
    """The lock's holder when a process holds the ``flock`` on ``lock``; None when nobody does
    (or there is no such file). Opens the file read-only, never creates it."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder(lock, LockOwner.parse(os.read(fd, 4096).decode("ascii", "replace")))
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_holding(socket_path: Path, state_dir: Path | None) -> Holder | None:
    """The live daemon that owns ``socket_path``, whether or not its socket answers: the holder
    of ``<socket>.lock``, else the holder of the state dir's lock when it names this socket
    (the socket's folder, and the lock beside it, may be gone)."""
    holder = held(socket_lock_path(socket_path))
    if holder is not None:
        return holder
    if state_dir is None:
        return None
    holder = held(state_lock_path(state_dir))
    if holder is not None and holder.owner.socket is not None and same_path(holder.owner.socket, socket_path):
        return holder
    return None


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one path (symlinks resolved), even when neither exists."""
    return os.path.realpath(a) == os.path.realpath(b)


def socket_state(socket_path: Path) -> str:
    """What is at ``socket_path``, in words for messages: ``missing``, ``not a socket`` or
    ``a socket``."""
    import stat

    try:
        mode = os.lstat(socket_path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return "a socket" if stat.S_ISSOCK(mode) else "not a socket"


def unreachable(holder: Holder, socket_path: Path) -> str:
    """What to tell when ``holder`` owns ``socket_path`` but nothing answers there: what is at
    the path, what happens next, and what to do if it does not (advice that works: ``stop``
    finds the daemon from this same lock)."""
    pid = holder.verified_pid()
    who = f"pid {pid}" if pid is not None else f"pid {holder.owner.pid} by its lock {holder.lock}"
    found = socket_state(socket_path)
    there = {
        "missing": "is missing",
        "not a socket": "is now a file that is not a socket",
        "a socket": "does not answer",
    }.get(found, f"is {found}")
    return (
        f"the coordinatord daemon ({who}) runs, but its socket {socket_path} {there}: it is still "
        "starting, or the socket was removed or replaced under it, in which case it binds a new one "
        "within server.socket_check_s (2 s by default), or stops by itself if it cannot, and the "
        f"next shim starts one; if it does neither, `coordinatord stop{socket_flag(socket_path)}` "
        "stops it"
    )
