"""Task progress tools: multi-step tasks that several agents advance and inspect together."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.task_rules import StepStatus
from coordinatord.services.tasks import TaskList, TaskState
from coordinatord.tools.registry import ToolArgs, ToolReply, ToolSpec

GROUP = "tasks"

TaskId = Annotated[
    str, Field(description="Task id: letters, digits, '.', '_' or '-' (e.g. implement-redis-docs)")
]


class TaskCreateArgs(ToolArgs):
    task_id: TaskId
    # Non-empty, unique, at most tasks.max_steps: the service's rules (one is settings-bound).
    steps: list[str] = Field(description="Step names in order; unique, at least one")
    replace: bool = Field(False, description="Start an existing task of this id over (its progress is lost)")


class TaskIdArgs(ToolArgs):
    """The arguments of the tools that take only a task id (advance, get)."""

    task_id: TaskId


class TaskUpdateArgs(ToolArgs):
    task_id: TaskId
    step: str | int = Field(description="The step's name, or its 0-based index")
    status: StepStatus = Field(description="The step's new status")


class TaskListArgs(ToolArgs):
    status: StepStatus | None = Field(None, description="Only tasks in this status (optional)")


async def task_create(call: CallContext, args: TaskCreateArgs) -> ToolReply:
    call.log_key = args.task_id
    state = await call.services.tasks.create(call.namespace, args.task_id, args.steps, args.replace)
    return ToolReply.data(state)


async def task_advance(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    return ToolReply.data(await call.services.tasks.advance(call.namespace, args.task_id))


async def task_update(call: CallContext, args: TaskUpdateArgs) -> ToolReply:
    call.log_key = args.task_id
    state = await call.services.tasks.update(call.namespace, args.task_id, args.step, args.status)
    return ToolReply.data(state)


async def task_get(call: CallContext, args: TaskIdArgs) -> ToolReply:
    call.log_key = args.task_id
    return ToolReply.data(await call.services.tasks.get(call.namespace, args.task_id))


async def task_list(call: CallContext, args: TaskListArgs) -> ToolReply:
    call.log_key = args.status
    return ToolReply.data(await call.services.tasks.list_tasks(call.namespace, args.status))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "task_create",
        GROUP,
        "Start tracking a multi-step task so any agent or later session can see and resume its "
        "progress; all steps start pending (kept 48 h after the last change, by default).",
        TaskCreateArgs,
        task_create,
        destructive=True,  # replace=true discards the old task's progress
        output=TaskState,
    ),
    ToolSpec(
        "task_advance",
        GROUP,
        "Call when you finish the task's current step: marks it completed and starts the next; "
        "safe when other agents advance the same task at the same time.",
        TaskIdArgs,
        task_advance,
        output=TaskState,
    ),
    ToolSpec(
        "task_update",
        GROUP,
        "Set one step's status (e.g. blocked while you wait, failed, or completed out of order); "
        "the task's status and current step follow from its steps.",
        TaskUpdateArgs,
        task_update,
        idempotent=False,  # each call moves version and updatedAt on
        output=TaskState,
    ),
    ToolSpec(
        "task_get",
        GROUP,
        "Check a task's progress before resuming or coordinating on it: status, percent "
        "complete, current step and every step's status.",
        TaskIdArgs,
        task_get,
        read_only=True,
        idempotent=True,
        output=TaskState,
    ),
    ToolSpec(
        "task_list",
        GROUP,
        "See which tasks exist in this project and how far each has got, most recently "
        "updated first; optionally only those in one status.",
        TaskListArgs,
        task_list,
        read_only=True,
        idempotent=True,
        output=TaskList,
    ),
)
