"""The agent service against real servers: presence, heartbeat expiry, the index."""

from __future__ import annotations

import json

import anyio
import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import AGENTS_INDEX, agent_status_key
from coordinatord.presence import Presence
from coordinatord.services.agents import AgentService
from coordinatord.settings import AgentSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio


def make_service(
    store: Store, clock: FakeClock | None = None, presence: Presence | None = None, **overrides: int
) -> AgentService:
    return AgentService(store, AgentSettings(**overrides), presence or Presence(), clock or FakeClock())


async def test_register_heartbeat_unregister_round_trip(store: Store) -> None:
    """register writes the seed's document; heartbeat merges; unregister removes doc and index entry."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    info = await service.register(ns, "kilocode", ["python", "docs"], "architect")
    assert (info.status, info.registered, info.connected, info.mode) == ("active", True, False, "architect")
    key = ns.key(agent_status_key("kilocode"))
    raw = await store.get(key)
    assert raw is not None
    assert json.loads(raw) == {
        "agent": "kilocode",
        "mode": "architect",
        "capabilities": ["python", "docs"],
        "currentTask": None,
        "filesOpen": [],
        "startedAt": "2026-02-13T04:00:00.000Z",
        "lastHeartbeat": "2026-02-13T04:00:00.000Z",
    }
    assert 3590 < await store.ttl(key) <= 3600  # forget_after_s, not the heartbeat window
    assert 3590 < await store.ttl(ns.key(AGENTS_INDEX)) <= 3600

    clock.now += 30
    info = await service.heartbeat(ns, "kilocode", "planning-redis", ["redis-integration.md", "mcp.json"])
    assert (info.current_task, info.files_open, info.capabilities) == (
        "planning-redis",
        ["redis-integration.md", "mcp.json"],
        ["python", "docs"],
    )
    assert (info.started_at, info.last_heartbeat, info.idle_s) == (
        "2026-02-13T04:00:00.000Z",
        "2026-02-13T04:00:30.000Z",
        0,
    )
    clock.now += 30
    kept = await service.heartbeat(ns, "kilocode")  # omitted fields keep their value
    assert (kept.current_task, kept.files_open) == ("planning-redis", ["redis-integration.md", "mcp.json"])
    cleared = await service.heartbeat(ns, "kilocode", "", [])
    assert (cleared.current_task, cleared.files_open) == (None, [])

    gone = await service.unregister(ns, "kilocode")
    assert (gone.registered, gone.status, gone.mode) == (False, "inactive", "architect")
    assert await store.get(key) is None
    assert await store.execute("ZSCORE", ns.key(AGENTS_INDEX), "kilocode") is None
    again = await service.unregister(ns, "kilocode")
    assert (again.registered, again.mode) == (False, None)


async def test_heartbeat_without_register_registers_implicitly(store: Store) -> None:
    """A first heartbeat creates the status (mode null, no capabilities) instead of failing."""
    service, ns = make_service(store), fresh_namespace()
    info = await service.heartbeat(ns, "cline", "fix-bug")
    assert (info.registered, info.status, info.mode, info.capabilities, info.current_task) == (
        True,
        "active",
        None,
        [],
        "fix-bug",
    )
    assert info.started_at == info.last_heartbeat
    assert [a.agent for a in (await service.list_agents(ns)).agents] == ["cline"]


async def test_register_starts_afresh(store: Store) -> None:
    """A second register replaces capabilities and mode and clears the task and files."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    await service.register(ns, "a", ["x"], "code")
    await service.heartbeat(ns, "a", "t1", ["f.py"])
    clock.now += 10
    info = await service.register(ns, "a")
    assert (info.capabilities, info.mode, info.current_task, info.files_open) == ([], None, None, [])
    assert info.started_at == "2026-02-13T04:00:10.000Z"


async def test_heartbeat_expiry_follows_the_clock(store: Store) -> None:
    """Past the heartbeat window an agent is inactive: hidden unless include_inactive."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    await service.heartbeat(ns, "a", "t1")
    clock.now += 300
    assert [a.status for a in (await service.list_agents(ns)).agents] == ["active"]  # window inclusive
    clock.now += 1
    assert (await service.list_agents(ns)).agents == []
    listed = (await service.list_agents(ns, include_inactive=True)).agents
    assert [(a.agent, a.status, a.idle_s, a.current_task) for a in listed] == [("a", "inactive", 301, "t1")]
    clock.now += 3600
    assert (await service.list_agents(ns, include_inactive=True)).agents == []  # forgotten


async def test_presence_by_connection(store: Store) -> None:
    """A connected agent is active without any heartbeat; after it disconnects it is not."""
    clock = FakeClock()
    presence = Presence()
    service, ns = make_service(store, clock, presence), fresh_namespace()
    presence.enter(ns.project_id, "silent")
    presence.enter("another-project", "elsewhere")
    listed = (await service.list_agents(ns)).agents
    assert [(a.agent, a.status, a.connected, a.registered, a.last_heartbeat) for a in listed] == [
        ("silent", "active", True, False, None)
    ]
    await service.heartbeat(ns, "silent", "t")
    clock.now += 1000  # heartbeat long outside the window, yet still connected
    listed = (await service.list_agents(ns)).agents
    assert [(a.agent, a.status, a.connected, a.idle_s) for a in listed] == [("silent", "active", True, 1000)]
    presence.leave(ns.project_id, "silent")
    assert (await service.list_agents(ns)).agents == []
    inactive = (await service.list_agents(ns, include_inactive=True)).agents
    assert [(a.agent, a.status, a.connected) for a in inactive] == [("silent", "inactive", False)]


async def test_list_reads_the_index_not_the_keys(store: Store) -> None:
    """A hand-written agent:status:* key is not listed; an index entry without a document is skipped."""
    service, ns = make_service(store), fresh_namespace()
    await store.set(ns.key(agent_status_key("ghost")), json.dumps({"agent": "ghost"}), 300)
    await service.register(ns, "real")
    await service.register(ns, "expired")
    await store.delete([ns.key(agent_status_key("expired"))])
    for include_inactive in (False, True):
        listed = (await service.list_agents(ns, include_inactive=include_inactive)).agents
        assert [a.agent for a in listed] == ["real"]


async def test_projects_are_isolated(store: Store) -> None:
    """One agent name in two projects has two statuses; each list shows only its own."""
    service, mine, theirs = make_service(store), fresh_namespace(), fresh_namespace()
    await service.register(mine, "a", ["mine"])
    await service.register(theirs, "b")
    assert [(a.agent, a.capabilities) for a in (await service.list_agents(mine)).agents] == [("a", ["mine"])]
    assert [a.agent for a in (await service.list_agents(theirs, include_inactive=True)).agents] == ["b"]
    await service.unregister(theirs, "a")
    assert [a.agent for a in (await service.list_agents(mine)).agents] == ["a"]


async def test_concurrent_heartbeats_of_one_agent_keep_registered_fields(store: Store) -> None:
    """Many heartbeats at once never drop the capabilities and mode written by register."""
    service, ns = make_service(store), fresh_namespace()
    await service.register(ns, "twin", ["python"], "code")

    async def beat(index: int) -> None:
        await service.heartbeat(ns, "twin", f"task-{index}", [f"f{index}.py"])

    async with anyio.create_task_group() as tg:
        for index in range(32):
            tg.start_soon(beat, index)
    (info,) = (await service.list_agents(ns)).agents
    assert (info.capabilities, info.mode) == (["python"], "code")
    assert info.current_task is not None and info.files_open == [f"f{info.current_task[5:]}.py"]


async def test_unusual_names_and_text_survive_the_json(store: Store) -> None:
    """Agent names and values with quotes, slashes and non-ASCII text round-trip exactly."""
    service, ns = make_service(store), fresh_namespace()
    name = 'Claude Code "β"/x'
    await service.register(ns, name, ['re"view', "naïve/λ"], "ask")
    info = await service.heartbeat(ns, name, "täsk \\ 1", ["src/ü.py"])
    assert (info.agent, info.capabilities, info.current_task, info.files_open) == (
        name,
        ['re"view', "naïve/λ"],
        "täsk \\ 1",
        ["src/ü.py"],
    )
    raw = await store.get(ns.key(agent_status_key(name)))
    assert raw is not None and json.loads(raw)["agent"] == name


async def test_argument_checks(store: Store) -> None:
    """Oversized lists, empty items and control characters are refused, naming the argument."""
    service, ns = make_service(store), fresh_namespace()
    with pytest.raises(LimitExceededError, match="'capabilities' has 65 items"):
        await service.register(ns, "a", ["c"] * 65)
    with pytest.raises(InvalidArgumentError, match=r"'files_open\[1\]' must not be empty"):
        await service.heartbeat(ns, "a", None, ["a.py", ""])
    with pytest.raises(InvalidArgumentError, match="'current_task' must not contain control"):
        await service.heartbeat(ns, "a", "x\ny")
    with pytest.raises(InvalidArgumentError, match="no agent name"):
        await service.heartbeat(ns, "")
    assert (await service.list_agents(ns, include_inactive=True)).agents == []
