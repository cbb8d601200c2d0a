"""Scheduled jobs: APScheduler 3's ``AsyncIOScheduler`` on the daemon's own event loop.

Every job is an ``async`` function ``(JobContext) -> dict[str, int]`` (its counts, e.g.
``{"projects": 3, "inactive": 12}``) registered with :meth:`Jobs.add`. The runner gives every
job the same guarantees:

- it never overlaps itself (``max_instances=1`` and a per-job lock shared with "run now"),
  misfired ticks coalesce into one;
- when several daemons share one backend, each tick runs under a leader lease (a ``SET NX PX``
  renewed by its holder), so one daemon does the work: for a global job (the heartbeat sweep,
  the lock reaper) one lease for all, ``coord:leader:<job>``; for a job that works on the
  files of this host's project roots (the session archiver, the memory-bank refresh), one per
  host, ``coord:leader:<job>:<host id>``, so that every host runs it and two daemons of one
  host never both do;
- before each run the daemon's clock, the backend's time, is read again when its last reading
  is stale (:meth:`coordinatord.clock.BackendClock.fresh`): every cutoff a job decides is the
  backend's time, and a job that cannot read it does not run;
- a failing run logs its exception and the job runs again at its next tick;
- every run logs one ``job_run`` event with its duration, outcome and counts, and its state
  (last run, outcome, counts, next run) is kept for ``coordinatord status``.

Job actions (an agent going inactive, a lock reaped …) are reported with
:meth:`JobContext.action`: one structured log event and one activity event each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from coordinatord.app import App
from coordinatord.errors import BackendError
from coordinatord.keyspace import Namespace, leader_key
from coordinatord.services.projects import KnownProject, ProjectRegistry
from coordinatord.services.shared import lua

log = structlog.get_logger("coordinatord.jobs")


JobFunc = Callable[["JobContext"], Awaitable[dict[str, int]]]

CALLS_FIRST_MAX_S = 0.005
"""Longest a job step waits for a tool call in progress (see :meth:`JobContext.pause`)."""
CALL_PARKED_S = 0.05
"""A call in flight this long is waiting (for a lock), and no job step waits for it."""


class CallsInFlight(Protocol):
    """What a job step needs to know of the requests the daemon is handling (the server's
    :class:`~coordinatord.server.in_flight.InFlight`; a protocol, so the jobs import nothing of
    the server)."""

    @property
    def count(self) -> int: ...

    @property
    def last_entered(self) -> float: ...

    async def wait_answered(self) -> None: ...


class _NoCalls:
    """No server (a job run by a test, or a daemon without connections): never busy."""

    count = 0
    last_entered = 0.0

    async def wait_answered(self) -> None:
        await anyio.lowlevel.checkpoint()


NO_CALLS: CallsInFlight = _NoCalls()


@dataclass
class JobContext:
    """What a job run gets: the app (services, store, settings), the projects, a reporter, and
    the requests in flight it steps aside for."""

    app: App
    projects: ProjectRegistry
    job: str
    in_flight: CallsInFlight = NO_CALLS

    async def known_projects(self) -> list[KnownProject]:
        return await self.projects.known()

    async def pause(self) -> None:
        """Between two steps of a job: let a tool call being handled finish first (waiting at
        most :data:`CALLS_FIRST_MAX_S`, so that a job still moves under constant load).

        A bare yield is not enough: a tool call needs several turns of the event loop (read the
        request, await the backend, write the reply), and a job that takes every other turn
        adds its step's time to each of them. Calls in flight for longer than
        :data:`CALL_PARKED_S` are left out: they are parked (a lock wait), not working.
        """
        await anyio.lowlevel.checkpoint()
        in_flight = self.in_flight
        if in_flight.count and time.monotonic() - in_flight.last_entered < CALL_PARKED_S:
            with anyio.move_on_after(CALLS_FIRST_MAX_S):
                await in_flight.wait_answered()

    def action(self, ns: Namespace, action: str, *, key: str | None = None, agent: str | None = None) -> None:
        """Report one thing the job did (``agent_inactive``, ``lock_reaped`` …)."""
        log.info(action, job=self.job, project=ns.project_id, key=key, agent=agent)
        self.app.activity.record(ns, kind="job", name=self.job, agent=agent, key=key, outcome=action)


@dataclass
class JobState:
    name: str
    interval_s: float
    per_host: bool = False  # leader per host (the job works on this host's files), not global
    runs: int = 0
    last_started: float | None = None
    last_duration_ms: float | None = None
    last_outcome: str | None = None  # ok, failed, not_leader
    last_counts: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    next_run: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "interval_s": self.interval_s,
            "per_host": self.per_host,
            "runs": self.runs,
            "last_started": self.last_started,
            "last_duration_ms": self.last_duration_ms,
            "last_outcome": self.last_outcome,
            "last_counts": self.last_counts,
            "last_error": self.last_error,
            "next_run": self.next_run,
        }


@dataclass
class _Job:
    func: JobFunc
    state: JobState
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class Jobs:
    """The daemon's scheduler and the record of every job's runs."""

    def __init__(self, app: App, projects: ProjectRegistry, in_flight: CallsInFlight = NO_CALLS) -> None:
        """``in_flight``: the server's requests in flight, which every step steps aside for."""
        self._app = app
        self._projects = projects
        self.in_flight = in_flight
        self._jobs: dict[str, _Job] = {}
        self._scheduler: AsyncIOScheduler | None = None
        # Idempotent by nature, and outside any project's hash tag: taking or renewing a lease
        # this daemon holds again renews it and answers 1 again; resigning twice deletes nothing.
        self._lease = app.store.script(lua("leader_lease"), exactly_once=False)
        self._resign = app.store.script(lua("leader_resign"), exactly_once=False)
        self.daemon_id = app.daemon_id

    def add(self, name: str, interval_s: float, func: JobFunc, *, per_host: bool = False) -> None:
        """``per_host``: the job works on this host's files, so each host elects its own leader."""
        self._jobs[name] = _Job(func, JobState(name, interval_s, per_host))

    def lease_key(self, name: str) -> str:
        """The leader lease a tick of job ``name`` runs under."""
        return leader_key(name, self._app.host if self._jobs[name].state.per_host else None)

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    async def run(self) -> None:
        """Schedule every job until cancelled."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        for name, job in self._jobs.items():
            interval = job.state.interval_s
            scheduler.add_job(
                self._tick,
                "interval",
                seconds=interval,
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval)),
                next_run_time=datetime.now(UTC) + timedelta(seconds=min(interval, 5.0)),
            )
        self._scheduler = scheduler
        scheduler.start()
        log.info(
            "jobs_started", jobs={n: j.state.interval_s for n, j in self._jobs.items()}, daemon=self.daemon_id
        )
        try:
            await anyio.sleep_forever()
        finally:
            # Cancels runs in progress; a job must leave Redis consistent at any await.
            scheduler.shutdown(wait=False)
            self._scheduler = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self.resign_all()

    async def resign_all(self) -> None:
        """Give up our leases on the way out, so another daemon takes the next tick at once
        instead of after the lease runs out. Also for a daemon whose scheduler never ran
        (``jobs.enabled = false``) but whose ``run_now`` took leases."""
        for name in self._jobs:
            try:
                await self._resign([self.lease_key(name)], [self.daemon_id])
            except BackendError:
                return

    async def run_now(self, name: str) -> JobState:
        """Run a job at once (``coordinatord archive``, tests), under the same rules as a tick."""
        if name not in self._jobs:
            raise KeyError(name)
        await self._tick(name)
        return self._jobs[name].state

    def status(self) -> list[dict[str, Any]]:
        states = []
        for name, job in self._jobs.items():
            scheduled = self._scheduler.get_job(name) if self._scheduler is not None else None
            next_time = scheduled.next_run_time if scheduled is not None else None
            # The scheduler ticks on this machine's clock; shown, like every time in the status
            # reply, on the app's clock (the backend's), so that "next in" is right on a skewed host.
            job.state.next_run = (
                next_time.timestamp() - time.time() + self._app.clock() if next_time is not None else None
            )
            states.append(job.state.as_dict())
        return states

    async def _tick(self, name: str) -> None:
        job = self._jobs[name]
        state = job.state
        async with job.lock:
            started = self._app.clock()  # shown against the status reply's "now", the same clock
            clock = time.perf_counter()
            try:
                if self._app.backend_clock is not None:
                    await self._app.backend_clock.fresh()
                if not await self._lead(name, state.interval_s):
                    state.last_outcome = "not_leader"
                    log.debug("job_skipped_not_leader", job=name)
                    return
                counts = await job.func(JobContext(self._app, self._projects, name, self.in_flight))
            except Exception as exc:
                # One bad run must not stop the job: log it, run again at the next tick.
                duration = round((time.perf_counter() - clock) * 1000, 3)
                state.runs += 1
                state.last_started, state.last_duration_ms = started, duration
                state.last_outcome, state.last_error, state.last_counts = "failed", str(exc), {}
                if isinstance(exc, BackendError):
                    log.warning("job_run", job=name, outcome="failed", duration_ms=duration, error=str(exc))
                else:
                    log.exception("job_run", job=name, outcome="failed", duration_ms=duration)
                return
            duration = round((time.perf_counter() - clock) * 1000, 3)
            state.runs += 1
            state.last_started, state.last_duration_ms = started, duration
            state.last_outcome, state.last_error, state.last_counts = "ok", None, dict(counts)
            log.info("job_run", job=name, outcome="ok", duration_ms=duration, **counts)

    async def _lead(self, name: str, interval_s: float) -> bool:
        """Take or renew this job's leader lease; the lease outlives two missed ticks."""
        lease_ms = int(max(interval_s * 2.5, 5.0) * 1000)
        return bool(await self._lease([self.lease_key(name)], [self.daemon_id, lease_ms]))
