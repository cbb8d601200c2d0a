"""The activity log against real servers: batching, the cap, outages, reading back, job actions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.clock import Clock
from coordinatord.jobs import JobContext
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace
from coordinatord.services.activity import APPEND_CHUNK, ActivityLog
from coordinatord.settings import ActivitySettings, BackendSettings, load_settings
from coordinatord.store import RedisStore, Store
from coordinatord.tools import build_registry
from tests.support import fresh_namespace, valkey_server

pytestmark = pytest.mark.anyio

SETTINGS = ActivitySettings()
T = TypeVar("T")
FAST = BackendSettings(timeout_s=1.0, connect_timeout_s=0.5, retries=1, retry_backoff_base_s=0.01)


class CountingStore(RedisStore):
    """The real store, counting the calls (commands, pipelines, scripts) the activity log makes."""

    round_trips = 0

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        self.round_trips += 1
        return await super()._call(operation)


class StepClock:
    """A clock that moves one second per reading, so events get distinct, known times."""

    def __init__(self, start: float = 1_771_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
async def counting_store(backend_url: str) -> AsyncIterator[CountingStore]:
    store = CountingStore.from_url(backend_url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


def record_calls(log: ActivityLog, ns: Namespace, agent: str, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        log.record(
            ns, kind="tool", name="redis_get", agent=agent, key=f"k{index}", outcome="ok", duration_ms=0.5
        )


async def flush_started(log: ActivityLog) -> None:
    """Return once a flush started in another task has taken the queue (it is then writing)."""
    with anyio.fail_after(5):
        while log.pending:
            await anyio.lowlevel.checkpoint()


async def stream(store: Store, ns: Namespace) -> list[tuple[str, dict[str, str]]]:
    return list(reversed(await store.xrevrange(ns.key(ACTIVITY_STREAM), "+", "-", 1_000_000)))


async def test_a_flush_is_one_call_per_project_and_chunk(counting_store: CountingStore) -> None:
    """Events recorded between flushes go out in one call per project stream and APPEND_CHUNK
    events, each stream in the order its events were recorded."""
    log = ActivityLog(counting_store, SETTINGS, StepClock())
    first, second = fresh_namespace(), fresh_namespace()
    record_calls(log, first, "kilocode", APPEND_CHUNK + 10)
    record_calls(log, second, "cline", 20)
    assert counting_store.round_trips == 0  # recording does no I/O
    assert await log.flush() == APPEND_CHUNK + 30
    assert counting_store.round_trips == 3
    assert log.pending == 0
    assert await log.flush() == 0  # nothing queued: no round trip at all
    assert counting_store.round_trips == 3
    keys = [fields["key"] for _, fields in await stream(counting_store, first)]
    assert keys == [f"k{index}" for index in range(APPEND_CHUNK + 10)]
    assert len(await stream(counting_store, second)) == 20


async def test_an_event_holds_what_happened_and_nothing_else(store: Store) -> None:
    """The entry has exactly the event fields: time, agent, project, kind, name, key, outcome, duration."""
    log = ActivityLog(store, SETTINGS, lambda: 1_771_000_000.25)
    ns = fresh_namespace()
    log.record(ns, kind="tool", name="redis_set", agent="kilocode", key="k", outcome="ok", duration_ms=1.5)
    await log.flush()
    ((_, fields),) = await stream(store, ns)
    assert fields == {
        "ts": "1771000000.250",
        "agent": "kilocode",
        "project": ns.project_id,
        "kind": "tool",
        "name": "redis_set",
        "key": "k",
        "outcome": "ok",
        "duration_ms": "1.500",
    }


async def test_the_stream_is_capped_and_expires(store: Store) -> None:
    """A stream keeps about activity.stream_max_len events and carries a TTL."""
    log = ActivityLog(store, ActivitySettings(stream_max_len=100, stream_ttl_s=600), StepClock())
    ns = fresh_namespace()
    record_calls(log, ns, "kilocode", 1000)
    await log.flush()
    length = await store.execute("XLEN", ns.key(ACTIVITY_STREAM))
    # MAXLEN ~ trims whole stream nodes (100 entries each by default), so a little more may stay.
    assert 100 <= length <= 200
    assert 500 < await store.ttl(ns.key(ACTIVITY_STREAM)) <= 600


async def test_recent_gives_the_newest_events_oldest_first(store: Store) -> None:
    """recent(limit) is the newest `limit` events in the order they happened."""
    log = ActivityLog(store, SETTINGS, StepClock())
    ns = fresh_namespace()
    record_calls(log, ns, "kilocode", 10)
    await log.flush()
    events = await log.recent(ns, 3)
    assert [e["key"] for e in events] == ["k7", "k8", "k9"]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert {(e["agent"], e["kind"], e["name"], e["outcome"], e["duration_ms"]) for e in events} == {
        ("kilocode", "tool", "redis_get", "ok", 0.5)
    }
    assert len(await log.recent(ns, 50)) == 10
    assert await log.recent(fresh_namespace(), 5) == []


async def test_recent_for_one_agent_reads_past_other_agents(store: Store) -> None:
    """An agent filter finds that agent's events even behind many pages of others'."""
    log = ActivityLog(store, SETTINGS, StepClock())
    ns = fresh_namespace()
    record_calls(log, ns, "cline", 3)
    record_calls(log, ns, "kilocode", 350, start=3)
    await log.flush()
    events = await log.recent(ns, 2, agent="cline")
    assert [(e["agent"], e["key"]) for e in events] == [("cline", "k1"), ("cline", "k2")]
    assert await log.recent(ns, 5, agent="nobody") == []


async def test_a_flush_waits_for_one_under_way(store: Store) -> None:
    """A reader that flushes first sees events a background flush was still writing."""
    log = ActivityLog(store, SETTINGS, StepClock())
    ns = fresh_namespace()
    record_calls(log, ns, "kilocode", 5)
    written: list[int] = []

    async def background() -> None:
        written.append(await log.flush())

    async with anyio.create_task_group() as tg:
        tg.start_soon(background)
        await flush_started(log)
        await log.flush()  # finds the queue empty, yet must wait for the one under way
        assert written == [5]
        assert len(await log.recent(ns, 50)) == 5


async def test_backend_down_keeps_events_bounded_and_writes_them_when_back() -> None:
    """While the backend is down recording goes on, the buffer keeps the newest events, and a
    later flush writes them in order; the loss is logged."""
    with valkey_server() as server:
        store = RedisStore.from_url(server.url, FAST)
        try:
            log = ActivityLog(store, SETTINGS, StepClock(), max_buffered=5)
            ns = fresh_namespace()
            server.kill()
            record_calls(log, ns, "kilocode", 3)
            assert await log.flush() == 0  # no exception: the flusher goes on
            assert log.pending == 3
            record_calls(log, ns, "kilocode", 4, start=3)
            assert log.pending == 5
            server.start()
            with capture_logs() as logs:
                assert await log.flush() == 5
            dropped = [e for e in logs if e["event"] == "activity_events_dropped"]
            assert [e["count"] for e in dropped] == [2]
            assert [fields["key"] for _, fields in await stream(store, ns)] == ["k2", "k3", "k4", "k5", "k6"]
        finally:
            await store.aclose()


async def test_events_recorded_during_a_failed_flush_stay_behind_the_failed_ones() -> None:
    """A batch that could not be written goes back before newer events, dropping the oldest."""
    with valkey_server() as server:
        store = RedisStore.from_url(server.url, FAST)
        try:
            log = ActivityLog(store, SETTINGS, StepClock(), max_buffered=4)
            ns = fresh_namespace()
            server.kill()
            record_calls(log, ns, "kilocode", 3)
            async with anyio.create_task_group() as tg:
                tg.start_soon(log.flush)
                await flush_started(log)  # it took the queue and is waiting on the dead backend
                record_calls(log, ns, "kilocode", 2, start=3)
            assert log.pending == 4
            server.start()
            assert await log.flush() == 4
            assert [fields["key"] for _, fields in await stream(store, ns)] == ["k1", "k2", "k3", "k4"]
        finally:
            await store.aclose()


async def test_a_refused_batch_is_dropped_not_retried_forever(store: Store) -> None:
    """If the backend refuses a write (the stream key holds a string), those events are logged
    and dropped: neither retried endlessly nor written twice for the other projects."""
    log = ActivityLog(store, SETTINGS, StepClock())
    broken, fine = fresh_namespace(), fresh_namespace()
    await store.set(broken.key(ACTIVITY_STREAM), "not a stream", 60)
    record_calls(log, broken, "kilocode", 1)
    record_calls(log, fine, "kilocode", 2)
    with capture_logs() as logs:
        assert await log.flush() == 2
    assert [(e["event"], e["count"]) for e in logs] == [("activity_events_refused", 1)]
    assert log.pending == 0
    assert await log.flush() == 0
    assert len(await stream(store, fine)) == 2


async def test_the_flusher_writes_by_itself_and_once_more_when_stopped(store: Store) -> None:
    """run() flushes every flush_interval_s, and cancelling it still writes what is queued."""
    log = ActivityLog(store, ActivitySettings(flush_interval_s=60), StepClock())
    ns = fresh_namespace()
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run)
        record_calls(log, ns, "kilocode", 2)
        tg.cancel_scope.cancel()
    assert len(await stream(store, ns)) == 2


async def test_a_job_action_is_one_activity_event(store: Store, tmp_path: Path) -> None:
    """JobContext.action logs the action and records a job event naming the job and the action."""
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({}, config_file=str(empty), environ={})
    clock: Clock = StepClock()
    app = App(settings, store, clock, registry=build_registry())
    ns = fresh_namespace()
    ctx = JobContext(app, app.projects, "heartbeat_sweep")
    with capture_logs() as logs:
        ctx.action(ns, "agent_inactive", key="agent:status:bob", agent="bob")
    assert [(e["event"], e["job"], e["agent"]) for e in logs] == [
        ("agent_inactive", "heartbeat_sweep", "bob")
    ]
    await app.activity.flush()
    (event,) = await app.activity.recent(ns, 10)
    assert {k: event[k] for k in ("agent", "project", "kind", "name", "key", "outcome", "duration_ms")} == {
        "agent": "bob",
        "project": ns.project_id,
        "kind": "job",
        "name": "heartbeat_sweep",
        "key": "agent:status:bob",
        "outcome": "agent_inactive",
        "duration_ms": None,
    }
