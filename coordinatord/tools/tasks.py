"""Task progress tools: multi-step tasks that several agents advance and inspect together."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.task_rules import StepStatus
from coordinatord.services.tasks import OnReady, TaskClaim, TaskList, TaskReady, TaskState
from coordinatord.tools.registry import Integer, ToolArgs, ToolReply, ToolSpec

GROUP = "tasks"

TaskId = Annotated[str, Field(description="e.g. implement-redis-docs")]


class TaskCreateArgs(ToolArgs):
    # Step names are stored text (TaskService.create scans them); labels are names a filter
    # addresses (task_ready's label), so they stay identifiers.
    content: ClassVar[frozenset[str]] = frozenset({"steps"})

    task_id: TaskId
    # Non-empty, unique, at most tasks.max_steps: the service's rules (one is settings-bound).
    steps: list[str] = Field(description="Unique step names, in order")
    replace: bool = Field(False, description="Start an existing task over (its progress is lost)")
    # --- Task graph: all optional, so calls without them behave and reply as before ---
    depends_on: list[str] | None = Field(None, description="Task ids to be completed first")
    labels: list[str] | None = Field(None, description="For task_ready's label filter")
    priority: Integer | None = Field(None, description="-1000 to 1000, higher first (default 0)")


class TaskIdArgs(ToolArgs):
    """The arguments of the tools that take only a task id (advance, get)."""

    task_id: TaskId


class TaskUpdateArgs(ToolArgs):
    task_id: TaskId
    step: str | int = Field(description="Name or 0-based index")
    status: StepStatus = Field(description="")


class TaskListArgs(ToolArgs):
    status: StepStatus | None = Field(None, description="")


class TaskReadyArgs(ToolArgs):
    limit: Integer = Field(10, ge=1, description="")
    label: str | None = Field(None, description="")


def _reporter(call: CallContext) -> OnReady:
    """Records a ``task_ready`` activity event for each task a write made ready."""

    def on_ready(task_ids: list[str]) -> None:
        for task_id in task_ids:
            _event(call, "task_ready", task_id)

    return on_ready


def _event(call: CallContext, name: str, task_id: str) -> None:
    # kind "task": what happened to a task (beside the tool call's own event), for tail.
    call.app.activity.record(call.namespace, kind="task", name=name, agent=call.agent, key=task_id)


async def task_create(call: CallContext, args: TaskCreateArgs) -> ToolReply:
    call.log_key = args.task_id
    state = await call.services.tasks.create(
        call.namespace,
        args.task_id,
        args.steps,
        args.replace,
        depends_on=args.depends_on,
        labels=args.labels,
        priority=args.priority,
        on_ready=_reporter(call),
    )
    return ToolReply.data(state)


async def task_advance(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    state = await call.services.tasks.advance(call.namespace, args.task_id, on_ready=_reporter(call))
    return ToolReply.data(state)


async def task_update(call: CallContext, args: TaskUpdateArgs) -> ToolReply:
    call.log_key = args.task_id
    state = await call.services.tasks.update(
        call.namespace, args.task_id, args.step, args.status, on_ready=_reporter(call)
    )
    return ToolReply.data(state)


async def task_get(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    return ToolReply.data(await call.services.tasks.get(call.namespace, args.task_id))


async def task_list(call: CallContext, args: TaskListArgs) -> ToolReply:
    call.log_key = args.status
    return ToolReply.data(await call.services.tasks.list_tasks(call.namespace, args.status))


async def task_ready(call: CallContext, args: TaskReadyArgs) -> ToolReply:
    call.log_key = args.label
    return ToolReply.data(await call.services.tasks.ready(call.namespace, args.limit, args.label))


async def task_claim(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    claim = await call.services.tasks.claim(call.namespace, args.task_id, call.agent)
    _event(call, "task_claimed", args.task_id)
    return ToolReply.data(claim)


async def task_unclaim(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    claim = await call.services.tasks.unclaim(call.namespace, args.task_id, call.agent)
    _event(call, "task_unclaimed", args.task_id)
    if claim.ready:
        _event(call, "task_ready", args.task_id)
    return ToolReply.data(claim)


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "task_create",
        GROUP,
        "Track a multi-step task that any agent can see and resume; steps start pending. With depends_on it "
        "is ready once those tasks are completed.",
        TaskCreateArgs,
        task_create,
        destructive=True,  # replace=true discards the old task's progress
        output=TaskState,
    ),
    ToolSpec(
        "task_advance",
        GROUP,
        "Complete the task's current step and start the next.",
        TaskIdArgs,
        task_advance,
        output=TaskState,
    ),
    ToolSpec(
        "task_update",
        GROUP,
        "Set one step's status; the task's status and current step follow.",
        TaskUpdateArgs,
        task_update,
        idempotent=False,  # each call moves version and updatedAt on
        output=TaskState,
    ),
    ToolSpec(
        "task_get",
        GROUP,
        "A task's progress: status, percent complete, current step, steps.",
        TaskIdArgs,
        task_get,
        read_only=True,
        idempotent=True,
        output=TaskState,
    ),
    ToolSpec(
        "task_list",
        GROUP,
        "Tasks, most recently updated first.",
        TaskListArgs,
        task_list,
        read_only=True,
        idempotent=True,
        output=TaskList,
    ),
    ToolSpec(
        "task_ready",
        GROUP,
        "Unclaimed tasks with every dependency completed, by priority.",
        TaskReadyArgs,
        task_ready,
        read_only=True,
        idempotent=True,
        output=TaskReady,
    ),
    ToolSpec(
        "task_claim",
        GROUP,
        "Claim a ready task before working on it; exactly one agent wins.",
        TaskIdArgs,
        task_claim,
        idempotent=True,  # claiming a task you hold succeeds again and changes nothing
        output=TaskClaim,
    ),
    ToolSpec(
        "task_unclaim",
        GROUP,
        "Give up your claim on a task.",
        TaskIdArgs,
        task_unclaim,
        output=TaskClaim,
    ),
)
