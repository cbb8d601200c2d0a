"""The backend-anchored clock (coordinatord.clock) against a fake machine: a backend's true time,
a wall clock that may be off or jump, and a clock nobody sets. No server, no sleeping."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from coordinatord.clock import (
    MAX_ROUND_TRIP_S,
    STALE_S,
    WARN_EVERY_S,
    BackendClock,
    measure,
)
from coordinatord.errors import BackendError, BackendUnavailableError
from tests.support import EPOCH

pytestmark = pytest.mark.anyio

HOURS_2 = 7_200.0


class Machine:
    """True time (the backend's), this machine's wall clock (``wall_off_s`` off the true time),
    and its boot clock; a backend ``TIME`` takes ``round_trip_s``, half each way."""

    def __init__(self, wall_off_s: float = 0.0, round_trip_s: float = 0.002) -> None:
        self.true = EPOCH
        self.boot = 500.0
        self.wall_off_s = wall_off_s
        self.round_trip_s = round_trip_s
        self.down: str | None = None
        self.reads = 0

    def wall(self) -> float:
        return self.true + self.wall_off_s

    def elapsed(self) -> float:
        return self.boot

    def advance(self, seconds: float) -> None:
        self.true += seconds
        self.boot += seconds

    async def read(self) -> tuple[int, int]:
        self.reads += 1
        if self.down is not None:
            raise BackendUnavailableError(self.down, "refused")
        self.advance(self.round_trip_s / 2)
        micros = round(self.true * 1_000_000)
        self.advance(self.round_trip_s / 2)
        return micros // 1_000_000, micros % 1_000_000

    def clock(self, max_skew_s: float = 2.0) -> BackendClock:
        return BackendClock(self.read, max_skew_s, wall=self.wall, elapsed=self.elapsed)


async def test_measure_gives_the_skew_of_this_machine_against_the_backend() -> None:
    """measure: the skew is this machine's wall clock minus the backend's, at the middle of the
    round trip, whose length it reports too."""
    machine = Machine(wall_off_s=HOURS_2, round_trip_s=0.010)
    sample = await measure(machine.read, wall=machine.wall, elapsed=machine.elapsed)
    assert sample.skew_s == pytest.approx(HOURS_2, abs=1e-5)
    assert sample.round_trip_s == pytest.approx(0.010)
    assert sample.backend == pytest.approx(EPOCH + 0.005, abs=1e-5)
    assert sample.at == pytest.approx(500.005)
    behind = Machine(wall_off_s=-30.0)
    assert (await measure(behind.read, wall=behind.wall, elapsed=behind.elapsed)).skew_s == pytest.approx(-30)


async def test_the_clock_is_the_backends_time_whatever_the_wall_clock_says() -> None:
    """Anchored once, the clock is the backend's time plus the time elapsed since: a wall clock
    two hours ahead, or one that jumps a day between samples, moves nothing."""
    machine = Machine(wall_off_s=HOURS_2)
    clock = machine.clock()
    await clock.sample()
    assert clock() == pytest.approx(machine.true, abs=0.002)
    machine.advance(25.0)
    machine.wall_off_s = -86_400.0  # someone sets the clock a day back
    assert clock() == pytest.approx(machine.true, abs=0.002)
    assert machine.reads == 1  # between samples, reading the clock costs no round trip


async def test_before_the_first_sample_the_wall_clock_stands_in() -> None:
    """A daemon whose backend never answered yet has only its own clock; the state says so and
    why, and the first sample that succeeds anchors it."""
    machine = Machine(wall_off_s=HOURS_2)
    machine.down = "the backend refused the connection"
    clock = machine.clock()
    with pytest.raises(BackendError):
        await clock.sample()
    assert clock() == machine.wall()
    state = clock.state()
    assert (state.anchored, state.skew_s, state.error) == (False, None, "the backend refused the connection")
    machine.down = None
    await clock.sample()
    assert clock() == pytest.approx(machine.true, abs=0.002)
    assert clock.state().anchored and clock.state().error is None


async def test_a_backend_that_stops_answering_leaves_the_last_anchor() -> None:
    """A failed sample keeps the anchor (the clock goes on from it) and is reported in the
    state until a sample succeeds again."""
    machine = Machine()
    clock = machine.clock()
    await clock.sample()
    machine.down = "timed out"
    machine.advance(600.0)
    with pytest.raises(BackendError):
        await clock.sample()
    assert clock() == pytest.approx(machine.true, abs=0.002)
    assert clock.state().error == "timed out" and clock.state().anchored


async def test_fresh_reads_again_only_a_stale_anchor() -> None:
    """fresh (before a job runs): no round trip while the anchor is younger than STALE_S, one
    when it is older or missing; an unreadable backend then fails the job's run."""
    machine = Machine()
    clock = machine.clock()
    await clock.fresh()
    assert machine.reads == 1
    machine.advance(STALE_S - 1)
    await clock.fresh()
    assert machine.reads == 1
    machine.advance(2)
    await clock.fresh()
    assert machine.reads == 2
    machine.advance(STALE_S + 1)
    machine.down = "refused"
    with pytest.raises(BackendError):
        await clock.fresh()


async def test_a_slow_sample_does_not_replace_a_better_anchor_until_it_is_stale() -> None:
    """A reading slower than MAX_ROUND_TRIP_S (off by up to half of it) is ignored for the
    anchor while a quicker one is fresh, and taken once that one is stale."""
    machine = Machine(round_trip_s=0.002)
    clock = machine.clock()
    await clock.sample()
    machine.round_trip_s = MAX_ROUND_TRIP_S * 4
    machine.advance(10)
    before = clock()
    await clock.sample()
    assert clock() - before == pytest.approx(MAX_ROUND_TRIP_S * 4, abs=1e-6)  # the old anchor, moved on
    assert clock() == pytest.approx(machine.true, abs=0.002)
    machine.advance(STALE_S + 1)
    await clock.sample()
    # The slow anchor now: the middle of its round trip, exact here since the way is symmetric.
    assert clock() == pytest.approx(machine.true, abs=1e-3)
    assert clock.state().round_trip_ms == pytest.approx(MAX_ROUND_TRIP_S * 4000)


async def test_a_skew_is_warned_of_at_most_once_an_hour_while_it_lasts() -> None:
    """Past daemon.max_clock_skew_s: one clock_skew warning, none for an hour of samples, one
    again after it; clock_skew_resolved once the clock is back within; the state says it."""
    machine = Machine(wall_off_s=HOURS_2)
    clock = machine.clock(max_skew_s=2.0)
    with capture_logs() as logs:
        await clock.sample()
        for _ in range(100):  # 50 minutes of samples
            machine.advance(30)
            await clock.sample()
        machine.advance(WARN_EVERY_S - 100 * 30)
        await clock.sample()
        machine.wall_off_s = 0.5
        await clock.sample()
        await clock.sample()
    events = [(entry["event"], entry["log_level"]) for entry in logs]
    assert events == [
        ("clock_skew", "warning"),
        ("clock_skew", "warning"),
        ("clock_skew_resolved", "info"),
    ]
    assert logs[0]["skew_s"] == pytest.approx(HOURS_2, abs=0.01)
    assert logs[0]["max_clock_skew_s"] == 2.0
    assert "sync" in logs[0]["fix"]
    state = clock.state()
    assert not state.skewed and state.skew_s == pytest.approx(0.5, abs=0.01)


async def test_the_state_shows_the_skew_beyond_the_limit() -> None:
    """The state (what status and top show): the skew, the limit, whether it is over it, and how
    old and how slow the latest sample was."""
    machine = Machine(wall_off_s=-3.5, round_trip_s=0.004)
    clock = machine.clock(max_skew_s=2.0)
    with capture_logs():
        await clock.sample()
    machine.advance(12)
    assert clock.state().as_dict() == {
        "source": "backend",
        "anchored": True,
        "skew_s": pytest.approx(-3.5, abs=0.001),
        "max_skew_s": 2.0,
        "skewed": True,
        "sample_age_s": 12.0,
        "round_trip_ms": 4.0,
        "error": None,
    }
    within = Machine(wall_off_s=1.5)
    calm = within.clock(max_skew_s=2.0)
    with capture_logs() as logs:
        await calm.sample()
    assert not calm.state().skewed and logs == []
