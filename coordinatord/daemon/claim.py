"""Which daemon owns a socket path and a state dir: the socket claim and the ``flock`` locks.

Before anything else starts, the daemon takes an exclusive lock beside its socket (so two
daemons started at the same moment cannot both replace a stale socket file and bind) and one
in its state dir (two daemons on one state dir would run two servers on one AOF file); then it
binds the path, or serves the socket systemd passed. Kept beside the lifecycle that uses it, and
apart from the server, which only accepts on the listener it is given.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import structlog

from coordinatord import private_folder, socket_trust
from coordinatord.errors import AlreadyRunningError, DaemonError, UnsafeFolderError
from coordinatord.paths import default_socket, default_socket_path

log = structlog.get_logger("coordinatord.server")

MAX_UNIX_PATH = 107


class SocketClaim:
    """Owns the socket path for the daemon's lifetime.

    An exclusive ``flock`` on ``<socket>.lock`` decides which daemon owns the path, so two
    daemons started at the same moment cannot both replace a stale socket file and bind. With
    socket activation (``inherited``: the listening socket systemd passed) the lock is taken
    all the same, but the socket file is systemd's: it is neither probed, replaced nor removed.
    """

    def __init__(self, path: Path, inherited: socket.socket | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.inherited = inherited
        self._lock: HeldLock | None = None

    def acquire(self) -> None:
        if len(os.fsencode(self.path)) > MAX_UNIX_PATH:
            raise DaemonError(
                f"socket path {self.path} is longer than {MAX_UNIX_PATH} bytes, the limit of a Unix "
                f"socket path{_fallback_reason(self.path)}; choose a shorter --socket"
            )
        try:
            private_folder.ensure(self.path.parent)
        except UnsafeFolderError as exc:
            raise UnsafeFolderError(unsafe_socket_folder(self.path, str(exc))) from None
        self._lock = hold_lock(
            self.lock_path,
            lambda owner: (
                f"another coordinatord daemon (pid {owner.pid}) is already serving on {self.path}; "
                f"{reach_or_stop(self.path)}, or give this one another --socket"
            ),
        )
        if self.inherited is None:
            self._remove_stale_socket()

    def _remove_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise DaemonError(f"{self.path} exists and is not a socket; remove it or choose another --socket")
        try:
            # Blocking, as a full backlog must not pass for a dead socket. A server of another uid
            # is refused (ForeignServerError) without a byte sent.
            probe = socket_trust.connect(self.path, None)
        except OSError:
            log.info("stale_socket_removed", socket=str(self.path))
            self.path.unlink(missing_ok=True)
            return
        probe.close()
        raise AlreadyRunningError(
            f"something is already listening on {self.path}: a coordinatord daemon whose lock is "
            f"elsewhere, or systemd's coordinatord.socket, which starts the daemon of its unit on "
            f"the first connection; {reach_or_stop(self.path)}, or choose another --socket"
        )

    def release(self) -> None:
        """After a clean stop: the socket file (unless systemd's) and the lock file are removed."""
        if self.inherited is None:
            self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release(remove=True)
            self._lock = None


def unsafe_socket_folder(socket_path: Path, finding: str) -> str:
    """The refusal of a socket folder that is not private: what it is, which socket it is
    (the default, its fallback, or given), and the fix."""
    default = default_socket()
    folder = socket_path.parent
    if socket_path == default.path:
        which = "the default socket's folder" + (
            "" if default.unsafe is None else f" (its private fallback, because {default.unsafe})"
        )
    else:
        which = "the socket's folder (given by --socket, COORDINATORD_SOCKET or the config file's socket)"
    return (
        f"refusing {which}: {finding}; another user could put a socket of their own in place of "
        f"this daemon's. Fix: {private_folder.remedy(folder)}; or give a socket in a private folder "
        "of your own: mkdir -m 700 DIR, then --socket DIR/coordinatord.sock"
    )


def _fallback_reason(socket_path: Path) -> str:
    default = default_socket()
    if socket_path != default.path or default.unsafe is None:
        return ""
    return f" (it is the default's private fallback, because {default.unsafe})"


def reach_or_stop(socket_path: Path) -> str:
    """The next steps when another daemon serves ``socket_path``."""
    flag = "" if socket_path == default_socket_path() else f" --socket {socket_path}"
    return f"reach it with `coordinatord status{flag}`, stop it with `coordinatord stop{flag}`"


@dataclass(frozen=True)
class LockOwner:
    """What the holder of a lock wrote in it: its pid and, if it gave one, its socket."""

    pid: str
    socket: str | None


class HeldLock:
    """An exclusive ``flock`` on a file, held until :meth:`release` (or the process's end)."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self, remove: bool = False) -> None:
        """Unlock; with ``remove``, first delete the file, while it is still locked. Whoever
        locks the same inode after that sees that the path no longer leads to it, and tries
        again on a new file (see :func:`hold_lock`), so a removal never lets two hold it."""
        if self._handle is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == os.fstat(self._handle.fileno()).st_ino:
                    self.path.unlink()
        self._handle.close()
        self._handle = None

    def close(self) -> None:
        self.release()


def hold_lock(path: Path, conflict: Callable[[LockOwner], str], socket_path: Path | None = None) -> HeldLock:
    """Take an exclusive ``flock`` on ``path`` (writing our pid in it, and on a second line
    ``socket_path`` when given) or raise :class:`AlreadyRunningError` with ``conflict(owner)``.
    The lock lasts while the file stays open, and the kernel drops it when the process dies, so
    it can never go stale. A lock file removed by its last holder (:meth:`HeldLock.release`)
    between our open and our lock is noticed, and a new one taken.
    """
    while True:
        lock_file = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            lines = lock_file.read().splitlines()
            lock_file.close()
            owner = LockOwner(
                pid=(lines[0].strip() if lines else "") or "unknown",
                socket=lines[1].strip() if len(lines) > 1 and lines[1].strip() else None,
            )
            raise AlreadyRunningError(conflict(owner)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(lock_file.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock_file.close()  # its holder removed it as we opened it: lock the one there now
    os.chmod(path, 0o600)
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()) + (f"\n{socket_path}\n" if socket_path is not None else ""))
    lock_file.flush()
    return HeldLock(path, lock_file)


@contextlib.asynccontextmanager
async def listening(claim: SocketClaim) -> AsyncIterator[anyio.abc.SocketListener]:
    """Bind the claimed socket path (mode 0600), or serve the socket systemd passed, for as
    long as the block runs. Closing an inherited one closes only our descriptor: systemd's
    stays open, and connections made meanwhile wait in its backlog for the next daemon."""
    if claim.inherited is not None:
        listener: anyio.abc.SocketListener = await anyio.abc.SocketListener.from_socket(claim.inherited)
    else:
        listener = await anyio.create_unix_listener(claim.path, mode=0o600)
    try:
        yield listener
    finally:
        await listener.aclose()
