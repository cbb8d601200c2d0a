"""The task service against real servers: compare-and-set under concurrency, TTLs, the index."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.keyspace import TASKS_INDEX, Namespace, task_key
from coordinatord.services import tasks as tasks_module
from coordinatord.services.task_rules import StepStatus
from coordinatord.services.tasks import TaskService, TaskState
from coordinatord.settings import TaskSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio


def make_service(store: Store, clock: FakeClock | None = None, **overrides: int) -> TaskService:
    return TaskService(store, TaskSettings(**overrides), clock or FakeClock())


async def raw_doc(store: Store, ns: Namespace, task_id: str) -> dict[str, Any]:
    raw = await store.get(ns.key(task_key(task_id)))
    assert raw is not None
    doc: dict[str, Any] = json.loads(raw)
    return doc


async def test_create_stores_the_seed_shape_with_ttl(store: Store) -> None:
    """task_create writes the seed's document plus version, which redis_get sees, with a 48 h TTL."""
    service, ns = make_service(store), fresh_namespace()
    state = await service.create(ns, "implement-redis-docs", ["gather", "write", "review"])
    assert (state.status, state.version, state.percentComplete, state.currentStep) == (
        "pending",
        1,
        0,
        "gather",
    )
    assert await raw_doc(store, ns, "implement-redis-docs") == {
        "taskId": "implement-redis-docs",
        "status": "pending",
        "steps": [
            {"name": "gather", "status": "pending"},
            {"name": "write", "status": "pending"},
            {"name": "review", "status": "pending"},
        ],
        "currentStepIndex": 0,
        "createdAt": "2026-02-13T04:00:00.000Z",
        "updatedAt": "2026-02-13T04:00:00.000Z",
        "version": 1,
    }
    assert 172_790 < await store.ttl(ns.key(task_key("implement-redis-docs"))) <= 172_800
    assert 172_790 < await store.ttl(ns.key(TASKS_INDEX)) <= 172_800


async def test_writes_refresh_the_ttl(store: Store) -> None:
    """Every change gives the document its full TTL again."""
    service, ns = make_service(store, ttl_s=600), fresh_namespace()
    await service.create(ns, "t", ["a", "b"])
    await store.expire(ns.key(task_key("t")), 5)
    await service.advance(ns, "t")
    assert 590 < await store.ttl(ns.key(task_key("t"))) <= 600


async def test_advance_update_get_round_trip(store: Store) -> None:
    """advance and update change the stored document; get reports the seed's progress fields."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    await service.create(ns, "t", ["a", "b", "c", "d"])
    clock.now += 60
    advanced = await service.advance(ns, "t")
    assert (advanced.status, advanced.currentStep, advanced.version) == ("in_progress", "b", 2)
    updated = await service.update(ns, "t", "d", "blocked")
    assert updated.status == "blocked"
    updated = await service.update(ns, "t", 1, "completed")
    got = await service.get(ns, "t")
    assert got == updated
    assert got.model_dump(exclude={"steps", "createdAt", "updatedAt"}) == {
        "taskId": "t",
        "status": "blocked",
        "percentComplete": 50,
        "currentStep": "c",
        "currentStepIndex": 2,
        "totalSteps": 4,
        "completedSteps": 2,
        "version": 4,
    }
    assert got.updatedAt == "2026-02-13T04:01:00.000Z"
    assert (await raw_doc(store, ns, "t"))["version"] == 4


async def test_unknown_ids_and_steps_are_not_found(store: Store) -> None:
    """Every operation on a missing task says which task; unknown steps name the step."""
    service, ns = make_service(store), fresh_namespace()
    for call in (
        service.get(ns, "ghost"),
        service.advance(ns, "ghost"),
        service.update(ns, "ghost", 0, "completed"),
    ):
        with pytest.raises(NotFoundError, match="task 'ghost' not found"):
            await call
    await service.create(ns, "t", ["a"])
    with pytest.raises(NotFoundError, match="task 't' has no step named 'zz'"):
        await service.update(ns, "t", "zz", "completed")


async def test_create_refuses_an_existing_id_unless_replace(store: Store) -> None:
    """A second create is refused; replace starts over with a higher version."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "t", ["a", "b"])
    await service.advance(ns, "t")
    with pytest.raises(ConflictError, match="task 't' already exists; pass replace=true"):
        await service.create(ns, "t", ["x"])
    assert (await service.get(ns, "t")).completedSteps == 1
    replaced = await service.create(ns, "t", ["x", "y", "z"], replace=True)
    assert (replaced.version, replaced.totalSteps, replaced.completedSteps) == (3, 3, 0)
    fresh = await service.create(ns, "new", ["a"], replace=True)
    assert fresh.version == 1


async def test_replace_over_a_foreign_document(store: Store) -> None:
    """A document that is not a task is refused by changes and overwritten by replace."""
    service, ns = make_service(store), fresh_namespace()
    await store.set(ns.key(task_key("t")), "not json", 60)
    with pytest.raises(ConflictError, match=r"not a task .*replace=true"):
        await service.advance(ns, "t")
    replaced = await service.create(ns, "t", ["a"], replace=True)
    assert replaced.version == 1 and (await raw_doc(store, ns, "t"))["steps"] == [
        {"name": "a", "status": "pending"}
    ]


async def test_a_seed_written_document_can_be_advanced(store: Store) -> None:
    """A document the seed's createTask wrote (no version) is advanced and gets version 1."""
    service, ns = make_service(store), fresh_namespace()
    seed = {
        "taskId": "t",
        "status": "pending",
        "steps": [{"name": "a", "status": "pending"}, {"name": "b", "status": "pending"}],
        "currentStepIndex": 0,
        "createdAt": "2026-02-13T04:00:00.000Z",
        "updatedAt": "2026-02-13T04:00:00.000Z",
    }
    await store.set(ns.key(task_key("t")), json.dumps(seed), 172_800)
    state = await service.advance(ns, "t")
    assert (state.version, state.currentStep, state.status) == (1, "b", "in_progress")


async def test_argument_checks(store: Store) -> None:
    """Bad ids and step lists are refused before anything is written (a bad status is the
    tool's argument model's to refuse: tests/unit/test_tool_argument_checks.py)."""
    service, ns = make_service(store, max_steps=3), fresh_namespace()
    with pytest.raises(InvalidArgumentError, match="'task_id'"):
        await service.create(ns, "../x", ["a"])
    with pytest.raises(LimitExceededError, match=r"tasks\.max_steps = 3"):
        await service.create(ns, "t", ["a", "b", "c", "d"])
    with pytest.raises(InvalidArgumentError, match="repeats the step name"):
        await service.create(ns, "t", ["a", "a"])
    await service.create(ns, "t", ["a"])
    assert await service.list_tasks(fresh_namespace()) == tasks_module.TaskList(tasks=[], truncated=False)


async def test_eight_agents_updating_their_own_steps_lose_nothing(store: Store) -> None:
    """8 agents flipping their own step of one task 25 times each: every final write survives."""
    service, ns = make_service(store), fresh_namespace()
    names = [f"agent-{i}" for i in range(8)]
    await service.create(ns, "shared", names)
    rounds = 25

    async def agent(name: str) -> None:
        for round_ in range(rounds):
            status: StepStatus = (
                "completed" if round_ == rounds - 1 else ("in_progress", "blocked")[round_ % 2]
            )
            await service.update(ns, "shared", name, status)

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(agent, name)
    final = await service.get(ns, "shared")
    assert [step.status for step in final.steps] == ["completed"] * 8
    assert (final.status, final.percentComplete) == ("completed", 100)
    assert final.version == 1 + 8 * rounds  # one version per write: none was overwritten


async def test_eight_agents_advancing_a_64_step_task(store: Store) -> None:
    """8 agents advancing one 64-step task: exactly 64 advances succeed, each completing one step."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "big", [f"s{i}" for i in range(64)])
    results: list[TaskState] = []
    refused: list[str] = []

    async def agent() -> None:
        while True:
            try:
                results.append(await service.advance(ns, "big"))
            except ConflictError as exc:
                refused.append(str(exc))
                return

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(agent)
    assert len(results) == 64
    assert sorted(state.completedSteps for state in results) == list(range(1, 65))
    assert sorted(state.version for state in results) == list(range(2, 66))
    assert all("already completed" in message for message in refused) and len(refused) == 8
    final = await service.get(ns, "big")
    assert (final.status, final.completedSteps, final.currentStep) == ("completed", 64, "completed")


async def test_a_losing_writer_retries_from_the_new_document(store: Store) -> None:
    """When another write lands between read and write, the change is re-applied, not lost."""
    service, interloper, ns = make_service(store), make_service(store), fresh_namespace()
    await interloper.create(ns, "t", ["a", "b", "c"])  # so `service` has to read it
    interfered = False
    original_get = store.get

    async def get_then_interfere(key: str) -> str | None:
        nonlocal interfered
        raw = await original_get(key)
        if not interfered:
            interfered = True
            await interloper.update(ns, "t", "c", "blocked")
        return raw

    store.get = get_then_interfere  # type: ignore[method-assign]
    try:
        state = await service.advance(ns, "t")
    finally:
        store.get = original_get  # type: ignore[method-assign]
    assert [s.status for s in state.steps] == ["completed", "in_progress", "blocked"]
    assert state.version == 3


async def test_conflicts_past_the_retry_limit_give_a_conflict_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that loses every round gives up with a ConflictError naming the task."""
    monkeypatch.setattr(tasks_module, "MAX_ATTEMPTS", 3)
    service, interloper, ns = make_service(store), make_service(store), fresh_namespace()
    await service.create(ns, "t", ["a", "b"])
    write = service._write_script

    async def interfere_then_write(keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        await interloper.update(ns, "t", "b", "pending")  # lands just before every attempt
        return await write(keys, args)

    monkeypatch.setattr(service, "_write_script", interfere_then_write)
    with pytest.raises(ConflictError, match="task 't' kept changing under this call \\(3 attempts\\)"):
        await service.advance(ns, "t")


async def test_a_stale_memory_costs_a_retry_not_a_lost_write(store: Store) -> None:
    """A daemon whose remembered document is outdated re-applies its change to the stored one."""
    first, second, ns = make_service(store), make_service(store), fresh_namespace()
    await first.create(ns, "t", ["a", "b", "c"])  # `first` now remembers version 1
    await second.update(ns, "t", "c", "blocked")  # version 2, written by another daemon
    state = await first.advance(ns, "t")
    assert [s.status for s in state.steps] == ["completed", "in_progress", "blocked"]
    assert state.version == 3


async def test_a_raw_write_that_keeps_the_version_is_not_overwritten(store: Store) -> None:
    """The seed's get-modify-set keeps `version`; the compare-and-set still sees the change."""
    service, ns = make_service(store), fresh_namespace()
    await service.create(ns, "t", ["a", "b"])
    doc = await raw_doc(store, ns, "t")
    doc["steps"][1]["status"] = "blocked"  # version unchanged, as the seed's sample would leave it
    await store.set(ns.key(task_key("t")), json.dumps(doc), 60)
    state = await service.advance(ns, "t")
    assert [s.status for s in state.steps] == ["completed", "blocked"]


async def test_list_reads_the_index_newest_first_and_filters(store: Store) -> None:
    """task_list shows indexed tasks by last update, filters by status and skips expired ones."""
    clock = FakeClock()
    service, ns = make_service(store, clock), fresh_namespace()
    for index, task_id in enumerate(["one", "two", "three"]):
        clock.now += 1
        await service.create(ns, task_id, [f"{task_id}-{i}" for i in range(index + 1)])
    clock.now += 1
    await service.advance(ns, "one")
    await store.set(ns.key(task_key("stray")), "{}", 60)  # not in the index: not listed
    await store.delete([ns.key(task_key("two"))])  # index entry left behind: skipped
    listed = await service.list_tasks(ns)
    assert [t.taskId for t in listed.tasks] == ["one", "three"]
    assert listed.tasks[0].model_dump() == {
        "taskId": "one",
        "status": "completed",
        "percentComplete": 100,
        "currentStep": "completed",
        "totalSteps": 1,
        "completedSteps": 1,
        "updatedAt": "2026-02-13T04:00:04.000Z",
    }
    assert [t.taskId for t in (await service.list_tasks(ns, "pending")).tasks] == ["three"]
    assert (await service.list_tasks(ns, "failed")).tasks == []


async def test_index_entries_older_than_the_ttl_are_ignored_and_pruned(store: Store) -> None:
    """Entries older than the task TTL are neither read nor kept once another write happens."""
    clock = FakeClock()
    service, ns = make_service(store, clock, ttl_s=600), fresh_namespace()
    await service.create(ns, "old", ["a"])
    clock.now += 600 + 61
    assert (await service.list_tasks(ns)).tasks == []
    await service.create(ns, "new", ["a"])
    assert await store.execute("ZRANGE", ns.key(TASKS_INDEX), 0, -1) == ["new"]


async def test_projects_are_isolated(store: Store) -> None:
    """The same task id in two projects is two tasks."""
    service, mine, theirs = make_service(store), fresh_namespace(), fresh_namespace()
    await service.create(mine, "t", ["a"])
    with pytest.raises(NotFoundError):
        await service.get(theirs, "t")
    assert (await service.list_tasks(theirs)).tasks == []


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        (
            '{"taskId": "t", "status": "pending", "steps": [{"name": "a", "status": "pending"}], '
            '"currentStepIndex": 0, "createdAt": "x", "updatedAt": "x", "version": 7}',
            8,
        ),
        ("{}", 1),
        ("[]", 1),
        ('{"version": 7}', 1),
        ('"text"', 1),
        ("not json", 1),
    ],
)
async def test_replace_over_whatever_is_stored(store: Store, raw: str, version: int) -> None:
    """replace starts over above a task's version, and at 1 over anything that is not a task."""
    service, ns = make_service(store), fresh_namespace()
    await store.set(ns.key(task_key("t")), raw, 60)
    assert (await service.create(ns, "t", ["a"], replace=True)).version == version
