"""Presence across daemons against real servers: the connection records, their renewal and
expiry, and the sweep's rule (an agent is present while any daemon holds a live record)."""

from __future__ import annotations

import json

import anyio
import pytest

from coordinatord.keyspace import PRESENCE_INDEX, Namespace, presence_records_key
from coordinatord.presence import Presence
from coordinatord.services.agents import AgentService
from coordinatord.services.presence import PresenceLeases
from coordinatord.settings import AgentSettings, PresenceSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio
# The polls below (noqa: ASYNC110) wait for another party (the server's clock and expiry, the
# lease writer's task), which no event of this test can signal; each is bounded.

WINDOW_S = 300
FORGET_S = 3_600


class FakeDaemon:
    """What one daemon contributes to presence: its connections and their lease writer."""

    def __init__(
        self, store: Store, name: str, host: str, ttl_s: float = 30.0, renew_s: float = 10.0
    ) -> None:
        self.presence = Presence()
        self.host = host
        self.daemon_id = f"{host}:{name}"
        settings = PresenceSettings(ttl_s=ttl_s, renew_s=renew_s)
        self.leases = PresenceLeases(store, self.presence, settings, self.daemon_id, host)


async def server_ms(store: Store) -> int:
    seconds, micros = await store.time()
    return seconds * 1000 + micros // 1000


async def records(store: Store, ns: Namespace, agent: str) -> list[tuple[dict[str, object], float]]:
    found = await store.zrange_with_scores(ns.key(presence_records_key(agent)), 0, -1)
    return [(json.loads(member), score) for member, score in found]


def make_agents(store: Store, clock: FakeClock, presence: Presence) -> AgentService:
    settings = AgentSettings(heartbeat_window_s=WINDOW_S, forget_after_s=FORGET_S)
    return AgentService(store, settings, presence, clock, host="sweeper-host")


async def sweep_all(agents: AgentService, ns: Namespace, step: str) -> list[str]:
    moved: list[str] = []
    offset: int | None = 0
    while offset is not None:
        batch = await (agents.sweep_inactive if step == "inactive" else agents.sweep_gone)(ns, offset, 2)
        moved += batch.agents
        offset = batch.next_offset
    return moved


async def test_a_connection_record_names_its_daemon_host_and_pid(store: Store) -> None:
    """Entering writes one record (daemon id, connection, host, pid) expiring a TTL from the
    server's now, and the agent's index entry; leaving removes both."""
    daemon, ns = FakeDaemon(store, "a", "host-a"), fresh_namespace()
    daemon.presence.enter(ns.project_id, "kilo", conn=7, pid=4242)
    before = await server_ms(store)
    assert await daemon.leases.write_changes()
    after = await server_ms(store)
    [(record, expiry)] = await records(store, ns, "kilo")
    assert record == {"daemon": "host-a:a", "conn": "c7", "host": "host-a", "pid": 4242}
    assert before + 30_000 <= expiry <= after + 30_000
    assert await store.zscore(ns.key(PRESENCE_INDEX), "kilo") == expiry
    assert 0 < await store.pttl(ns.key(presence_records_key("kilo"))) <= 30_000

    daemon.presence.leave(ns.project_id, "kilo", conn=7)
    assert await daemon.leases.write_changes()
    assert await records(store, ns, "kilo") == []
    assert await store.zscore(ns.key(PRESENCE_INDEX), "kilo") is None


async def test_a_renewal_moves_every_record_on_in_one_write(store: Store) -> None:
    """write_changes(renew=True) re-scores every open connection of the daemon, in every project;
    the agent's index entry follows its latest record."""
    daemon = FakeDaemon(store, "a", "host-a")
    one, two = fresh_namespace(), fresh_namespace()
    daemon.presence.enter(one.project_id, "kilo", conn=1)
    daemon.presence.enter(two.project_id, "cline", conn=2)
    await daemon.leases.write_changes()
    [(_, first)] = await records(store, one, "kilo")
    [(_, other_first)] = await records(store, two, "cline")
    await until_server_passes(store, int(max(first, other_first)) - 30_000)
    assert await daemon.leases.write_changes(renew=True)
    [(_, renewed)] = await records(store, one, "kilo")
    [(_, other)] = await records(store, two, "cline")
    # Both moved on. Not "other >= renewed": the projects' scripts run concurrently (on Upstash,
    # two HTTP requests), each on the server's time when it runs, in either order.
    assert renewed > first and other > other_first
    assert await store.zscore(one.key(PRESENCE_INDEX), "kilo") == renewed
    assert daemon.leases.renewals == 1


async def test_two_daemons_hold_records_for_one_agent_until_both_close(store: Store) -> None:
    """One agent connected through two daemons has two records; closing one leaves the agent
    present by the other, and its index entry at the other's expiry."""
    a, b, ns = (
        FakeDaemon(store, "a", "host-a"),
        FakeDaemon(store, "b", "host-b", ttl_s=60, renew_s=5),
        fresh_namespace(),
    )
    a.presence.enter(ns.project_id, "kilo", conn=1)
    b.presence.enter(ns.project_id, "kilo", conn=1)
    await a.leases.write_changes()
    await b.leases.write_changes()
    assert sorted(str(r["host"]) for r, _ in await records(store, ns, "kilo")) == ["host-a", "host-b"]
    a.presence.leave(ns.project_id, "kilo", conn=1)
    await a.leases.write_changes()
    [(record, expiry)] = await records(store, ns, "kilo")
    assert record["host"] == "host-b"
    assert await store.zscore(ns.key(PRESENCE_INDEX), "kilo") == expiry


async def test_a_dead_daemons_records_expire_by_themselves(store: Store) -> None:
    """Records nobody renews end with their TTL: the keys expire, and the sweep, which judged the
    agent present while they lived, then moves it on."""
    dead, ns = FakeDaemon(store, "dead", "host-c", ttl_s=1.0, renew_s=0.5), fresh_namespace()
    clock = FakeClock()
    agents = make_agents(store, clock, Presence())
    await agents.register(ns, "orphan")
    dead.presence.enter(ns.project_id, "orphan", conn=3)
    await dead.leases.write_changes()
    clock.now += FORGET_S + 1
    assert await sweep_all(agents, ns, "inactive") == []
    # The daemon is gone: nothing renews. Wait (bounded) for the server to expire the records.
    with anyio.fail_after(10):
        while await store.exists([ns.key(presence_records_key("orphan")), ns.key(PRESENCE_INDEX)]):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    # Then the sweep moves it on: asked until it has (bounded; once was not always enough on a
    # loaded machine's Redis, where expiry is lazy and a step can come before it).
    moved: list[str] = []
    with anyio.fail_after(10):
        while not moved:
            moved = await sweep_all(agents, ns, "inactive")
    assert moved == ["orphan"]
    assert await sweep_all(agents, ns, "gone") == ["orphan"]


async def test_the_sweep_keeps_agents_present_on_another_daemon(store: Store) -> None:
    """The sweeping daemon has no connection of its own, yet an agent with a live record of
    another daemon is neither made inactive nor gone; its neighbours without one are. Paging
    (two per script) skips the kept ones."""
    elsewhere, ns = FakeDaemon(store, "c", "host-c"), fresh_namespace()
    clock = FakeClock()
    agents = make_agents(store, clock, Presence())
    for name in ("a1", "kept", "a2", "a3", "kept2"):
        await agents.register(ns, name)
    elsewhere.presence.enter(ns.project_id, "kept", conn=1)
    elsewhere.presence.enter(ns.project_id, "kept2", conn=2)
    await elsewhere.leases.write_changes()
    clock.now += WINDOW_S + 1
    assert sorted(await sweep_all(agents, ns, "inactive")) == ["a1", "a2", "a3"]
    clock.now += FORGET_S
    assert sorted(await sweep_all(agents, ns, "gone")) == ["a1", "a2", "a3"]
    listed = {info.agent: info for info in (await agents.list_agents(ns)).agents}
    assert (listed["kept"].status, listed["kept"].connected, listed["kept"].hosts) == (
        "active",
        True,
        ["host-c"],
    )
    # The records go, the agents follow: inactive first (they were kept active), then gone.
    elsewhere.presence.leave(ns.project_id, "kept", conn=1)
    elsewhere.presence.leave(ns.project_id, "kept2", conn=2)
    await elsewhere.leases.write_changes()
    assert sorted(await sweep_all(agents, ns, "inactive")) == ["kept", "kept2"]
    assert sorted(await sweep_all(agents, ns, "gone")) == ["kept", "kept2"]


async def test_an_inactive_agent_that_connects_elsewhere_is_not_gone(store: Store) -> None:
    """The gone step checks presence inside its script too: an inactive agent that has a live
    record by the time the step runs stays inactive."""
    elsewhere, ns = FakeDaemon(store, "c", "host-c"), fresh_namespace()
    clock = FakeClock()
    agents = make_agents(store, clock, Presence())
    await agents.register(ns, "late")
    clock.now += WINDOW_S + 1
    assert await sweep_all(agents, ns, "inactive") == ["late"]
    elsewhere.presence.enter(ns.project_id, "late", conn=9)
    await elsewhere.leases.write_changes()
    clock.now += FORGET_S
    assert await sweep_all(agents, ns, "gone") == []


async def test_the_sweeping_daemons_unwritten_connections_count(store: Store) -> None:
    """A connection of the sweeping daemon whose record is not written yet still keeps its
    agent; once written (confirmed) it counts through its record like any other."""
    clock, presence, ns = FakeClock(), Presence(), fresh_namespace()
    agents = make_agents(store, clock, presence)
    await agents.register(ns, "fresh")
    presence.enter(ns.project_id, "fresh", conn=1)
    assert presence.unconfirmed(ns.project_id) == {"fresh"}
    clock.now += WINDOW_S + 1
    assert await sweep_all(agents, ns, "inactive") == []
    leases = PresenceLeases(store, presence, PresenceSettings(), "me:1", "here")
    await leases.write_changes()
    assert presence.unconfirmed(ns.project_id) == set()
    assert await sweep_all(agents, ns, "inactive") == []


async def test_the_lease_writer_renews_on_its_period_and_cleans_up_on_stop(store: Store) -> None:
    """run() writes a new connection at once, renews on its period (well within the TTL), and
    removes the daemon's records when cancelled."""
    daemon, ns = FakeDaemon(store, "a", "host-a", ttl_s=2.0, renew_s=0.2), fresh_namespace()
    async with anyio.create_task_group() as group:
        group.start_soon(daemon.leases.run)
        daemon.presence.enter(ns.project_id, "kilo", conn=1)
        with anyio.fail_after(10):
            while not await records(store, ns, "kilo"):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        [(_, first)] = await records(store, ns, "kilo")
        with anyio.fail_after(10):
            while daemon.leases.renewals < 3:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        [(_, later)] = await records(store, ns, "kilo")
        assert later > first
        group.cancel_scope.cancel()
    assert await records(store, ns, "kilo") == []
    assert await store.zscore(ns.key(PRESENCE_INDEX), "kilo") is None


async def until_server_passes(store: Store, moment_ms: int) -> None:
    """Until the server's clock is past ``moment_ms`` (a few ms at most)."""
    with anyio.fail_after(5):
        while await server_ms(store) <= moment_ms + 1:  # noqa: ASYNC110
            await anyio.sleep(0.002)
