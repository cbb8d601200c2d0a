"""Task progress tools: multi-step tasks that several agents advance and inspect together."""

from __future__ import annotations

from typing import Any

from coordinatord.context import CallContext
from coordinatord.services.task_rules import STATUSES
from coordinatord.services.tasks import TaskList, TaskState
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "tasks"

TASK_ID = Param("task_id", "string", "Task id: letters, digits, '.', '_' or '-' (e.g. implement-redis-docs)")


async def task_create(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["task_id"]
    state = await call.services.tasks.create(call.namespace, args["task_id"], args["steps"], args["replace"])
    return ToolReply.data(state)


async def task_advance(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["task_id"]
    return ToolReply.data(await call.services.tasks.advance(call.namespace, args["task_id"]))


async def task_update(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["task_id"]
    state = await call.services.tasks.update(call.namespace, args["task_id"], args["step"], args["status"])
    return ToolReply.data(state)


async def task_get(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["task_id"]
    return ToolReply.data(await call.services.tasks.get(call.namespace, args["task_id"]))


async def task_list(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["status"]
    return ToolReply.data(await call.services.tasks.list_tasks(call.namespace, args["status"]))


TOOLS = (
    ToolSpec(
        "task_create",
        GROUP,
        "Start tracking a multi-step task so any agent or later session can see and resume its "
        "progress; all steps start pending (kept 48 h after the last change, by default).",
        (
            TASK_ID,
            Param("steps", "string_array", "Step names in order; unique, at least one"),
            Param(
                "replace",
                "boolean",
                "Start an existing task of this id over (its progress is lost)",
                required=False,
                default=False,
            ),
        ),
        task_create,
        destructive=True,  # replace=true discards the old task's progress
        output=TaskState,
    ),
    ToolSpec(
        "task_advance",
        GROUP,
        "Call when you finish the task's current step: marks it completed and starts the next; "
        "safe when other agents advance the same task at the same time.",
        (TASK_ID,),
        task_advance,
        output=TaskState,
    ),
    ToolSpec(
        "task_update",
        GROUP,
        "Set one step's status (e.g. blocked while you wait, failed, or completed out of order); "
        "the task's status and current step follow from its steps.",
        (
            TASK_ID,
            Param("step", "string_or_integer", "The step's name, or its 0-based index"),
            Param("status", "string", "The step's new status", choices=STATUSES),
        ),
        task_update,
        idempotent=False,  # each call moves version and updatedAt on
        output=TaskState,
    ),
    ToolSpec(
        "task_get",
        GROUP,
        "Check a task's progress before resuming or coordinating on it: status, percent "
        "complete, current step and every step's status.",
        (TASK_ID,),
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
        (
            Param(
                "status", "string", "Only tasks in this status (optional)", required=False, choices=STATUSES
            ),
        ),
        task_list,
        read_only=True,
        idempotent=True,
        output=TaskList,
    ),
)
