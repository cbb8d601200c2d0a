"""Task progress documents that many agents can update at once without losing a write.

Keys (inside the project namespace):
    ``task:progress:<task_id>``  the document, JSON in the seed's shape plus ``version``
                                 (so ``redis_get`` shows it); TTL ``tasks.ttl_s``, refreshed
                                 on every write
    ``_idx:tasks``               zset task id → ``updatedAt`` (ms), for ``task_list`` without
                                 SCAN; same TTL, refreshed on every write, which also drops
                                 entries whose documents must have expired

Atomicity: every change is an optimistic compare-and-set. The service takes the document,
applies a pure rule from :mod:`coordinatord.services.task_rules` (which raises ``version``), and
writes the result with ``lua/task_write.lua``, which stores it (and updates the index) only if
the stored document is still exactly the one the change was based on (compared by SHA-1, which
is stricter than comparing ``version``: a raw ``redis_set`` that kept the version is caught
too). If it is not, the script returns the current document and the change is re-applied to
it, up to :data:`MAX_ATTEMPTS` times with a short randomised backoff; so every successful call
is applied to the latest document and no update is ever lost. Creating expects "absent";
replacing expects the document it read.

Speed: the service remembers the last document it wrote or read for each task
(:data:`KNOWN_MAX` of them), so the usual call — this daemon made the last change — is one
round trip instead of a read and a write. A stale memory costs nothing but a retry: the
compare-and-set fails and hands back the current document.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import ConflictError, NotFoundError
from coordinatord.keyspace import TASKS_INDEX, Namespace, check_id, task_key
from coordinatord.services import task_rules
from coordinatord.services.shared import backoff, lua
from coordinatord.services.task_rules import Step, StepStatus, Task
from coordinatord.settings import TaskSettings
from coordinatord.store import Batch, Store

_WRITE = lua("task_write")

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
KNOWN_MAX = 4_096
"""Task documents remembered per daemon (see "Speed" above)."""
ABSENT = "absent"


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


class TaskSummary(task_rules.Progress):
    """One task in a listing: the seed's progress fields and when it last changed."""

    updatedAt: str


class TaskList(BaseModel):
    model_config = ConfigDict(frozen=True)

    tasks: list[TaskSummary]
    truncated: bool


class TaskOverview(BaseModel):
    """What ``coordinatord top`` shows of a project's tasks: how many, and the latest few."""

    model_config = ConfigDict(frozen=True)

    total: int  # index entries not past the TTL (a document deleted by hand still counts)
    tasks: list[TaskSummary]  # the most recently updated first


def fingerprint(raw: str | None) -> str:
    """What ``task_write.lua`` compares: ``absent``, or the SHA-1 of the stored document."""
    if raw is None:
        return ABSENT
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


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
        self._known: OrderedDict[str, str] = OrderedDict()

    def _remember(self, key: str, raw: str | None) -> None:
        if raw is None:
            self._known.pop(key, None)
            return
        self._known[key] = raw
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)

    async def create(self, ns: Namespace, task_id: str, steps: list[str], replace: bool = False) -> TaskState:
        """A new task with every step pending; refuses an existing id unless ``replace``."""
        check_id(task_id, "task_id")
        task_rules.check_steps(steps, self._settings.max_steps, self._settings.max_step_name_bytes)
        key = ns.key(task_key(task_id))
        current = await self._store.get(key) if replace else None
        for attempt in range(MAX_ATTEMPTS):
            version = _stored_version(current) + 1
            now = self._clock()
            task = task_rules.create(task_id, steps, now, version)
            written, current = await self._write(ns, task_id, task, fingerprint(current), now)
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

    async def update(self, ns: Namespace, task_id: str, step: str | int, status: StepStatus) -> TaskState:
        """Set one step's status (step by name or 0-based index)."""
        return await self._change(ns, task_id, lambda task, now: task_rules.update(task, step, status, now))

    async def get(self, ns: Namespace, task_id: str) -> TaskState:
        check_id(task_id, "task_id")
        key = ns.key(task_key(task_id))
        raw = await self._store.get(key)
        self._remember(key, raw)
        if raw is None:
            raise _not_found(task_id)
        return state_of(_parse(task_id, raw))

    async def list_tasks(self, ns: Namespace, status: StepStatus | None = None) -> TaskList:
        """Tasks most recently updated first, optionally only those in one status.

        Two round trips whatever the number of tasks: the index, then one pipeline of MGETs.
        Index entries whose document has expired or is not a task are skipped.
        """
        wanted = status
        oldest_ms = int(self._clock() * 1000) - self._settings.ttl_s * 1000
        ids = await self._store.zrange_by_score(
            ns.key(TASKS_INDEX), oldest_ms, "+inf", rev=True, count=LIST_SCAN_MAX
        )
        keys = [ns.key(task_key(task_id)) for task_id in ids]
        batch = Batch()
        chunks = [batch.mget(keys[i : i + _MGET_CHUNK]) for i in range(0, len(keys), _MGET_CHUNK)]
        await self._store.run(batch)
        raws = [raw for chunk in chunks for raw in chunk.value]
        tasks: list[TaskSummary] = []
        truncated = len(ids) >= LIST_SCAN_MAX
        for task in _readable(ids, raws):
            if wanted is not None and task.status != wanted:
                continue
            if len(tasks) == LIST_MAX:
                truncated = True
                break
            tasks.append(_summary(task))
        return TaskList(tasks=tasks, truncated=truncated)

    async def summary(self, ns: Namespace, limit: int = 10) -> TaskOverview:
        """How many tasks there are and the ``limit`` most recently updated: two round trips,
        whatever the number of tasks (unlike :meth:`list_tasks`, which reads them all). Read only."""
        oldest_ms = int(self._clock() * 1000) - self._settings.ttl_s * 1000
        index = ns.key(TASKS_INDEX)
        batch = Batch()
        count = batch.zcount(index, oldest_ms, "+inf")
        newest = batch.zrange_by_score(index, oldest_ms, "+inf", rev=True, count=limit)
        await self._store.run(batch)
        names = newest.value
        raws = await self._store.mget([ns.key(task_key(name)) for name in names])
        tasks = [_summary(task) for task in _readable(names, raws)]
        return TaskOverview(total=count.value, tasks=tasks)

    async def _change(self, ns: Namespace, task_id: str, rule: Callable[[Task, float], Task]) -> TaskState:
        """Read, apply ``rule``, compare-and-set; again from the read if another writer won."""
        check_id(task_id, "task_id")
        key = ns.key(task_key(task_id))
        raw = self._known.get(key)
        from_memory = raw is not None
        if raw is None:
            raw = await self._store.get(key)
        for attempt in range(MAX_ATTEMPTS):
            if raw is None:
                raise _not_found(task_id)
            now = self._clock()
            task = rule(_parse(task_id, raw), now)
            written, raw = await self._write(ns, task_id, task, fingerprint(raw), now)
            if written:
                return state_of(task)
            if not from_memory:
                # Another writer got in between our read and our write: spread out.
                await _backoff(attempt)
            from_memory = False  # a stale memory costs one immediate retry, no more
        raise _gave_up(task_id)

    async def _write(
        self, ns: Namespace, task_id: str, task: Task, expected: str, now: float
    ) -> tuple[bool, str | None]:
        """Compare-and-set; ``(True, new document)`` or ``(False, the document now stored)``."""
        ttl_s = self._settings.ttl_s
        now_ms = int(now * 1000)
        document = task.model_dump_json()
        key = ns.key(task_key(task_id))
        reply: list[Any] = await self._write_script(
            [key, ns.key(TASKS_INDEX)],
            [expected, document, ttl_s, now_ms, task_id, now_ms - ttl_s * 1000 - INDEX_GRACE_MS],
        )
        if int(reply[0]) == 1:
            self._remember(key, document)
            return True, document
        current = str(reply[1]) if len(reply) > 1 else None
        self._remember(key, current)
        return False, current


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


def _stored_version(raw: str | None) -> int:
    """The version in a stored document; 0 when there is none or the document is not a task."""
    if raw is None:
        return 0
    try:
        return Task.model_validate_json(raw).version
    except ValidationError:
        return 0


def _not_found(task_id: str) -> NotFoundError:
    return NotFoundError(f"task {task_id!r} not found (never created, or expired)")


def _gave_up(task_id: str) -> ConflictError:
    return ConflictError(
        f"task {task_id!r} kept changing under this call ({MAX_ATTEMPTS} attempts); try again"
    )


def _summary(task: Task) -> TaskSummary:
    return TaskSummary(**task_rules.progress(task).model_dump(), updatedAt=task.updatedAt)


def _readable(ids: Sequence[str], raws: Sequence[str | None]) -> Iterator[Task]:
    """The tasks behind ``ids``: those gone since the index was read, or whose document cannot
    be read, left out (a listing must not fail for one bad document)."""
    for task_id, raw in zip(ids, raws, strict=True):
        if raw is None:
            continue
        try:
            yield _parse(task_id, raw)
        except ConflictError:
            continue


async def _backoff(attempt: int) -> None:
    await backoff(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S)
