"""The read-only service reads behind ``coordinatord top`` (the ``overview`` control command),
against real servers: bounded rows, counts of the rest, nothing written."""

from __future__ import annotations

import pytest

from coordinatord.presence import Presence
from coordinatord.services import ratelimits
from coordinatord.services.agents import AgentService
from coordinatord.services.ratelimits import RateLimitService
from coordinatord.services.tasks import TaskService
from coordinatord.settings import AgentSettings, RateLimitSettings, TaskSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio


async def keys_of(store: Store, prefix: str) -> list[str]:
    found, _ = await store.scan(prefix + "*", 1_000)
    return sorted(found)


async def test_agents_overview_lists_connected_then_recent_and_counts_the_rest(store: Store) -> None:
    """The agents overview lists connected agents first, then by latest heartbeat, up to the limit; it
    counts known and active agents, leaves out forgotten ones, keeps inactive ones and writes nothing."""
    clock, presence, ns = FakeClock(), Presence(), fresh_namespace()
    service = AgentService(
        store, AgentSettings(heartbeat_window_s=300, forget_after_s=3_600), presence, clock
    )
    await service.register(ns, "forgotten")
    clock.now += 4_000  # past forget_after_s: not counted, not listed
    await service.register(ns, "quiet")
    clock.now += 600  # quiet's heartbeat is outside the window now: inactive, still remembered
    for name in ("a", "b", "c"):
        await service.heartbeat(ns, name, current_task=f"task-{name}")
        clock.now += 1
    presence.enter(ns.project_id, "editor")  # connected, never heartbeated
    before = await keys_of(store, ns.prefix)

    found = await service.overview(ns, limit=3)
    assert (found.known, found.active) == (5, 4)
    assert [a.agent for a in found.agents] == ["editor", "c", "b"]
    editor, c, _ = found.agents
    assert (editor.status, editor.connected, editor.idle_s, editor.registered) == (
        "active",
        True,
        None,
        False,
    )
    assert (c.status, c.current_task, c.idle_s) == ("active", "task-c", 1)
    everyone = await service.overview(ns, limit=10)
    assert [a.agent for a in everyone.agents] == ["editor", "c", "b", "a", "quiet"]
    assert everyone.agents[-1].status == "inactive"
    assert await keys_of(store, ns.prefix) == before


async def test_task_summary_reads_the_latest_few_and_counts_all(store: Store) -> None:
    """The task summary returns the most recently updated tasks up to the limit with their progress, and
    the total of all tasks in the project."""
    clock, ns = FakeClock(), fresh_namespace()
    service = TaskService(store, TaskSettings(), clock)
    for index in range(5):
        await service.create(ns, f"t{index}", ["one", "two"])
        clock.now += 1
    await service.advance(ns, "t1")
    clock.now += 1

    found = await service.summary(ns, limit=2)
    assert found.total == 5
    assert [t.taskId for t in found.tasks] == ["t1", "t4"]
    assert (found.tasks[0].completedSteps, found.tasks[0].percentComplete) == (1, 50)
    assert (await service.summary(fresh_namespace())).total == 0


async def test_budgets_show_the_usage_of_the_limits_last_used_here(store: Store) -> None:
    """Budgets list each service and window used in this project, newest first, with the latest limit given
    and the usage so far; a status call names a budget too, and other projects see none of them."""
    service, ns = RateLimitService(store, RateLimitSettings()), fresh_namespace()
    assert (await service.budgets(ns)).budgets == []
    await service.hit(ns, "github", limit=10, window_s=60, cost=3)
    await service.hit(ns, "github", limit=500, window_s=3_600)
    await service.status(ns, "search", limit=5, window_s=1)  # a status names a budget too
    await service.hit(ns, "github", limit=12, window_s=60)  # the latest limit wins

    found = await service.budgets(ns, limit=2)
    assert found.total == 3
    assert [(b.service, b.window_s, b.limit, b.used) for b in found.budgets] == [
        ("github", 60, 12, 4),
        ("search", 1, 5, 0),
    ]
    other = fresh_namespace()
    assert (await service.budgets(other)).budgets == []  # per project


async def test_budgets_remembered_are_bounded(store: Store) -> None:
    """Only the most recent BUDGETS_REMEMBERED budgets are kept, so the list cannot grow without bound; the
    oldest are dropped first."""
    service, ns = RateLimitService(store, RateLimitSettings()), fresh_namespace()
    for index in range(ratelimits.BUDGETS_REMEMBERED + 3):
        await service.status(ns, f"svc-{index}", limit=1, window_s=1)
    found = await service.budgets(ns, limit=100)
    assert found.total == ratelimits.BUDGETS_REMEMBERED
    assert found.budgets[0].service == f"svc-{ratelimits.BUDGETS_REMEMBERED + 2}"
    assert "svc-0" not in {b.service for b in found.budgets}
