"""How many requests the daemon is handling: what a shutdown waits for and what the jobs step
aside for (:meth:`coordinatord.jobs.JobContext.pause`, through its own protocol, so the jobs
import nothing of the server)."""

from __future__ import annotations

import time

import anyio


class InFlight:
    """Counts requests being handled, so that shutdown can wait for them to finish and
    scheduled jobs can step aside for them.

    Its events are made only when someone waits: this runs twice per tool call.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_entered = 0.0
        """When the newest request was read (``time.monotonic()``, the event loop's clock)."""
        self._idle: anyio.Event | None = None
        self._answered: anyio.Event | None = None

    def enter(self) -> None:
        self.count += 1
        self.last_entered = time.monotonic()

    def leave(self) -> None:
        self.count -= 1
        if self._answered is not None:
            self._answered.set()
            self._answered = None
        if self.count == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        if self.count == 0:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        await self._idle.wait()

    async def wait_answered(self) -> None:
        """Return once the next request (any of those in flight) has been answered."""
        if self._answered is None:
            self._answered = anyio.Event()
        await self._answered.wait()
