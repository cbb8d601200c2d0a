"""The heartbeat sweep and the lock reaper against real servers, with a clock the test moves."""

from __future__ import annotations

import json
from pathlib import Path

import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.jobs import JobContext, reaper, sweep
from coordinatord.keyspace import (
    AGENTS_ACTIVE,
    AGENTS_GONE,
    AGENTS_INACTIVE,
    AGENTS_INDEX,
    LOCKS_INDEX,
    Namespace,
    agent_locks_key,
    agent_status_key,
    lock_key,
)
from coordinatord.presence import Presence
from coordinatord.services.agents import AgentService
from coordinatord.services.locks import LockCleanup, LockService
from coordinatord.services.projects import KnownProject, ProjectRegistry
from coordinatord.settings import AgentSettings, LockSettings, load_settings
from coordinatord.store import Batch, Store
from coordinatord.tools import build_registry
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio

T0 = 1_770_955_200.0
WINDOW_S = 300
FORGET_S = 3_600


def make_agents(store: Store, clock: FakeClock, presence: Presence | None = None) -> AgentService:
    settings = AgentSettings(heartbeat_window_s=WINDOW_S, forget_after_s=FORGET_S)
    return AgentService(store, settings, presence or Presence(), clock)


async def sweep_inactive(agents: AgentService, ns: Namespace, limit: int = 1_000) -> list[str]:
    moved: list[str] = []
    offset: int | None = 0
    while offset is not None:
        step = await agents.sweep_inactive(ns, offset, limit)
        moved += step.agents
        offset = step.next_offset
    return moved


async def sweep_gone(agents: AgentService, ns: Namespace, limit: int = 1_000) -> list[str]:
    gone: list[str] = []
    offset: int | None = 0
    while offset is not None:
        step = await agents.sweep_gone(ns, offset, limit)
        gone += step.agents
        offset = step.next_offset
    return gone


async def cleanup(locks: LockService, ns: Namespace, mode: str, limit: int = 1_000) -> list[LockCleanup]:
    """One walk of the locks as the sweep ("gone") or the reaper ("all") makes it."""
    gone = await locks.gone_holders(ns)
    actions: list[LockCleanup] = []
    if mode == "gone":
        actions.extend(await locks.release_locks_of_gone(ns, gone))
    else:
        offset: int | None = 0
        while offset is not None:
            step = await locks.reap(ns, offset, limit, gone)
            actions.extend(step.actions)
            offset = step.next_offset
    await locks.forget_gone(ns, gone)
    return actions


async def members(store: Store, ns: Namespace, index: str) -> set[str]:
    return set(await store.execute("ZRANGE", ns.key(index), 0, -1))


async def server_ms(store: Store) -> int:
    seconds, micros = await store.time()
    return seconds * 1000 + micros // 1000


async def until_server_passes(store: Store, ms: int) -> None:
    """Wait for the server's clock to leave millisecond ``ms`` (gone marks compare at ms)."""
    with anyio.fail_after(2):
        while await server_ms(store) <= ms:
            await anyio.lowlevel.checkpoint()


async def lock_doc(store: Store, ns: Namespace, resource: str) -> dict[str, object] | None:
    raw = await store.get(ns.key(lock_key(resource)))
    return None if raw is None else dict(json.loads(raw))


async def test_agents_past_the_window_become_inactive_once(store: Store) -> None:
    """Only agents whose heartbeat is outside the window move to the inactive index, and only once."""
    clock = FakeClock()
    agents, ns = make_agents(store, clock), fresh_namespace()
    await agents.register(ns, "old-a")
    await agents.register(ns, "old-b")
    clock.now += 250
    await agents.heartbeat(ns, "recent")
    clock.now += 100  # old-* are 350 s quiet, recent 100 s

    assert sorted(await sweep_inactive(agents, ns)) == ["old-a", "old-b"]
    assert await sweep_inactive(agents, ns) == []
    assert await members(store, ns, AGENTS_ACTIVE) == {"recent"}
    assert await members(store, ns, AGENTS_INACTIVE) == {"old-a", "old-b"}
    assert [a.agent for a in (await agents.list_agents(ns)).agents] == ["recent"]
    assert 0 < await store.ttl(ns.key(AGENTS_INACTIVE)) <= FORGET_S + 86_400


async def test_a_connected_agent_is_never_made_inactive_or_gone(store: Store) -> None:
    """An open connection keeps an agent active however old its heartbeat; once it closes, the sweep acts."""
    clock, presence = FakeClock(), Presence()
    agents, ns = make_agents(store, clock, presence), fresh_namespace()
    await agents.register(ns, "editor")
    await agents.register(ns, "quiet")
    presence.enter(ns.project_id, "editor")
    clock.now += FORGET_S + 60

    assert await sweep_inactive(agents, ns) == ["quiet"]
    assert await sweep_gone(agents, ns) == ["quiet"]
    assert await members(store, ns, AGENTS_ACTIVE) == {"editor"}
    assert await store.get(ns.key(agent_status_key("editor"))) is not None

    presence.leave(ns.project_id, "editor")
    assert await sweep_inactive(agents, ns) == ["editor"]
    assert await sweep_gone(agents, ns) == ["editor"]


async def test_a_heartbeat_takes_an_agent_back_from_inactive(store: Store) -> None:
    """A write after the agent went inactive puts it back in the active index, so it is never made gone."""
    clock = FakeClock()
    agents, ns = make_agents(store, clock), fresh_namespace()
    await agents.register(ns, "napper")
    clock.now += WINDOW_S + 1
    assert await sweep_inactive(agents, ns) == ["napper"]
    await agents.heartbeat(ns, "napper")
    assert await members(store, ns, AGENTS_INACTIVE) == set()
    assert await members(store, ns, AGENTS_ACTIVE) == {"napper"}
    clock.now += FORGET_S + 1
    assert await sweep_gone(agents, ns) == []  # not inactive: the gone step does not see it
    assert await sweep_inactive(agents, ns) == ["napper"]
    assert await sweep_gone(agents, ns) == ["napper"]


async def test_a_gone_agent_loses_its_status_and_only_its_own_locks(store: Store) -> None:
    """Gone: status and index entries removed, its locks released; others' and unregistered holders' kept."""
    clock = FakeClock()
    agents, locks, ns = make_agents(store, clock), LockService(store, LockSettings()), fresh_namespace()
    await agents.register(ns, "ghost", ["python"], "code")
    await agents.register(ns, "alive")
    held = [await locks.acquire(ns, "ghost", r, ttl_s=600) for r in ("src/a.py", "src/b.py")]
    await locks.acquire(ns, "alive", "src/c.py", ttl_s=600)
    await locks.acquire(ns, "never-registered", "src/d.py", ttl_s=600)
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await agents.heartbeat(ns, "alive")  # its write also prunes ghost from the agents index

    assert await sweep_inactive(agents, ns) == ["ghost"]
    assert await sweep_gone(agents, ns) == ["ghost"]
    assert await store.get(ns.key(agent_status_key("ghost"))) is None
    assert "ghost" not in await members(store, ns, AGENTS_INDEX)
    assert "ghost" in await members(store, ns, AGENTS_GONE)

    released = await cleanup(locks, ns, "gone")
    assert sorted((c.resource, c.action, c.holder) for c in released) == [
        ("src/a.py", "released", "ghost"),
        ("src/b.py", "released", "ghost"),
    ]
    assert [lock.resource for lock in (await locks.list(ns)).locks] == ["src/c.py", "src/d.py"]
    assert all(h.token is not None for h in held)
    assert await locks.gone_holders(ns) == frozenset()  # walked: nothing left for the reaper
    assert await cleanup(locks, ns, "gone") == []


async def test_a_lock_taken_after_the_holder_went_gone_is_never_released(store: Store) -> None:
    """Compare-and-delete: a lock taken by another agent, or by the gone agent after its mark, is kept."""
    clock = FakeClock()
    agents, locks, ns = make_agents(store, clock), LockService(store, LockSettings()), fresh_namespace()
    await agents.register(ns, "ghost")
    first = await locks.acquire(ns, "ghost", "shared.txt", ttl_s=600)
    assert first.token is not None
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await sweep_inactive(agents, ns)
    assert await sweep_gone(agents, ns) == ["ghost"]

    # Between the mark and the lock walk: the old lock changes hands, and ghost takes a new one.
    assert (await locks.release(ns, "shared.txt", first.token)).released
    assert (await locks.acquire(ns, "heir", "shared.txt", ttl_s=600)).acquired
    assert (await locks.acquire(ns, "ghost", "fresh.txt", ttl_s=600)).acquired

    assert await cleanup(locks, ns, "gone") == []
    assert await cleanup(locks, ns, "all") == []
    holders = {lock.resource: lock.held_by for lock in (await locks.list(ns)).locks}
    assert holders == {"fresh.txt": "ghost", "shared.txt": "heir"}


async def test_the_sweep_finds_a_gone_agents_locks_through_its_held_set(store: Store) -> None:
    """The sweep reads only the gone agent's set of held resources, not every lock: it releases
    what the set names and the agent holds, drops members that name someone else's lock, and
    leaves a lock missing from the set to its lease."""
    clock = FakeClock()
    agents, locks, ns = make_agents(store, clock), LockService(store, LockSettings()), fresh_namespace()
    await agents.register(ns, "ghost")
    await locks.acquire(ns, "ghost", "in-set", ttl_s=600)
    await locks.acquire(ns, "ghost", "not-in-set", ttl_s=600)
    await store.execute("SREM", ns.key(agent_locks_key("ghost")), "not-in-set")
    await locks.acquire(ns, "heir", "someone-elses", ttl_s=600)
    await store.execute("SADD", ns.key(agent_locks_key("ghost")), "someone-elses")
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await sweep_inactive(agents, ns)
    assert await sweep_gone(agents, ns) == ["ghost"]

    released = await cleanup(locks, ns, "gone")
    assert [(c.resource, c.holder) for c in released] == [("in-set", "ghost")]
    holders = {lock.resource: lock.held_by for lock in (await locks.list(ns)).locks}
    assert holders == {"not-in-set": "ghost", "someone-elses": "heir"}
    assert await store.exists([ns.key(agent_locks_key("ghost"))]) == 0


async def test_reaper_drops_entries_without_a_lock_and_fixes_stale_scores(store: Store) -> None:
    """Index entries whose lock is gone are reaped; an entry behind its live lock is re-scored."""
    locks, ns = LockService(store, LockSettings()), fresh_namespace()
    deleted = await locks.acquire(ns, "a", "deleted-by-hand", ttl_s=600)
    assert deleted.acquired
    await store.delete([ns.key(lock_key("deleted-by-hand"))])
    await locks.acquire(ns, "b", "live", ttl_s=600)
    await locks.acquire(ns, "c", "untouched", ttl_s=600)
    # After the acquisitions: each drops entries long past their lease from the index.
    now = await server_ms(store)
    await store.execute("ZADD", ns.key(LOCKS_INDEX), now - 5_000, "lease-ended")
    await store.execute("ZADD", ns.key(LOCKS_INDEX), now - 5_000, "live")

    actions = await cleanup(locks, ns, "all")
    assert sorted((c.resource, c.action) for c in actions) == [
        ("deleted-by-hand", "missing"),
        ("lease-ended", "missing"),
        ("live", "reindexed"),
    ]
    assert await members(store, ns, LOCKS_INDEX) == {"live", "untouched"}
    score = float(await store.execute("ZSCORE", ns.key(LOCKS_INDEX), "live"))
    assert score > now + 500_000  # the real lease end, about ten minutes on
    assert sorted(lock.resource for lock in (await locks.list(ns)).locks) == ["live", "untouched"]
    assert await cleanup(locks, ns, "all") == []
    # Every lock alive, one entry behind: found without reading any lock document.
    await store.execute("ZADD", ns.key(LOCKS_INDEX), await server_ms(store) - 5_000, "untouched")
    assert [(c.resource, c.action) for c in await cleanup(locks, ns, "all")] == [("untouched", "reindexed")]


async def test_reaper_releases_what_a_cut_short_sweep_left_and_spares_unregistered_holders(
    store: Store,
) -> None:
    """A gone holder's leftover lock is reaped; a holder that never registered keeps its lock."""
    clock = FakeClock()
    agents, locks, ns = make_agents(store, clock), LockService(store, LockSettings()), fresh_namespace()
    await agents.register(ns, "ghost")
    await locks.acquire(ns, "ghost", "left-behind", ttl_s=600)
    await locks.acquire(ns, "script", "cron.lock", ttl_s=600)  # "script" never registered
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await sweep_inactive(agents, ns)
    assert await sweep_gone(agents, ns) == ["ghost"]  # ... and the sweep stopped here

    actions = await cleanup(locks, ns, "all")
    assert [(c.resource, c.action, c.holder) for c in actions] == [("left-behind", "released", "ghost")]
    assert await lock_doc(store, ns, "left-behind") is None
    assert (await lock_doc(store, ns, "cron.lock") or {}).get("agent") == "script"


async def test_steps_page_through_every_candidate(store: Store) -> None:
    """With small steps, every stale agent and every stale lock entry is handled; connected ones are kept."""
    clock, presence = FakeClock(), Presence()
    agents, locks, ns = (
        make_agents(store, clock, presence),
        LockService(store, LockSettings()),
        fresh_namespace(),
    )
    names = [f"agent-{i:02d}" for i in range(35)]
    for index, name in enumerate(names):
        clock.now = T0 + index  # distinct scores, in name order
        await agents.register(ns, name)
    connected = set(names[::5])
    for name in connected:
        presence.enter(ns.project_id, name)
    clock.now = T0 + FORGET_S + 100

    assert sorted(await sweep_inactive(agents, ns, limit=4)) == sorted(set(names) - connected)
    assert await members(store, ns, AGENTS_ACTIVE) == connected
    assert sorted(await sweep_gone(agents, ns, limit=4)) == sorted(set(names) - connected)

    for i in range(7):
        await locks.acquire(ns, "someone", f"held-{i}", ttl_s=600)
    now = await server_ms(store)
    stale = [f"stale-{i:02d}" for i in range(23)]
    batch = Batch()
    for resource in stale:
        batch.raw("ZADD", ns.key(LOCKS_INDEX), now - 10_000, resource)
    await store.run(batch)
    actions = await cleanup(locks, ns, "all", limit=4)
    assert sorted(c.resource for c in actions) == stale
    assert len(await members(store, ns, LOCKS_INDEX)) == 7


class OneProject(ProjectRegistry):
    """The registry as the job sees it, limited to one test namespace: the shared backend's
    ``coord:projects`` holds other tests' projects, which a sweep with a moved clock must not touch."""

    def __init__(self, store: Store, ns: Namespace, root: Path) -> None:
        super().__init__(store, ())
        self._project = KnownProject(
            project_id=ns.project_id, root=str(root), host=self.host, last_seen=None, source="config"
        )

    async def known(self) -> list[KnownProject]:
        return [self._project]


async def test_the_jobs_count_and_report_every_action(store: Store, tmp_path: Path) -> None:
    """sweep.run and reaper.run return their counts and report each action as a job event."""
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({}, config_file=str(empty), environ={})
    clock = FakeClock()
    app = App(settings, store, clock, registry=build_registry())
    ns = fresh_namespace()
    projects = OneProject(store, ns, tmp_path)
    agents, locks = app.services.agents, app.services.locks
    await agents.register(ns, "ghost")
    await agents.register(ns, "napper")
    await agents.register(ns, "editor")
    app.presence.enter(ns.project_id, "editor")
    await locks.acquire(ns, "ghost", "src/app.py", ttl_s=600)
    await locks.acquire(ns, "napper", "src/lib.py", ttl_s=600)
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await agents.heartbeat(ns, "napper")
    clock.now += WINDOW_S + 1

    with capture_logs() as logs:
        counts = await sweep.run(JobContext(app, projects, "heartbeat_sweep"))
    assert counts == {
        "projects": 1,
        "inactive": 2,
        "gone": 1,
        "locks_released": 1,
        "files_released": 0,
        "claims_released": 0,
    }
    events = sorted((e["event"], e["agent"], e["key"]) for e in logs)
    assert events == [
        ("agent_gone", "ghost", agent_status_key("ghost")),
        ("agent_inactive", "ghost", agent_status_key("ghost")),
        ("agent_inactive", "napper", agent_status_key("napper")),
        ("lock_released_stale", "ghost", "src/app.py"),
    ]
    assert all(e["job"] == "heartbeat_sweep" and e["project"] == ns.project_id for e in logs)

    await store.delete([ns.key(lock_key("src/lib.py"))])
    with capture_logs() as logs:
        counts = await reaper.run(JobContext(app, projects, "lock_reaper"))
    assert counts == {"projects": 1, "reaped": 1, "reindexed": 0}
    assert [(e["event"], e["key"]) for e in logs] == [("lock_reaped", "src/lib.py")]
    await app.activity.flush()
    outcomes = sorted(e["outcome"] for e in await app.activity.recent(ns, 50))
    assert outcomes == [
        "agent_gone",
        "agent_inactive",
        "agent_inactive",
        "lock_reaped",
        "lock_released_stale",
    ]


async def test_a_gone_holder_whose_name_needs_escaping_is_still_found(store: Store) -> None:
    """The lock walk reads holders from the raw documents: quotes, slashes and non-ASCII survive."""
    clock = FakeClock()
    agents, locks, ns = make_agents(store, clock), LockService(store, LockSettings()), fresh_namespace()
    name = 'o"brien/ü\\x'
    await agents.register(ns, name)
    await locks.acquire(ns, name, "odd.txt", ttl_s=600)
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await sweep_inactive(agents, ns)
    assert await sweep_gone(agents, ns) == [name]
    assert [(c.resource, c.holder) for c in await cleanup(locks, ns, "gone")] == [("odd.txt", name)]
