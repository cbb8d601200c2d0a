"""Task progress documents that many agents can update at once without losing a write.

Keys (inside the project namespace):
    ``task:progress:<task_id>``  the document, JSON in the seed's shape plus ``version``
                                 (so ``redis_get`` shows it); TTL ``tasks.ttl_s``, refreshed
                                 on every write
    ``_idx:tasks``               zset task id → ``updatedAt`` (ms), for ``task_list`` without
                                 SCAN; same TTL, refreshed on every write, which also drops
                                 entries whose documents must have expired

Task graph (keys in keyspace.py's "Task graph" section): each task created by
:meth:`TaskService.create` also gets a graph hash (its dependencies, how many are not completed,
priority, labels, claimant), a place in its dependencies' dependents sets, and, while ready
(:mod:`coordinatord.services.task_graph_rules`), an entry in the ready index and in its labels'.
``lua/task_write.lua`` keeps all of it in step with the document in the same script as the
compare-and-set: the write that completes a task makes its dependents ready (and one that
reopens it takes them back out). ``task_claim``/``task_unclaim`` are one script each, so exactly
one of many claimants wins; ``task_ready`` reads the ready index, never every task. A claim
lapses when the heartbeat sweep finds its agent gone (:meth:`TaskService.release_claims_of_gone`).

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
from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.keyspace import (
    AGENTS_ACTIVE,
    AGENTS_GONE,
    AGENTS_INACTIVE,
    TASKS_INDEX,
    TASKS_READY,
    Namespace,
    check_id,
    task_claims_key,
    task_dependents_key,
    task_graph_key,
    task_key,
    tasks_ready_label_key,
)
from coordinatord.services import task_graph_rules, task_rules
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.shared import backoff, lua
from coordinatord.services.task_rules import Step, StepStatus, Task
from coordinatord.settings import TaskSettings
from coordinatord.store import Batch, Store

_GRAPH_COMMON = "task_graph_common"
_WRITE = lua("task_write", after=_GRAPH_COMMON)
_CLAIM = lua("task_claim", after=_GRAPH_COMMON)
_UNCLAIM = lua("task_unclaim", after=_GRAPH_COMMON)
_READY = lua("task_ready", after=_GRAPH_COMMON)
_RELEASE_GONE = lua("task_release_gone", after=_GRAPH_COMMON)

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
the daemons' readings of the backend's clock (:mod:`coordinatord.clock`), each off by up to half
a round trip."""
_MGET_CHUNK = 500
KNOWN_MAX = 4_096
"""Task documents remembered per daemon (see "Speed" above)."""
ABSENT = "absent"
READY_SCAN_FACTOR = 4
"""task_ready reads at most this many index entries per task asked for (stale ones are dropped)."""
GONE_AGENTS_PER_CALL = 100
"""Gone agents whose claims one release script walks."""
SWEEP_INDEX_TTL_S = 3_600 + 86_400
"""TTL of the heartbeat sweep's active index when a claim creates it: agents.forget_after_s plus
services.agents.SWEEP_INDEX_GRACE_S at their defaults (the app passes its own settings')."""


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


class ReadyTask(BaseModel):
    """A task ``task_ready`` offers: ready to claim now."""

    model_config = ConfigDict(frozen=True)

    taskId: str
    priority: int
    labels: list[str]
    dependsOn: list[str]


class TaskReady(BaseModel):
    model_config = ConfigDict(frozen=True)

    tasks: list[ReadyTask]  # highest priority first, then oldest first, then by id


class TaskClaim(BaseModel):
    """What ``task_claim`` and ``task_unclaim`` return."""

    model_config = ConfigDict(frozen=True)

    taskId: str
    claimedBy: str | None  # the claimant now: the caller after a claim, null after an unclaim
    ready: bool  # whether the task is in the ready index now


class ClaimRelease(BaseModel):
    """One claim the heartbeat sweep released because its agent was gone."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    agent: str
    ready: bool


OnReady = Callable[[list[str]], None]
"""Told the ids of the tasks a write made ready (for their activity events)."""


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
    def __init__(
        self,
        store: Store,
        settings: TaskSettings,
        clock: Clock = system_clock,
        *,
        sweep_index_ttl_s: int = SWEEP_INDEX_TTL_S,
        guard: SecretGuard | None = None,
    ) -> None:
        self._store = store
        self._guard = guard or SecretGuard()
        self._settings = settings
        self._clock = clock
        self._sweep_index_ttl_s = sweep_index_ttl_s
        self._write_script = store.script(_WRITE)
        self._claim_script = store.script(_CLAIM)
        self._unclaim_script = store.script(_UNCLAIM)
        # Reads, and drops entries that are no longer ready: dropping them again drops nothing.
        self._ready_script = store.script(_READY, exactly_once=False)
        self._release_gone_script = store.script(_RELEASE_GONE)
        self._known: OrderedDict[str, str] = OrderedDict()

    def _remember(self, key: str, raw: str | None) -> None:
        if raw is None:
            self._known.pop(key, None)
            return
        self._known[key] = raw
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)

    async def create(
        self,
        ns: Namespace,
        task_id: str,
        steps: list[str],
        replace: bool = False,
        *,
        depends_on: list[str] | None = None,
        labels: list[str] | None = None,
        priority: int | None = None,
        on_ready: OnReady | None = None,
    ) -> TaskState:
        """A new task with every step pending; refuses an existing id unless ``replace``.

        ``depends_on`` names existing tasks (an unknown one is refused, and so is one that would
        close a cycle); the task is ready once they are all completed. Replacing gives the task
        these dependencies, labels and priority instead of its old ones, and ends its claim.
        """
        check_id(task_id, "task_id")
        # Scanned first, so the limits and the uniqueness rule judge what will be stored.
        steps = self._guard.texts(steps, "steps")
        if labels is not None:
            labels = self._guard.texts(labels, "labels")
        task_rules.check_steps(steps, self._settings.max_steps, self._settings.max_step_name_bytes)
        settings = self._settings
        deps = task_graph_rules.check_depends_on(task_id, depends_on, settings.max_depends_on)
        label_list = task_graph_rules.check_labels(labels, settings.max_labels)
        rank = task_graph_rules.check_priority(priority)
        key = ns.key(task_key(task_id))
        current = await self._store.get(key) if replace else None
        for attempt in range(MAX_ATTEMPTS):
            version = _stored_version(current) + 1
            now = self._clock()
            task = task_rules.create(task_id, steps, now, version)
            graph: list[str | int] = [
                "create",
                rank,
                task_graph_rules.ready_score(rank, int(now * 1000)),
                task_graph_rules.join(label_list),
                settings.graph_walk_max,
                *deps,
            ]
            written, current = await self._write(
                ns, task_id, task, fingerprint(current), now, graph=graph, on_ready=on_ready
            )
            if written:
                return state_of(task)
            if not replace:
                raise ConflictError(
                    f"task {task_id!r} already exists; pass replace=true to start it over, "
                    "or use task_get to see it"
                )
            await _backoff(attempt)
        raise _gave_up(task_id)

    async def advance(self, ns: Namespace, task_id: str, *, on_ready: OnReady | None = None) -> TaskState:
        """Complete the current step and start the next (the seed's ``advanceTask``)."""
        return await self._change(ns, task_id, task_rules.advance, on_ready)

    async def update(
        self,
        ns: Namespace,
        task_id: str,
        step: str | int,
        status: StepStatus,
        *,
        on_ready: OnReady | None = None,
    ) -> TaskState:
        """Set one step's status (step by name or 0-based index)."""
        return await self._change(
            ns, task_id, lambda task, now: task_rules.update(task, step, status, now), on_ready
        )

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

    # --- The task graph: ready, claim, unclaim, and the sweep's release -----------------------

    async def ready(self, ns: Namespace, limit: int = 10, label: str | None = None) -> TaskReady:
        """Up to ``limit`` ready tasks (of one label, when given), in the ready order: one
        script reading the ready index, whatever the number of tasks."""
        task_graph_rules.check_limit(limit, self._settings.ready_max)
        index = TASKS_READY if label is None else tasks_ready_label_key(task_graph_rules.check_label(label))
        reply: list[Any] = await self._ready_script(
            [ns.key(index)], [ns.key(task_graph_key("")), limit, limit * READY_SCAN_FACTOR + 16]
        )
        tasks = [
            ReadyTask(
                taskId=str(reply[i]),
                priority=int(reply[i + 1]),
                labels=task_graph_rules.split(str(reply[i + 2])),
                dependsOn=task_graph_rules.split(str(reply[i + 3])),
            )
            for i in range(0, len(reply), 4)
        ]
        return TaskReady(tasks=tasks)

    async def claim(self, ns: Namespace, task_id: str, agent: str) -> TaskClaim:
        """Make ``agent`` the claimant of a ready task; exactly one of concurrent callers wins.
        Claiming a task one already holds succeeds again."""
        check_id(task_id, "task_id")
        keys = [
            ns.key(task_graph_key(task_id)),
            ns.key(TASKS_READY),
            ns.key(task_claims_key(agent)),
            *ns.keys([AGENTS_ACTIVE, AGENTS_INACTIVE]),
        ]
        now_ms = int(self._clock() * 1000)
        args: list[str | int] = [
            task_id,
            agent,
            ns.key(tasks_ready_label_key("")),
            self._settings.ttl_s,
            now_ms,
            self._sweep_index_ttl_s,
        ]
        reply: list[Any] = await self._claim_script(keys, args)
        if int(reply[0]) == 1:
            return TaskClaim(taskId=task_id, claimedBy=agent, ready=False)
        reason = str(reply[1])
        if reason == "held":
            raise ConflictError(
                f"task {task_id!r} is claimed by {reply[2]!s}; call task_ready for a task nobody holds"
            )
        if reason == "completed":
            raise ConflictError(f"task {task_id!r} is already completed")
        if reason == "waiting":
            deps = ", ".join(repr(d) for d in task_graph_rules.split(str(reply[3]))[:20])
            raise ConflictError(
                f"task {task_id!r} is not ready: {reply[2]!s} of its dependencies ({deps}) are not "
                "completed yet; call task_ready for a task that is"
            )
        raise _not_in_graph(task_id)

    async def unclaim(self, ns: Namespace, task_id: str, agent: str) -> TaskClaim:
        """Give up ``agent``'s claim; refused unless ``agent`` is the claimant."""
        check_id(task_id, "task_id")
        keys = [ns.key(task_graph_key(task_id)), ns.key(TASKS_READY), ns.key(task_claims_key(agent))]
        args: list[str | int] = [task_id, agent, ns.key(tasks_ready_label_key("")), self._settings.ttl_s]
        reply: list[Any] = await self._unclaim_script(keys, args)
        if int(reply[0]) == 1:
            return TaskClaim(taskId=task_id, claimedBy=None, ready=int(reply[1]) == 1)
        reason = str(reply[1])
        if reason == "unclaimed":
            raise ConflictError(f"task {task_id!r} is not claimed by anyone; there is nothing to unclaim")
        if reason == "held":
            raise ConflictError(
                f"task {task_id!r} is claimed by {reply[2]!s}, not by {agent}; only its claimant can "
                "unclaim it"
            )
        raise _not_in_graph(task_id)

    async def release_claims_of_gone(self, ns: Namespace, agents: Sequence[str]) -> list[ClaimRelease]:
        """Release the claims ``agents`` (found gone by the heartbeat sweep) took before they
        were found gone; each task that can be is ready again. One script call: pass at most
        :data:`GONE_AGENTS_PER_CALL` agents."""
        if len(agents) > GONE_AGENTS_PER_CALL:
            raise ValueError(f"{len(agents)} agents in one call; at most {GONE_AGENTS_PER_CALL}")
        if not agents:
            return []
        names = sorted(agents)
        keys = [ns.key(TASKS_READY), ns.key(AGENTS_GONE), *ns.keys(task_claims_key(a) for a in names)]
        args: list[str | int] = [
            ns.key(task_graph_key("")),
            ns.key(tasks_ready_label_key("")),
            self._settings.ttl_s,
            *names,
        ]
        reply: list[Any] = await self._release_gone_script(keys, args)
        return [
            ClaimRelease(task_id=str(reply[i]), agent=str(reply[i + 1]), ready=int(reply[i + 2]) == 1)
            for i in range(0, len(reply), 3)
        ]

    async def _change(
        self,
        ns: Namespace,
        task_id: str,
        rule: Callable[[Task, float], Task],
        on_ready: OnReady | None = None,
    ) -> TaskState:
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
            written, raw = await self._write(ns, task_id, task, fingerprint(raw), now, on_ready=on_ready)
            if written:
                return state_of(task)
            if not from_memory:
                # Another writer got in between our read and our write: spread out.
                await _backoff(attempt)
            from_memory = False  # a stale memory costs one immediate retry, no more
        raise _gave_up(task_id)

    async def _write(
        self,
        ns: Namespace,
        task_id: str,
        task: Task,
        expected: str,
        now: float,
        *,
        graph: Sequence[str | int] = ("change",),
        on_ready: OnReady | None = None,
    ) -> tuple[bool, str | None]:
        """Compare-and-set; ``(True, new document)`` or ``(False, the document now stored)``.
        ``graph``: ARGV[12..] of ``task_write.lua`` (a create's graph entry, or "change")."""
        ttl_s = self._settings.ttl_s
        now_ms = int(now * 1000)
        document = task.model_dump_json()
        key = ns.key(task_key(task_id))
        keys = [key, ns.key(TASKS_INDEX), ns.key(TASKS_READY), ns.key(task_graph_key(task_id))]
        args: list[str | int] = [
            expected,
            document,
            ttl_s,
            now_ms,
            task_id,
            now_ms - ttl_s * 1000 - INDEX_GRACE_MS,
            "1" if task.status == "completed" else "0",
            *_graph_prefixes(ns),
            *graph,
        ]
        reply: list[Any] = await self._write_script(keys, args)
        if int(reply[0]) == -1:
            raise _refused_dependency(task_id, str(reply[1]), str(reply[2]), list(graph[5:]))
        if int(reply[0]) == 1:
            self._remember(key, document)
            if on_ready is not None and len(reply) > 1:
                on_ready([str(ready) for ready in reply[1:]])
            return True, document
        current = str(reply[1]) if len(reply) > 1 else None
        self._remember(key, current)
        return False, current


def _graph_prefixes(ns: Namespace) -> list[str | int]:
    """ARGV[8..11] of ``task_write.lua``: where the graph keys of any task are (one hash tag)."""
    return [
        ns.key(task_graph_key("")),
        ns.key(task_dependents_key("")),
        ns.key(tasks_ready_label_key("")),
        ns.key(task_claims_key("")),
    ]


def _refused_dependency(task_id: str, reason: str, dep: str, deps: list[str | int]) -> Exception:
    """The error for a create that ``task_write.lua`` refused, naming the argument."""
    argument = f"depends_on[{deps.index(dep)}]" if dep in deps else "depends_on"
    if reason == "unknown":
        return NotFoundError(
            f"argument {argument!r} names task {dep!r}, which does not exist (never created, "
            "created before task dependencies existed, or expired); create it first"
        )
    if reason == "self":
        return InvalidArgumentError(
            f"argument {argument!r} names the task itself; a task cannot depend on itself"
        )
    if reason == "cycle":
        return InvalidArgumentError(
            f"argument {argument!r}: task {dep!r} already depends on {task_id!r} (directly or "
            "through other tasks), so this would make a cycle"
        )
    return LimitExceededError(
        f"argument 'depends_on': checking task {task_id!r}'s new dependencies for a cycle would walk "
        "more than tasks.graph_walk_max tasks that depend on it"
    )


def _not_in_graph(task_id: str) -> NotFoundError:
    return NotFoundError(
        f"task {task_id!r} not found (never created, created before task dependencies existed, or expired)"
    )


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
