"""Time as a dependency: what "now" is for the services, the jobs and the daemon.

Services take a :data:`Clock` (epoch seconds, like :func:`time.time`), so that tests move time
instead of sleeping (``tests/support.py`` FakeClock). The daemon gives them a
:class:`BackendClock`: **the backend's time, never this machine's**.

Why one clock. Every cutoff that more than one daemon acts on compares a moment one daemon wrote
with a moment another computes: a heartbeat's score against the sweep's window and forget
horizon, a lock's or a reservation's or a claim's acquisition against the moment its holder was
found gone, a record's expiry against now, a session's last write against the archiver's idle
cutoff. With each daemon's own wall clock, a daemon two hours ahead found an agent gone 40 s
after its editor closed and released its one-hour lock, its task claim and its file reservation
(issue 21). So:

- scripts that decide a cutoff by themselves read ``TIME`` inside (lock leases, presence
  records, gone marks, claim and reservation times, message ids, rate-limit windows), and leader
  leases are ``SET PX`` (the server's own expiry);
- what Python computes (heartbeat scores, the sweep's windows, task and session index horizons,
  archive due, the project registry's ages, timestamps in documents and activity events) uses
  this clock, which follows the backend's ``TIME``.

How. :class:`BackendClock` samples ``TIME`` (one round trip, :func:`measure`) at start and every
:data:`RESAMPLE_S`; between samples, now is the backend's time at the sample plus the time
elapsed since on a clock nobody sets (:func:`elapsed`): ``CLOCK_BOOTTIME`` on Linux, which is
monotonic *and* counts a suspend (``time.monotonic`` does not: a laptop that slept two hours
would lag two hours until the next sample), ``time.monotonic`` elsewhere. So a step of the wall
clock (NTP, a user, a VM resume) never moves an expiry. A sample is anchored at the middle of its
round trip, so it is off by at most half of it (µs on a Unix socket, ms on a LAN, tens of ms to
Upstash); one slower than :data:`MAX_ROUND_TRIP_S` does not replace a better anchor that is not
stale yet. While the backend does not answer, the last anchor goes on (what needs the backend
fails meanwhile anyway). Before the first sample (a daemon started with its backend down) the
clock is the wall clock, read again every :data:`RETRY_S`; the jobs, which decide the cutoffs
other agents' state depends on, take a fresh anchor before every run (:meth:`BackendClock.fresh`)
or do not run.

Which server's ``TIME``: one server's, or a Sentinel set-up's master (where the scripts run too);
in a Cluster any node's (TIME has no key), while a script reads its own node's: a cluster is one
service whose machines its operator keeps in time (NTP), and a node whose clock is off is off for
the scripts it runs as well, whatever the daemons do; on Upstash the REST ``TIME`` command, from
the database that runs the scripts.

Skew. Every sample also compares this machine's wall clock with the backend's (local minus
backend, at the middle of the round trip). Beyond ``daemon.max_clock_skew_s`` the daemon logs
``clock_skew`` (a warning) at most once per :data:`WARN_EVERY_S`, and ``clock_skew_resolved``
when it is back within; ``status`` and ``top`` show it (:meth:`BackendClock.state`). The skew
decides nothing (the daemon's expiries are the backend's whatever it is): it is for the operator,
since this machine's other programs, and the daemon's own log timestamps, still use its clock.
``doctor`` measures it with the same :func:`measure`.

Left on the wall clock on purpose: log timestamps (they say when this machine saw something),
the scheduler's ticks (intervals, relative), local durations (uptime, call durations use
``perf_counter``/``monotonic``), backup file names, and the shim's timers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from coordinatord.errors import BackendError

log = structlog.get_logger("coordinatord.clock")

Clock = Callable[[], float]
"""Seconds since the epoch, like :func:`time.time`."""

system_clock: Clock = time.time
"""This machine's wall clock: the services' default, for code that has no backend (tests)."""

ReadBackendTime = Callable[[], Awaitable[tuple[int, int]]]
"""The backend's ``TIME``: seconds and microseconds (:meth:`coordinatord.store.Store.time`)."""

RESAMPLE_S = 30.0
"""How often the daemon reads the backend's time again."""
STALE_S = 2 * RESAMPLE_S
"""An anchor older than this is read again before a job runs (:meth:`BackendClock.fresh`)."""
RETRY_S = 1.0
"""After a failed sample, the next try comes this much later."""
MAX_ROUND_TRIP_S = 1.0
"""A sample slower than this (a call that needed retries) does not replace a better anchor: the
anchor's error is up to half its round trip."""
WARN_EVERY_S = 3_600.0
"""The ``clock_skew`` warning is logged at most this often."""

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def elapsed() -> float:
    """Seconds on a clock that only moves forward, counting a suspend where the OS can."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


@dataclass(frozen=True)
class ClockSample:
    """One reading of the backend's clock."""

    backend: float  # the backend's time (epoch s) at ``at``
    at: float  # the elapsed clock (:func:`elapsed`) at the middle of the round trip
    skew_s: float  # this machine's wall clock minus the backend's (positive: this one is ahead)
    round_trip_s: float


async def measure(
    read: ReadBackendTime, *, wall: Clock = time.time, elapsed: Callable[[], float] = elapsed
) -> ClockSample:
    """Read the backend's time once and compare it with ``wall``: the one skew computation of
    the daemon and of ``doctor``. Raises what ``read`` raises (a :class:`BackendError`)."""
    wall_before, before = wall(), elapsed()
    seconds, micros = await read()
    after, wall_after = elapsed(), wall()
    backend = seconds + micros / 1_000_000
    return ClockSample(
        backend=backend,
        at=(before + after) / 2,
        skew_s=(wall_before + wall_after) / 2 - backend,
        round_trip_s=after - before,
    )


@dataclass(frozen=True)
class ClockState:
    """What ``status`` and ``top`` show of the daemon's clock."""

    anchored: bool  # False: the backend's time was never read; the wall clock stands in
    skew_s: float | None  # the latest sample's (this machine minus the backend), None before one
    max_skew_s: float
    skewed: bool  # |skew_s| > max_skew_s
    sample_age_s: float | None
    round_trip_ms: float | None
    error: str | None  # why the latest sample failed (None when it did not)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": "backend",
            "anchored": self.anchored,
            "skew_s": self.skew_s,
            "max_skew_s": self.max_skew_s,
            "skewed": self.skewed,
            "sample_age_s": self.sample_age_s,
            "round_trip_ms": self.round_trip_ms,
            "error": self.error,
        }


class BackendClock:
    """A :data:`Clock` that follows the backend's ``TIME`` (see the module): call it for now."""

    def __init__(
        self,
        read: ReadBackendTime,
        max_skew_s: float,
        *,
        backend: str = "the backend",
        wall: Clock = time.time,
        elapsed: Callable[[], float] = elapsed,
    ) -> None:
        """``read``: the store's ``time``; ``max_skew_s``: ``daemon.max_clock_skew_s``;
        ``backend``: its name, for the log; ``wall``/``elapsed``: for tests."""
        self._read = read
        self._max_skew_s = max_skew_s
        self._backend = backend
        self._wall = wall
        self._elapsed = elapsed
        self._anchor: ClockSample | None = None
        self._latest: ClockSample | None = None
        self._error: str | None = None
        self._warned_at: float | None = None  # elapsed clock; None: no warning logged yet
        self._skewed = False

    def __call__(self) -> float:
        anchor = self._anchor
        if anchor is None:
            return self._wall()
        return anchor.backend + (self._elapsed() - anchor.at)

    @property
    def anchored(self) -> bool:
        return self._anchor is not None

    async def sample(self) -> ClockSample:
        """Read the backend's time now; raises :class:`BackendError` (the anchor is kept)."""
        try:
            got = await measure(self._read, wall=self._wall, elapsed=self._elapsed)
        except BackendError as exc:
            self._error = str(exc)
            raise
        self._error = None
        anchor = self._anchor
        if (
            anchor is None
            or got.round_trip_s <= max(MAX_ROUND_TRIP_S, anchor.round_trip_s)
            or got.at - anchor.at > STALE_S
        ):
            self._anchor = got
        self._latest = got
        self._watch(got)
        return got

    async def fresh(self) -> None:
        """Read the backend's time unless the anchor is younger than :data:`STALE_S`: before a
        job decides cutoffs. Raises :class:`BackendError` when it must read and cannot."""
        anchor = self._anchor
        if anchor is None or self._elapsed() - anchor.at > STALE_S:
            await self.sample()

    async def run(self) -> None:
        """Read the backend's time every :data:`RESAMPLE_S` (every :data:`RETRY_S` after a
        failure) until cancelled."""
        while True:
            await anyio.sleep(RESAMPLE_S if self._error is None and self.anchored else RETRY_S)
            try:
                await self.sample()
            except BackendError as exc:
                log.debug("clock_sample_failed", backend=self._backend, error=str(exc))

    def state(self) -> ClockState:
        latest = self._latest
        skew = None if latest is None else round(latest.skew_s, 3)
        return ClockState(
            anchored=self.anchored,
            skew_s=skew,
            max_skew_s=self._max_skew_s,
            skewed=self._skewed,
            sample_age_s=None if latest is None else round(self._elapsed() - latest.at, 1),
            round_trip_ms=None if latest is None else round(latest.round_trip_s * 1000, 3),
            error=self._error,
        )

    def _watch(self, got: ClockSample) -> None:
        """Warn of a skew beyond the limit, at most once per :data:`WARN_EVERY_S`."""
        skewed = abs(got.skew_s) > self._max_skew_s
        if skewed and (self._warned_at is None or got.at - self._warned_at >= WARN_EVERY_S):
            self._warned_at = got.at
            log.warning(
                "clock_skew",
                skew_s=round(got.skew_s, 3),
                max_clock_skew_s=self._max_skew_s,
                backend=self._backend,
                effect="expiries and cutoffs use the backend's clock; this machine's programs "
                "and the daemon's log timestamps use its own",
                fix="sync this machine's clock (timedatectl set-ntp true; on WSL2: wsl --shutdown, "
                "or hwclock -s)",
            )
        elif self._skewed and not skewed:
            log.info("clock_skew_resolved", skew_s=round(got.skew_s, 3), max_clock_skew_s=self._max_skew_s)
        self._skewed = skewed
