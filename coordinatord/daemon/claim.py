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
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import structlog

from coordinatord import private_folder, socket_trust
from coordinatord.daemon_locks import LockOwner, socket_lock_path
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
        self.lock_path = socket_lock_path(path)
        self.inherited = inherited
        self._lock: HeldLock | None = None
        self.bound: FileId | None = None
        """The socket file this daemon bound at ``path`` (device and inode), once it has."""

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

    def note_bound(self) -> None:
        """Remember which file the socket just bound at ``path`` is, so that its removal or
        replacement can be noticed (:mod:`coordinatord.daemon.socket_watch`) and so that
        :meth:`release` removes only that file."""
        self.bound = file_id(self.path)

    def lock_is_held_here(self) -> bool:
        """Whether the file at :attr:`lock_path` is still the one this daemon holds the lock
        on (not removed, alone or with its folder, nor replaced)."""
        return self._lock is not None and self._lock.is_at_path()

    def relock(self) -> None:
        """Hold the lock on the file now at :attr:`lock_path` (made anew if it is gone), then
        let go of the old one, which nobody else can reach any more. Raises
        :class:`AlreadyRunningError` when another process holds the new one: another daemon
        has taken the path over."""
        fresh = hold_lock(
            self.lock_path,
            lambda owner: f"another process (pid {owner.pid}) holds {self.lock_path} now",
        )
        if self._lock is not None:
            self._lock.release()
        self._lock = fresh

    def release(self) -> None:
        """After a clean stop: the socket file (unless systemd's) and the lock file are removed,
        the socket file only if it is the one this daemon bound (a daemon that failed to start
        bound none, and the file there may be another's)."""
        if self.inherited is None and self.bound is not None and file_id(self.path) == self.bound:
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


FileId = tuple[int, int]
"""A file's (st_dev, st_ino): what a path leads to, whatever its name."""


def file_id(path: Path) -> FileId | None:
    """The (device, inode) of what ``path`` names itself (symlinks not followed), None when
    there is nothing there."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def reach_or_stop(socket_path: Path) -> str:
    """The next steps when another daemon serves ``socket_path``."""
    flag = "" if socket_path == default_socket_path() else f" --socket {socket_path}"
    return f"reach it with `coordinatord status{flag}`, stop it with `coordinatord stop{flag}`"


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

    def is_at_path(self) -> bool:
        """Whether :attr:`path` still leads to the file this lock is held on."""
        if self._handle is None:
            return False
        try:
            here = os.stat(self.path)
        except OSError:
            return False
        held = os.fstat(self._handle.fileno())
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def close(self) -> None:
        self.release()


LOCK_PATIENCE_S = 0.2
"""How long a lock found taken is tried again before it counts as another daemon's: ``status``,
``stop`` and the shim look whether a lock is held by taking it for an instant
(:mod:`coordinatord.daemon_locks`), which must not make a daemon starting then give up."""


def hold_lock(path: Path, conflict: Callable[[LockOwner], str], socket_path: Path | None = None) -> HeldLock:
    """Take an exclusive ``flock`` on ``path`` (writing our pid in it, and on a second line
    ``socket_path`` when given) or raise :class:`AlreadyRunningError` with ``conflict(owner)``.
    The lock lasts while the file stays open, and the kernel drops it when the process dies, so
    it can never go stale. A lock file removed by its last holder (:meth:`HeldLock.release`)
    between our open and our lock is noticed, and a new one taken.
    """
    give_up = time.monotonic() + LOCK_PATIENCE_S
    while True:
        lock_file = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = LockOwner.parse(lock_file.read())
            lock_file.close()
            if time.monotonic() < give_up:
                time.sleep(0.02)  # before the event loop runs: nothing else waits on this thread
                continue
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
        claim.note_bound()
    try:
        yield listener
    finally:
        await listener.aclose()
