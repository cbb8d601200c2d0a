"""Blocking reads of a project's files, run off the event loop: bounded in time, and at most
``project_files.reads_per_project`` at once for one project, so that one project's hostile or
stalled files never hold the worker threads other projects' calls need.

The daemon's threads: every blocking call (resolving a root, reading a file, writing an
archive) runs in one of anyio's worker threads, and all of them share anyio's default limiter
of 40 threads. A read that never returns (a FIFO opened without ``O_NONBLOCK``; today still a
file on a network or FUSE mount that does not answer) kept its thread *and* its token for ever:
about 40 of them and no call of any project could start a thread again, so editors of healthy
projects got no ``initialize`` reply. :mod:`coordinatord.safe_read` refuses FIFOs, devices and
oversized files without blocking; this module bounds what is left, a read that is slow:

1. a read first takes a token of its *project's* limiter (waiting, like the read, at most
   ``project_files.read_timeout_s``);
2. it runs in a worker thread that the call may abandon (``abandon_on_cancel``) under that time
   bound: on time-out the call gets :class:`~coordinatord.errors.FileRefusedError` naming the
   file the thread was reading, and the shared limiter's token comes back at once;
3. the project's token comes back only when the thread really ends: a project whose reads hang
   holds at most ``reads_per_project`` threads, and its next reads wait for one of those (and
   time out, saying so) instead of starting more.

A project is named by its root as given (normalised, without touching the disk: the read is
what may hang); reads that have no project root (an anonymous client) share one limiter.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Literal, TypeVar, TypeVarTuple

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from coordinatord import heap, safe_read
from coordinatord.errors import FileRefusedError
from coordinatord.settings import ProjectFileSettings

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_State = Literal["pending", "running", "abandoned", "cancelled", "done"]


class _Borrow:
    """One read: the borrower of a token of its project's limiter, and who gives it back.

    pending → running → done, in the thread; the call, when it stops waiting: pending →
    cancelled (the function will not run: the token goes back now), running → abandoned (the
    thread gives the token back when the function returns), done → the token goes back now.
    """

    def __init__(self, release: Callable[[_Borrow], None], token: anyio.lowlevel.EventLoopToken) -> None:
        self._release = release
        self._token = token
        self._lock = threading.Lock()
        self.state: _State = "pending"
        self.thread: int | None = None
        self.bytes_read = 0

    def work(self, func: Callable[[*Ts], T], *args: *Ts) -> T | None:
        """In the worker thread."""
        with self._lock:
            if self.state == "cancelled":
                return None  # nobody waits for it any more, and its token is back
            self.state = "running"
            self.thread = threading.get_ident()
        before = safe_read.bytes_read()
        try:
            return func(*args)
        finally:
            self.bytes_read = safe_read.bytes_read() - before
            with self._lock:
                abandoned = self._is("abandoned")
                self.state = "done"
            if abandoned:
                # The loop's own thread gives the token back (a limiter is not thread-safe);
                # a daemon that has stopped meanwhile has no limiter left to give it to.
                with contextlib.suppress(anyio.RunFinishedError, RuntimeError):
                    anyio.from_thread.run_sync(self._release, self, token=self._token)

    def _is(self, state: _State) -> bool:
        # A method, not an inline comparison: mypy narrows ``state`` to "running" above and
        # cannot know the loop's thread changes it meanwhile.
        return self.state == state

    def settle(self) -> None:
        """On the loop, when the call stops waiting (a result, an error, a time-out)."""
        with self._lock:
            if self.state == "running":
                self.state = "abandoned"
                return
            if self.state == "pending":
                self.state = "cancelled"
        self._release(self)


class ProjectReads:
    """Runs a project's blocking file reads (see the module): ``await reads.run(root, f, *args)``."""

    def __init__(self, settings: ProjectFileSettings) -> None:
        self._timeout_s = settings.read_timeout_s
        self._per_project = settings.reads_per_project
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._running: dict[str, set[_Borrow]] = {}

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def busy(self, root: str | None) -> int:
        """How many of ``root``'s reads hold a thread now (abandoned ones included)."""
        return len(self._running.get(_key(root), ()))

    async def run(self, root: str | None, func: Callable[[*Ts], T], *args: *Ts) -> T:
        """``func(*args)`` in a worker thread, as one of ``root``'s reads; its result or its
        exception, or :class:`FileRefusedError` when it does not finish in time."""
        key = _key(root)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = anyio.CapacityLimiter(self._per_project)
        borrow: _Borrow = _Borrow(lambda b: self._give_back(key, limiter, b), anyio.lowlevel.current_token())
        acquired = False
        result: T | None = None
        with anyio.move_on_after(self._timeout_s) as scope:
            await limiter.acquire_on_behalf_of(borrow)
            acquired = True
            self._running.setdefault(key, set()).add(borrow)
            try:
                result = await anyio.to_thread.run_sync(borrow.work, func, *args, abandon_on_cancel=True)
            finally:
                borrow.settle()
        if scope.cancelled_caught:
            raise self._timed_out(key, borrow if acquired else None)
        if borrow.bytes_read >= heap.TRIM_AFTER_BYTES:
            # What the function read and dropped (an archive it only looked into): see heap.
            await anyio.to_thread.run_sync(heap.give_back_freed_memory)
        return result  # type: ignore[return-value]  # work() returns None only once cancelled

    def _give_back(self, key: str, limiter: anyio.CapacityLimiter, borrow: _Borrow) -> None:
        limiter.release_on_behalf_of(borrow)
        running = self._running.get(key)
        if running is not None:
            running.discard(borrow)
            if not running:
                del self._running[key]
        # Forget an idle project's limiter, so that the map holds only projects being read.
        idle = limiter.borrowed_tokens == 0 and limiter.statistics().tasks_waiting == 0
        if idle and self._limiters.get(key) is limiter:
            del self._limiters[key]

    def _timed_out(self, key: str, borrow: _Borrow | None) -> FileRefusedError:
        limit = f"project_files.read_timeout_s = {self._timeout_s:g} s"
        fix = (
            "a file on a filesystem that does not answer (a network or FUSE mount?): fix the mount "
            f"or move the file away (or, for a very large project, raise {limit}); the read goes on "
            "in the background and this project's next reads wait for it"
        )
        if borrow is not None:
            path = safe_read.reading_in(borrow.thread) if borrow.thread is not None else None
            # The bound is the call's: the file named is the one being read when it ran out.
            return FileRefusedError(
                path or f"a file of {key or 'the default project'}",
                f"was still being read when the call's {limit} ran out",
                fix,
            )
        stuck = sorted(
            filter(None, (safe_read.reading_in(b.thread) for b in self._running.get(key, ()) if b.thread))
        )
        where = f" (reading {', '.join(stuck)})" if stuck else ""
        return FileRefusedError(
            f"project {key or 'default'}",
            f"has {self._per_project} reads of its files still running after {limit}{where}",
            fix,
        )


def _key(root: str | None) -> str:
    return os.path.normpath(root) if root else ""
