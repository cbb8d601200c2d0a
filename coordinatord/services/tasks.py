"""Task progress documents that many agents can update at once without losing a write.

Keys (inside the project namespace):
    ``task:progress:<task_id>``  the document, JSON in the seed's shape plus ``version``
                                 (so ``redis_get`` shows it); TTL ``tasks.ttl_s``, refreshed
                                 on every write
    ``_idx:tasks``               zset task id → ``updatedAt`` (ms), for ``task_list`` without
                                 SCAN; same TTL, refreshed on every write, which also drops
                                 entries whose documents must have expired

Atomicity: every change is optimistic compare-and-set on ``version``. The service reads the
document, applies a pure rule from :mod:`coordinatord.services.task_rules`, and writes the
result with ``lua/task_write.lua``, which stores it (and updates the index) only if the stored
version still equals the one read. If another writer got in first, the whole read-apply-write
is retried with a short randomised backoff, up to :data:`MAX_ATTEMPTS` times; so every
successful call is applied to the latest document and no update is ever lost. Creating uses
the same script expecting "absent"; replacing expects the version it read and writes the next
version, so a writer still holding the old document cannot overwrite the new one.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import ConflictError, NotFoundError
from coordinatord.keyspace import TASKS_INDEX, Namespace, check_id, task_key
from coordinatord.services import task_rules
from coordinatord.services.task_rules import Step, StepStatus, Task
from coordinatord.settings import TaskSettings
from coordinatord.store import Store

_WRITE = (Path(__file__).with_name("lua") / "task_write.lua").read_text()

MAX_ATTEMPTS = 50
"""Read-apply-write rounds before a call gives up with ConflictError. With 8 writers hammering
one task every round lets one of them through, so this is far beyond what contention needs."""
BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.05
LIST_MAX = 500
"""task_list returns at most this many tasks (most recently updated first)."""
LIST_SCAN_MAX = 5_000
"""Index entries task_list reads at most (its status filter may skip many)."""
INDEX_GRACE_MS = 60_000
"""Index entries are dropped this long after their document must have expired: a margin for
clocks of daemons that share one Redis."""
_MGET_CHUNK = 500
_MAX_SAFE_VERSION = 2**53  # Lua numbers are doubles; the script compares integers below this


class TaskState(BaseModel):
    """A task as tools return it: the stored document and the seed's progress fields."""

    model_config = ConfigDict(frozen=True)

    taskId: str
    status: StepStatus
    percentComplete: int
    currentStep: str
    currentStepIndex: int
    totalSteps: int
    completedSteps: int
    steps: list[Step]
    createdAt: str
    updatedAt: str
    version: int


class TaskSummary(BaseModel):
    """One task in a listing: the seed's progress fields and when it last changed."""

    model_config = ConfigDict(frozen=True)

    taskId: str
    status: StepStatus
    percentComplete: int
    currentStep: str
    totalSteps: int
    completedSteps: int
    updatedAt: str


class TaskList(BaseModel):
    model_config = ConfigDict(frozen=True)

    tasks: list[TaskSummary]
    truncated: bool


def stored_state(raw: str | None) -> str:
    """What ``task_write.lua`` compares: ``absent``, ``invalid`` or the version as text.

    Must agree with the script for every input, or a write could never succeed.
    """
    if raw is None:
        return "absent"
    try:
        doc = json.loads(raw)
    except ValueError:
        return "invalid"
    if isinstance(doc, list):
        return "0"  # cjson decodes an array to a table too, which has no 'version'
    if not isinstance(doc, dict):
        return "invalid"
    version = doc.get("version")
    if version is None:
        return "0"
    if isinstance(version, bool) or not isinstance(version, int | float):
        return "invalid"
    if not (math.isfinite(version) and 0 <= version < _MAX_SAFE_VERSION and float(version).is_integer()):
        return "invalid"
    return str(int(version))


def state_of(task: Task) -> TaskState:
    progress = task_rules.progress(task)
    return TaskState(
        **progress.model_dump(),
        currentStepIndex=task.currentStepIndex,
        steps=list(task.steps),
        createdAt=task.createdAt,
        updatedAt=task.updatedAt,
        version=task.version,
    )


class TaskService:
    def __init__(self, store: Store, settings: TaskSettings, clock: Clock = system_clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._write_script = store.script(_WRITE)

    async def create(self, ns: Namespace, task_id: str, steps: list[str], replace: bool = False) -> TaskState:
        """A new task with every step pending; refuses an existing id unless ``replace``."""
        check_id(task_id, "task_id")
        task_rules.check_steps(steps, self._settings.max_steps, self._settings.max_step_name_bytes)
        key = ns.key(task_key(task_id))
        for attempt in range(MAX_ATTEMPTS):
            if replace:
                expected = stored_state(await self._store.get(key))
                version = int(expected) + 1 if expected.isdigit() else 1
            else:
                expected, version = "absent", 1
            now = self._clock()
            task = task_rules.create(task_id, steps, now, version)
            written, _ = await self._write(ns, task_id, task, expected, now)
            if written:
                return state_of(task)
            if not replace:
                raise ConflictError(
                    f"task {task_id!r} already exists; pass replace=true to start it over, "
                    "or use task_get to see it"
                )
            await _backoff(attempt)
        raise _gave_up(task_id)

    async def advance(self, ns: Namespace, task_id: str) -> TaskState:
        """Complete the current step and start the next (the seed's ``advanceTask``)."""
        return await self._change(ns, task_id, task_rules.advance)

    async def update(self, ns: Namespace, task_id: str, step: str | int, status: str) -> TaskState:
        """Set one step's status (step by name or 0-based index)."""
        checked = task_rules.check_status(status)
        return await self._change(ns, task_id, lambda task, now: task_rules.update(task, step, checked, now))

    async def get(self, ns: Namespace, task_id: str) -> TaskState:
        check_id(task_id, "task_id")
        raw = await self._store.get(ns.key(task_key(task_id)))
        if raw is None:
            raise _not_found(task_id)
        return state_of(_parse(task_id, raw))

    async def list_tasks(self, ns: Namespace, status: str | None = None) -> TaskList:
        """Tasks most recently updated first, optionally only those in one status.

        Two round trips whatever the number of tasks: the index, then one pipeline of MGETs.
        Index entries whose document has expired or is not a task are skipped.
        """
        wanted = None if status is None else task_rules.check_status(status)
        oldest_ms = int(self._clock() * 1000) - self._settings.ttl_s * 1000
        ids: list[str] = await self._store.execute(
            "ZREVRANGEBYSCORE", ns.key(TASKS_INDEX), "+inf", oldest_ms, "LIMIT", 0, LIST_SCAN_MAX
        )
        keys = [ns.key(task_key(task_id)) for task_id in ids]
        chunks = [keys[i : i + _MGET_CHUNK] for i in range(0, len(keys), _MGET_CHUNK)]
        replies = await self._store.batch([["MGET", *chunk] for chunk in chunks]) if chunks else []
        raws: list[str | None] = [raw for reply in replies for raw in reply]
        tasks: list[TaskSummary] = []
        truncated = len(ids) >= LIST_SCAN_MAX
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            try:
                task = _parse(task_id, raw)
            except ConflictError:
                continue
            if wanted is not None and task.status != wanted:
                continue
            if len(tasks) == LIST_MAX:
                truncated = True
                break
            tasks.append(TaskSummary(**task_rules.progress(task).model_dump(), updatedAt=task.updatedAt))
        return TaskList(tasks=tasks, truncated=truncated)

    async def _change(self, ns: Namespace, task_id: str, rule: Callable[[Task, float], Task]) -> TaskState:
        """Read, apply ``rule``, compare-and-set; again from the read if another writer won."""
        check_id(task_id, "task_id")
        key = ns.key(task_key(task_id))
        for attempt in range(MAX_ATTEMPTS):
            raw = await self._store.get(key)
            if raw is None:
                raise _not_found(task_id)
            expected = stored_state(raw)
            now = self._clock()
            task = rule(_parse(task_id, raw), now)
            written, found = await self._write(ns, task_id, task, expected, now)
            if written:
                return state_of(task)
            if found == "absent":
                raise _not_found(task_id)  # deleted (or expired) between the read and the write
            await _backoff(attempt)
        raise _gave_up(task_id)

    async def _write(
        self, ns: Namespace, task_id: str, task: Task, expected: str, now: float
    ) -> tuple[bool, str]:
        ttl_s = self._settings.ttl_s
        now_ms = int(now * 1000)
        reply: list[Any] = await self._write_script(
            [ns.key(task_key(task_id)), ns.key(TASKS_INDEX)],
            [
                expected,
                task.model_dump_json(),
                ttl_s,
                now_ms,
                task_id,
                now_ms - ttl_s * 1000 - INDEX_GRACE_MS,
            ],
        )
        return int(reply[0]) == 1, str(reply[1])


def _parse(task_id: str, raw: str) -> Task:
    try:
        task = Task.model_validate_json(raw)
    except ValidationError:
        raise ConflictError(
            f"the document at {task_key(task_id)!r} is not a task (was it written with redis_set?); "
            "start it over with task_create(replace=true)"
        ) from None
    # The key names the task; a raw write could have put another id inside the document.
    return task if task.taskId == task_id else task.model_copy(update={"taskId": task_id})


def _not_found(task_id: str) -> NotFoundError:
    return NotFoundError(f"task {task_id!r} not found (never created, or expired)")


def _gave_up(task_id: str) -> ConflictError:
    return ConflictError(
        f"task {task_id!r} kept changing under this call ({MAX_ATTEMPTS} attempts); try again"
    )


async def _backoff(attempt: int) -> None:
    # Full jitter: concurrent losers spread out instead of colliding again in lockstep.
    await anyio.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))  # noqa: S311
