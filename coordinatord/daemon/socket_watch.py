"""Keeping the socket path the daemon's: a removed or replaced socket file is bound again.

A tmp cleaner, a logout that empties ``/run/user/<uid>``, or a person tidying up can remove the
socket file (or its whole folder) under a running daemon. The daemon goes on accepting on the
socket it has, which nobody can reach any more, and it still holds its locks, so a daemon a shim
starts would only be refused. So every ``server.socket_check_s`` (2 s) the daemon compares what
is at its socket path (and at its lock's path) with the files it bound and locked, by device and
inode. When they differ it makes the folder again if it is gone (mode 0700, as the claim does),
holds the lock on the file now at the lock's path, binds a new socket at the path and accepts
there; connections already open go on. If it cannot (the path is now a file that is not a
socket, which it will not delete; the folder cannot be made; another daemon holds the lock now),
it logs why and stops cleanly, so that the next shim starts a daemon that reports what is wrong.

Not for a socket systemd passed (socket activation): that file is systemd's.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from coordinatord import private_folder
from coordinatord.daemon.claim import FileId, SocketClaim, file_id
from coordinatord.errors import AlreadyRunningError, DaemonError, UnsafeFolderError

log = structlog.get_logger("coordinatord.daemon")

RELOCK_ATTEMPTS = 3
"""Checks in a row that may find another process holding the lock's new file before this daemon
gives the path up. A daemon a shim started in the gap holds it for an instant, and then fails on
the state dir's lock, which this daemon holds; one that keeps it serves from another state dir."""


def what_changed(bound: FileId | None, at_path: FileId | None, lock_here: bool) -> str | None:
    """What happened to the socket path since the daemon bound it: ``gone``, ``replaced`` (another
    file is there), ``lock moved`` (the socket is fine but its lock file is not the one held), or
    None when nothing did. Pure: the caller looks at the files."""
    if at_path is None:
        return "gone"
    if at_path != bound:
        return "replaced"
    if not lock_here:
        return "lock moved"
    return None


def make_private_folder(folder: Path) -> None:
    """Make the socket's folder again, as the claim made it (:mod:`coordinatord.private_folder`'s
    rule: mode 0700, judged through a descriptor), but never its parents: a ``/run/user/<uid>``
    that a logout removed is systemd's to make. A folder someone else made in the meantime, or
    opened, is refused, and the daemon stops rather than bind there."""
    if not folder.parent.is_dir():
        raise DaemonError(f"cannot make the socket's folder {folder} again: {folder.parent} is gone")
    try:
        private_folder.ensure(folder)
    except UnsafeFolderError as exc:
        raise DaemonError(
            f"the socket's folder is no longer this daemon's to bind in: {exc}; this daemon stops"
        ) from None


class ServedSocket:
    """The listener the daemon accepts on, which :meth:`watch` replaces when the socket file
    is removed or replaced."""

    def __init__(
        self,
        claim: SocketClaim,
        listener: anyio.abc.SocketListener,
        accept: Callable[[anyio.abc.SocketListener], Coroutine[Any, Any, None]],
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self._claim = claim
        self.listener = listener
        self._accept = accept
        self._task_group = task_group
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        self._lock_conflicts = 0
        self.lost = anyio.Event()
        """Set when the socket is gone and cannot be bound again: the daemon should stop."""
        self.lost_reason = ""

    async def watch(self, interval_s: float) -> None:
        """Check the path every ``interval_s`` until :meth:`aclose`."""
        with anyio.CancelScope() as self._scope:
            while not self._closed:
                await anyio.sleep(interval_s)
                await self.check()

    async def check(self) -> None:
        """One look at the path; bind again (or give up) if it changed."""
        claim = self._claim
        change = what_changed(claim.bound, file_id(claim.path), claim.lock_is_held_here())
        if change is None or self._closed or self.lost.is_set():
            return
        started = time.monotonic()
        if change != "lock moved":
            log.warning("socket_lost", socket=str(claim.path), what=change)
        try:
            await self._restore(change)
        except AlreadyRunningError as exc:
            self._lock_conflicts += 1
            if self._lock_conflicts < RELOCK_ATTEMPTS:
                log.warning("socket_lock_taken", socket=str(claim.path), error=str(exc), retry=True)
                return
            self._give_up(f"{exc}: another daemon owns {claim.path} now")
        except (DaemonError, OSError) as exc:
            self._give_up(str(exc) if isinstance(exc, DaemonError) else f"cannot bind {claim.path}: {exc}")
        else:
            self._lock_conflicts = 0
            event = "socket_lock_restored" if change == "lock moved" else "socket_rebound"
            log.info(event, socket=str(claim.path), took_ms=round((time.monotonic() - started) * 1000, 1))

    async def _restore(self, change: str) -> None:
        claim = self._claim
        make_private_folder(claim.path.parent)  # gone, or made again by another: judged anew
        if not claim.lock_is_held_here():
            # hold_lock waits a moment on a lock found taken: not on the event loop.
            await anyio.to_thread.run_sync(claim.relock)
        if change == "lock moved":
            return
        try:
            mode = os.lstat(claim.path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise DaemonError(
                    f"{claim.path}, where this daemon's socket was, is now a file that is not a socket; "
                    "it is left alone, and this daemon stops (remove it, and the next shim starts a daemon)"
                )
            claim.path.unlink()  # another socket file put in the place of ours
        listener = await anyio.create_unix_listener(claim.path, mode=0o600)
        claim.note_bound()
        old, self.listener = self.listener, listener
        self._task_group.start_soon(self._accept, listener)
        await old.aclose()  # its accept loop ends; its connections go on

    def _give_up(self, reason: str) -> None:
        log.error("socket_rebind_failed", socket=str(self._claim.path), error=reason, action="stopping")
        self.lost_reason = reason
        self.lost.set()

    async def aclose(self) -> None:
        """Stop watching and accepting (the daemon is stopping)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        await self.listener.aclose()
