"""The task graph against real servers: dependencies, the ready index, claims, cycles, and the
heartbeat sweep returning a gone agent's claims."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.jobs import JobContext, sweep
from coordinatord.keyspace import TASKS_READY, Namespace, task_claims_key, task_graph_key, task_key
from coordinatord.services.tasks import TaskService
from coordinatord.settings import TaskSettings, load_settings
from coordinatord.store import Store
from coordinatord.tools import build_registry
from tests.integration.test_sweep_reap import (
    FORGET_S,
    WINDOW_S,
    OneProject,
    make_agents,
    server_ms,
    sweep_gone,
    sweep_inactive,
    until_server_passes,
)
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio


def make_service(store: Store, clock: FakeClock | None = None, **overrides: int) -> TaskService:
    return TaskService(store, TaskSettings(**overrides), clock or FakeClock())


async def ready_ids(service: TaskService, ns: Namespace, label: str | None = None) -> list[str]:
    return [task.taskId for task in (await service.ready(ns, 100, label)).tasks]


async def test_a_task_is_ready_once_its_dependencies_complete(store: Store) -> None:
    """A task without dependencies is ready at once; one with dependencies when the write that
    completes the last of them returns (and that write reports it)."""
    service, ns = make_service(store), fresh_namespace()
    made_ready: list[str] = []
    await service.create(ns, "a", ["x"], on_ready=made_ready.extend)
    await service.create(ns, "b", ["x", "y"], on_ready=made_ready.extend)
    await service.create(ns, "c", ["x"], depends_on=["a", "b"], on_ready=made_ready.extend)
    assert made_ready == ["a", "b"]
    assert sorted(await ready_ids(service, ns)) == ["a", "b"]

    await service.advance(ns, "a", on_ready=made_ready.extend)
    assert await ready_ids(service, ns) == ["b"] and made_ready == ["a", "b"]
    await service.advance(ns, "b")  # first step: b not completed yet
    assert await ready_ids(service, ns) == ["b"]
    await service.update(ns, "b", "y", "completed", on_ready=made_ready.extend)
    assert await ready_ids(service, ns) == ["c"] and made_ready == ["a", "b", "c"]
    ready = (await service.ready(ns)).tasks
    assert (ready[0].dependsOn, ready[0].labels, ready[0].priority) == (["a", "b"], [], 0)


async def test_a_dependency_created_complete_later_is_counted(store: Store) -> None:
    """A dependency already completed when its dependent is created does not hold it back."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "done", ["x"])
    await service.advance(ns, "done")
    await service.create(ns, "next", ["x"], depends_on=["done"])
    assert await ready_ids(service, ns) == ["next"]


async def test_ready_order_is_priority_then_age_then_id(store: Store) -> None:
    """Highest priority first; equal priorities oldest first; equal times by task id."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    await service.create(ns, "old-low", ["x"], priority=-5)
    clock.now += 1
    await service.create(ns, "mid-b", ["x"])
    await service.create(ns, "mid-a", ["x"])  # same ms as mid-b
    clock.now += 1
    await service.create(ns, "new-high", ["x"], priority=7)
    clock.now += 1
    await service.create(ns, "newer-high", ["x"], priority=7)
    assert await ready_ids(service, ns) == ["new-high", "newer-high", "mid-a", "mid-b", "old-low"]
    assert [t.taskId for t in (await service.ready(ns, 2)).tasks] == ["new-high", "newer-high"]


async def test_ready_filters_by_label(store: Store) -> None:
    """task_ready(label) lists only the ready tasks with that label, in the same order."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "docs", ["x"], labels=["docs", "easy"])
    await service.create(ns, "code", ["x"], labels=["code"], priority=3)
    await service.create(ns, "both", ["x"], labels=["code", "docs", "docs"], priority=1)
    assert await ready_ids(service, ns, "docs") == ["both", "docs"]
    assert await ready_ids(service, ns, "code") == ["code", "both"]
    assert await ready_ids(service, ns, "none") == []
    await service.claim(ns, "both", "kilo")
    assert await ready_ids(service, ns, "docs") == ["docs"]
    ready = {t.taskId: t for t in (await service.ready(ns)).tasks}
    assert ready["docs"].labels == ["docs", "easy"]


async def test_unknown_and_self_dependencies_are_refused_and_nothing_is_written(store: Store) -> None:
    """A dependency must exist; a task cannot depend on itself; a refused create writes nothing."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "a", ["x"])
    with pytest.raises(NotFoundError, match=r"argument 'depends_on\[1\]' names task 'typo', which does not"):
        await service.create(ns, "b", ["x"], depends_on=["a", "typo"])
    assert await store.get(ns.key(task_key("b"))) is None
    assert not await store.exists([ns.key(task_graph_key("b"))])
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[0\]' names the task itself"):
        await service.create(ns, "a", ["x"], replace=True, depends_on=["a"])
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[1\]' repeats the task 'a'"):
        await service.create(ns, "c", ["x"], depends_on=["a", "a"])
    with pytest.raises(LimitExceededError, match=r"tasks\.max_depends_on = 1"):
        await make_service(store, max_depends_on=1).create(ns, "d", ["x"], depends_on=["a", "b"])
    with pytest.raises(InvalidArgumentError, match="argument 'priority' must be from -1000 to 1000"):
        await service.create(ns, "e", ["x"], priority=1001)
    with pytest.raises(InvalidArgumentError, match=r"argument 'labels\[0\]'"):
        await service.create(ns, "f", ["x"], labels=["no spaces"])


async def test_a_replace_that_would_close_a_cycle_is_refused(store: Store) -> None:
    """Replacing a task with a dependency that (directly or through others) depends on it is
    refused and leaves the task as it was; a replace that closes no cycle moves the edges."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "a", ["x"])
    await service.create(ns, "b", ["x"], depends_on=["a"])
    await service.create(ns, "c", ["x"], depends_on=["b"])
    await service.create(ns, "other", ["x"])
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[0\]': task 'b' already depends on 'a'"):
        await service.create(ns, "a", ["x"], replace=True, depends_on=["b"])
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[1\]': task 'c' already depends on 'a'"):
        await service.create(ns, "a", ["y"], replace=True, depends_on=["other", "c"])
    assert (await service.get(ns, "a")).steps[0].name == "x"
    assert sorted(await ready_ids(service, ns)) == ["a", "other"]
    with pytest.raises(LimitExceededError, match=r"tasks\.graph_walk_max"):
        await make_service(store, graph_walk_max=1).create(ns, "a", ["x"], replace=True, depends_on=["other"])

    await service.create(ns, "c", ["x"], replace=True, depends_on=["other"])  # c no longer needs b
    await service.create(ns, "a", ["x"], replace=True, depends_on=["c"])  # so this is no cycle
    assert await ready_ids(service, ns) == ["other"]
    await service.advance(ns, "other")
    assert await ready_ids(service, ns) == ["c"]
    await service.advance(ns, "c")
    assert await ready_ids(service, ns) == ["a"]


async def test_exactly_one_of_many_concurrent_claims_wins(store: Store) -> None:
    """Twenty agents claiming one ready task at once: one wins, the others are told who holds it."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "prize", ["x"])
    winners: list[str] = []
    refusals: list[str] = []

    async def claim(agent: str) -> None:
        try:
            winners.append((await service.claim(ns, "prize", agent)).claimedBy or "")
        except ConflictError as exc:
            refusals.append(str(exc))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(claim, f"agent-{i}")
    assert len(winners) == 1 and len(refusals) == 19
    assert all(f"task 'prize' is claimed by {winners[0]}" in refusal for refusal in refusals)
    assert await ready_ids(service, ns) == []
    assert await store.smembers(ns.key(task_claims_key(winners[0]))) == {"prize"}
    again = await service.claim(ns, "prize", winners[0])
    assert (again.claimedBy, again.ready) == (winners[0], False)


async def test_claim_refusals_say_why(store: Store) -> None:
    """Claiming a waiting, completed or unknown task is refused with the reason."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "dep", ["x"])
    await service.create(ns, "waits", ["x"], depends_on=["dep"])
    with pytest.raises(ConflictError, match=r"'waits' is not ready: 1 of its dependencies \('dep'\)"):
        await service.claim(ns, "waits", "kilo")
    await service.advance(ns, "dep")
    with pytest.raises(ConflictError, match="'dep' is already completed"):
        await service.claim(ns, "dep", "kilo")
    with pytest.raises(NotFoundError, match="task 'nope' not found"):
        await service.claim(ns, "nope", "kilo")
    with pytest.raises(InvalidArgumentError, match="argument 'task_id'"):
        await service.claim(ns, "a/b", "kilo")


async def test_only_the_claimant_can_unclaim_and_the_task_is_ready_again(store: Store) -> None:
    """Unclaim by another agent, or of an unclaimed task, is refused; by the claimant it puts
    the task back in the ready index."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "t", ["x"], labels=["docs"])
    with pytest.raises(ConflictError, match="'t' is not claimed by anyone"):
        await service.unclaim(ns, "t", "kilo")
    await service.claim(ns, "t", "kilo")
    with pytest.raises(ConflictError, match="'t' is claimed by kilo, not by cline; only its claimant"):
        await service.unclaim(ns, "t", "cline")
    released = await service.unclaim(ns, "t", "kilo")
    assert (released.claimedBy, released.ready) == (None, True)
    assert await ready_ids(service, ns, "docs") == ["t"]
    assert await store.smembers(ns.key(task_claims_key("kilo"))) == set()
    assert (await service.claim(ns, "t", "cline")).claimedBy == "cline"


async def test_completion_ends_the_claim_and_reopening_takes_dependents_back(store: Store) -> None:
    """Completing a claimed task ends its claim; reopening a completed dependency takes an
    unclaimed dependent out of the ready index until it is completed again."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "dep", ["x"])
    await service.create(ns, "next", ["x"], depends_on=["dep"])
    await service.claim(ns, "dep", "kilo")
    await service.advance(ns, "dep")
    assert await store.smembers(ns.key(task_claims_key("kilo"))) == set()
    assert await ready_ids(service, ns) == ["next"]
    await service.update(ns, "dep", "x", "in_progress")
    assert await ready_ids(service, ns) == ["dep"]
    with pytest.raises(ConflictError, match="'next' is not ready"):
        await service.claim(ns, "next", "kilo")
    await service.update(ns, "dep", 0, "completed")
    assert await ready_ids(service, ns) == ["next"]
    await service.create(ns, "dep", ["x"], replace=True)  # starting a completed dependency over
    assert await ready_ids(service, ns) == ["dep"]


async def test_stale_ready_entries_are_dropped(store: Store) -> None:
    """An index entry whose graph entry is gone (expired) is skipped and dropped by task_ready."""
    service, ns = make_service(store), fresh_namespace()
    for name in ("a", "b", "c"):
        await service.create(ns, name, ["x"])
    await store.delete([ns.key(task_graph_key("b"))])
    assert await ready_ids(service, ns) == ["a", "c"]
    assert await store.zrange(ns.key(TASKS_READY), 0, -1) == ["a", "c"]


async def test_gone_agents_claims_return_to_ready(store: Store) -> None:
    """The claims a gone agent took before it was found gone are released and ready again; a
    claim taken after the mark stays; an agent that never heartbeated is swept too."""
    clock = FakeClock()
    service, agents, ns = make_service(store, clock), make_agents(store, clock), fresh_namespace()
    for name in ("t1", "t2", "t3"):
        await service.create(ns, name, ["x"], labels=["lbl"])
    await service.claim(ns, "t1", "ghost")  # never heartbeated: the claim makes the sweep know it
    await service.claim(ns, "t2", "ghost")
    await service.claim(ns, "t3", "alive")
    await agents.heartbeat(ns, "alive")
    await until_server_passes(store, await server_ms(store))
    clock.now += FORGET_S + 1
    await agents.heartbeat(ns, "alive")
    assert await sweep_inactive(agents, ns) == ["ghost"]
    assert await sweep_gone(agents, ns) == ["ghost"]
    released = await service.release_claims_of_gone(ns, ["ghost", "alive"])
    assert sorted((c.task_id, c.agent, c.ready) for c in released) == [
        ("t1", "ghost", True),
        ("t2", "ghost", True),
    ]
    assert await ready_ids(service, ns, "lbl") == ["t1", "t2"]
    assert await store.smembers(ns.key(task_claims_key("ghost"))) == set()
    # Back after the mark (before the gone index is emptied): this claim is not released.
    await service.claim(ns, "t1", "ghost")
    assert await service.release_claims_of_gone(ns, ["ghost"]) == []


async def test_the_sweep_job_releases_claims_and_reports_them(store: Store, tmp_path: Path) -> None:
    """sweep.run counts released claims and reports task_claim_released and task_ready events."""
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({}, config_file=str(empty), environ={})
    clock = FakeClock()
    app = App(settings, store, clock, registry=build_registry())
    ns = fresh_namespace()
    tasks = app.services.tasks
    await app.services.agents.register(ns, "ghost")
    await tasks.create(ns, "t", ["x"])
    await tasks.claim(ns, "t", "ghost")
    await until_server_passes(store, await server_ms(store))
    clock.now += settings.agents.forget_after_s + WINDOW_S + 1
    with capture_logs() as logs:
        counts = await sweep.run(JobContext(app, OneProject(store, ns, tmp_path), "heartbeat_sweep"))
    assert counts["claims_released"] == 1
    events = sorted((e["event"], e["agent"], e["key"]) for e in logs if e["event"].startswith("task_"))
    assert events == [("task_claim_released", "ghost", "t"), ("task_ready", "ghost", "t")]
    assert [t.taskId for t in (await tasks.ready(ns)).tasks] == ["t"]
