"""A master dies under load, on a Redis Cluster and on a Sentinel set-up: four clients keep
taking and releasing one lock and appending to their sessions through the services.

What must hold: nothing hangs; calls fail only while no master serves (from the kill until the
replica is promoted, plus one call's bound), each failure a BackendUnavailableError that says
what is going on; no two holders ever hold the lock at once and fencing tokens keep rising; the
clients recover by themselves. Replication is asynchronous, so an append acknowledged just before
the kill may be lost: the test counts those and bounds the count rather than asserting zero.

Each test starts its own cluster or Sentinel set-up (never the session's shared ones) and tears
it down afterwards: nothing is restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest
from pydantic import SecretStr

from coordinatord.errors import BackendError, BackendUnavailableError
from coordinatord.keyspace import Namespace, session_history_key
from coordinatord.services.locks import LockService
from coordinatord.services.sessions import SessionService
from coordinatord.settings import BackendSettings, LockSettings, SessionSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.cluster import ClusterStore
from tests.support import FakeClock, fresh_namespace
from tests.support_cluster import (
    SENTINEL_MASTER,
    valkey_cluster,
    valkey_sentinel,
)

pytestmark = pytest.mark.anyio

CLIENTS = 4
RESOURCE = "deploy"
MAX_LOST_APPENDS = 25
"""Appends acknowledged by the old master and never replicated: those of the last moments before
the kill. At this load a handful at most; many more would mean writes lost after the kill too."""
# How long a call may take at most (backend.timeout_s), and how long after the promotion a call
# that started before it may still fail.
CALL_BOUND_S = 2.0
FAILOVER_BOUND_S = 30.0


@dataclass
class Load:
    """What the clients saw: acknowledged appends, acquisitions in order, errors with times."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    acked: dict[str, list[str]] = field(default_factory=dict)
    fencings: list[int] = field(default_factory=list)
    errors: list[tuple[float, BackendError]] = field(default_factory=list)
    successes_since: dict[str, int] = field(default_factory=dict)
    holder: list[str | None] = field(default_factory=lambda: [None])
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    reentries: int = 0


async def client(name: str, store: Store, load: Load, ns_id: str) -> None:
    """One agent: take the lock (no wait), hold it across a checkpoint, release it, append a turn."""
    ns = Namespace(ns_id)
    locks = LockService(store, LockSettings())
    sessions = SessionService(store, SessionSettings(), FakeClock())
    load.acked[name] = []
    count = 0
    while not load.stop.is_set():
        count += 1
        try:
            got = await locks.acquire(ns, name, RESOURCE, ttl_s=5)
            if got.acquired:
                assert got.token is not None and got.fencing is not None
                if load.holder[0] is not None and load.holder[0] != name:
                    load.overlaps.append((load.holder[0], name))
                load.holder[0] = name
                if not got.reentered:
                    # Re-entry: an acquire whose reply a failover lost did take the lock; this
                    # agent holds it still, under the same fencing number (not a second holder).
                    load.fencings.append(got.fencing)
                else:
                    load.reentries += 1
                await anyio.sleep(0.002)  # the others run while this one holds the lock
                if load.holder[0] == name:
                    load.holder[0] = None
                await locks.release(ns, RESOURCE, got.token)
            message = f"{name}-{count}"
            await sessions.append(ns, f"s-{name}", "user", message, agent=name)
            load.acked[name].append(message)
            load.successes_since[name] = load.successes_since.get(name, 0) + 1
        except BackendError as exc:
            load.holder[0] = None if load.holder[0] == name else load.holder[0]
            load.errors.append((time.monotonic(), exc))
            await anyio.sleep(0.05)  # a failing backend is not asked again at once


async def run_failover(
    stores: list[Store], kill: Callable[[], None], recovered: Callable[[], None], ns_id: str
) -> tuple[Load, float, float]:
    """Load, kill the master, wait for the promotion, load on until every client succeeded again."""
    load = Load()
    with anyio.fail_after(FAILOVER_BOUND_S + 30):  # no hang: the whole run is bounded
        async with anyio.create_task_group() as tg:
            for index, store in enumerate(stores):
                tg.start_soon(client, f"agent-{index}", store, load, ns_id)
            await _until(lambda: sum(load.successes_since.values()) >= 100)
            killed_at = time.monotonic()
            await anyio.to_thread.run_sync(kill)
            await anyio.to_thread.run_sync(recovered)
            promoted_at = time.monotonic()
            load.successes_since.clear()
            await _until(
                lambda: len(load.successes_since) == CLIENTS and min(load.successes_since.values()) >= 20
            )
            load.stop.set()
    return load, killed_at, promoted_at


async def _until(condition: Callable[[], bool]) -> None:
    # The clients' progress is in this process: polled, bounded by run_failover's fail_after.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def lost_appends(load: Load, store: Store, ns_id: str) -> int:
    """Acknowledged appends the session histories do not hold after the failover."""
    ns = Namespace(ns_id)
    lost = 0
    for name, acked in load.acked.items():
        history = await store.execute("LRANGE", ns.key(session_history_key(f"s-{name}")), 0, -1)
        present = {str(turn) for turn in history}
        lost += sum(1 for message in acked if not any(f'"{message}"' in turn for turn in present))
    return lost


def check(load: Load, killed_at: float, promoted_at: float, lost: int, what: str) -> None:
    """The figures, printed (``pytest -s`` shows them), then what must hold."""
    window = promoted_at - killed_at
    errors = [exc for _, exc in load.errors]
    acked = sum(len(a) for a in load.acked.values())
    kinds = sorted({e.kind for e in errors})
    print(
        f"\n{what}: failover window {window:.2f} s, {len(errors)} failed calls ({kinds}), "
        f"{acked} appends acknowledged, {lost} lost, {len(load.fencings)} lock acquisitions "
        f"({load.reentries} re-entered after a lost reply)"
    )
    assert load.overlaps == []
    assert all(a < b for a, b in zip(load.fencings, load.fencings[1:], strict=False))
    for at, exc in load.errors:
        assert isinstance(exc, BackendUnavailableError), exc
        assert killed_at - 0.1 <= at <= promoted_at + CALL_BOUND_S + 1.0, (at - killed_at, exc)
        assert exc.kind in ("failover", "timeout"), exc
        text = str(exc)
        assert "failing over" in text or "failover" in text or "did not answer" in text, text
    assert window < FAILOVER_BOUND_S
    assert lost <= MAX_LOST_APPENDS


async def test_a_cluster_master_dies_under_load() -> None:
    """Killing the master of the clients' slot: errors only until its replica is promoted, all of
    them failover errors; exclusion and rising fencing hold; few acknowledged appends lost."""
    with valkey_cluster(node_timeout_ms=1_000) as cluster:
        ns = fresh_namespace()
        settings = BackendSettings(mode="cluster", url=SecretStr(cluster.url), timeout_s=CALL_BOUND_S)
        stores: list[Store] = [ClusterStore.from_url(cluster.url, settings) for _ in range(CLIENTS)]
        victim = cluster.master_of(ns.key("x"))
        assert cluster.has_replica(victim)

        def recovered() -> None:
            cluster.wait_promoted(victim, ns.key("x"), timeout=FAILOVER_BOUND_S)

        try:
            load, killed_at, promoted_at = await run_failover(stores, victim.kill, recovered, ns.project_id)
            lost = await lost_appends(load, stores[0], ns.project_id)
        finally:
            for store in stores:
                await store.aclose()
        check(load, killed_at, promoted_at, lost, "cluster")


async def test_the_sentinel_master_dies_under_load() -> None:
    """Killing the master the sentinels name: errors only until they promote the replica, all of
    them failover errors; exclusion and rising fencing hold; few acknowledged appends lost."""
    with valkey_sentinel(down_after_ms=1_000, failover_timeout_ms=3_000) as setup:
        ns = fresh_namespace()
        settings = BackendSettings(
            mode="sentinel",
            sentinels=tuple(setup.sentinel_addresses),
            sentinel_master=SENTINEL_MASTER,
            timeout_s=CALL_BOUND_S,
        )
        stores: list[Store] = [RedisStore.from_sentinels(settings) for _ in range(CLIENTS)]
        assert setup.master is not None
        victim = setup.master
        old_port = victim.port

        def recovered() -> None:
            deadline = time.monotonic() + FAILOVER_BOUND_S
            while setup.master_port() == old_port:
                assert time.monotonic() < deadline, "the sentinels promoted no replica"
                time.sleep(0.05)

        try:
            load, killed_at, promoted_at = await run_failover(stores, victim.kill, recovered, ns.project_id)
            lost = await lost_appends(load, stores[0], ns.project_id)
        finally:
            for store in stores:
                await store.aclose()
        check(load, killed_at, promoted_at, lost, "sentinel")
