"""How a job step steps aside for tool calls (JobContext.pause), with the daemon's in-flight count."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

import coordinatord.jobs as jobs
from coordinatord.app import App
from coordinatord.jobs import JobContext
from coordinatord.server.in_flight import InFlight

pytestmark = pytest.mark.anyio


def context(in_flight: InFlight) -> JobContext:
    app = cast(App, SimpleNamespace())
    return JobContext(app, cast(Any, None), "heartbeat_sweep", in_flight)


@pytest.fixture(autouse=True)
def patient_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A job waits 5 ms at most; here it would wait a minute, so only the events decide.
    monkeypatch.setattr(jobs, "CALLS_FIRST_MAX_S", 60.0)


async def test_a_step_waits_for_a_call_in_flight_to_be_answered() -> None:
    """A job step pausing while a tool call is in flight waits until a call is answered (not until none is
    left), so background work steps aside for agents' calls without starving."""
    in_flight = InFlight()
    in_flight.enter()
    resumed = anyio.Event()

    async def step() -> None:
        await context(in_flight).pause()
        resumed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(step)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert not resumed.is_set()
        in_flight.enter()  # a second call arrives; the first one's answer is enough
        in_flight.leave()
        with anyio.fail_after(5):
            await resumed.wait()
    assert in_flight.count == 1


async def test_a_step_goes_on_at_once_with_no_call_or_only_parked_ones() -> None:
    """With no call in flight, or only one that has been waiting long (such as a lock_acquire), pause
    returns at once instead of waiting."""
    in_flight = InFlight()
    with anyio.fail_after(5):
        await context(in_flight).pause()
        in_flight.enter()
        in_flight.last_entered -= jobs.CALL_PARKED_S  # e.g. a lock_acquire waiting for its lock
        await context(in_flight).pause()
