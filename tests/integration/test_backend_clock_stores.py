"""The backend-anchored clock over every backend (one server, real Redis, Upstash REST, a Cluster,
a Sentinel set-up's master): anchored on the server's TIME, it agrees with the server's clock
within the reading's own round trip, and measures a wall clock that is off."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from coordinatord.clock import BackendClock, elapsed
from coordinatord.store import Store

pytestmark = pytest.mark.anyio

RESOLUTION_S = 0.002
"""TIME's microseconds and float sums: what may separate two readings of one instant."""


async def server_time(store: Store) -> tuple[float, float]:
    """The server's time, and how long reading it took."""
    before = elapsed()
    seconds, micros = await store.time()
    return seconds + micros / 1_000_000, elapsed() - before


async def test_the_clock_follows_the_servers_time(store: Store) -> None:
    """Once anchored, the clock read just before and just after a TIME of the server brackets it,
    up to half the anchor's round trip (the reading's own uncertainty), on every backend."""
    clock = BackendClock(store.time, 2.0, backend=store.name)
    anchor = await clock.sample()
    for _ in range(3):
        before = clock()
        server, _ = await server_time(store)
        after = clock()
        margin = anchor.round_trip_s / 2 + RESOLUTION_S
        assert before - margin <= server <= after + margin, (before, server, after, anchor)
    state = clock.state()
    assert state.anchored and state.error is None and state.round_trip_ms is not None


async def test_a_wall_clock_hours_off_is_measured_against_the_server(store: Store) -> None:
    """A wall clock two hours ahead of the server is reported as such (skewed, ~7 200 s, warned),
    while the clock itself stays on the server's time."""
    clock = BackendClock(store.time, 2.0, backend=store.name, wall=lambda: time.time() + 7_200)
    with capture_logs() as logs:
        anchor = await clock.sample()
    assert clock.state().skewed and anchor.skew_s == pytest.approx(7_200, abs=5)
    assert [entry["event"] for entry in logs] == ["clock_skew"]
    server, _ = await server_time(store)
    assert abs(clock() - server) < 5  # the server's time, not the wall clock's
