"""Session tools: save and resume an agent's working context, keep its conversation history,
archive it to the project folder and bring it back. The logic is in
:mod:`coordinatord.services.sessions`; these only map arguments and results.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.session_rules import Role
from coordinatord.services.sessions import (
    AppendResult,
    EndResult,
    HistoryResult,
    ListResult,
    LoadResult,
    RestoreResult,
    SaveResult,
)
from coordinatord.tools.registry import Integer, NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "sessions"

SessionId = Annotated[str, Field(description="e.g. session-2026-02-13-001")]


class SessionSaveArgs(ToolArgs):
    content: ClassVar[frozenset[str]] = frozenset({"context"})  # SessionService.save scans it

    session_id: SessionId
    context: dict[str, Any] = Field(description="Fields to merge; null removes one")
    # At least 1 is static (the model's); at most sessions.max_ttl_s is the service's.
    ttl: Integer | None = Field(
        None,
        description="Seconds it lives after each write",
        ge=1,
    )


class SessionIdArgs(ToolArgs):
    """The arguments of the tools that take only a session id (load, end)."""

    session_id: SessionId


class SessionAppendArgs(ToolArgs):
    content: ClassVar[frozenset[str]] = frozenset({"message"})  # SessionService.append scans it

    session_id: SessionId
    role: Role = Field(description="")
    message: str = Field(description="What was said, or a summary")


class SessionHistoryArgs(ToolArgs):
    session_id: SessionId
    last: Integer = Field(50, description="How many of the latest turns", ge=1)


class SessionRestoreArgs(ToolArgs):
    session_id: SessionId
    force: bool = Field(False, description="Replace a live session")


async def session_save(call: CallContext, args: SessionSaveArgs) -> ToolReply:
    call.log_key = args.session_id
    result = await call.services.sessions.save(
        call.namespace, args.session_id, args.context, args.ttl, call.agent
    )
    return ToolReply.data(result)


async def session_load(call: CallContext, args: SessionIdArgs) -> ToolReply:
    call.log_key = args.session_id
    return ToolReply.data(await call.services.sessions.load(call.namespace, args.session_id))


async def session_append(call: CallContext, args: SessionAppendArgs) -> ToolReply:
    call.log_key = args.session_id
    result = await call.services.sessions.append(
        call.namespace, args.session_id, args.role, args.message, call.agent
    )
    return ToolReply.data(result)


async def session_history(call: CallContext, args: SessionHistoryArgs) -> ToolReply:
    call.log_key = args.session_id
    result = await call.services.sessions.history(call.namespace, args.session_id, args.last)
    return ToolReply.data(result)


async def session_list(call: CallContext, args: NoArgs) -> ToolReply:
    return ToolReply.data(await call.services.sessions.list_sessions(call.namespace))


async def session_end(call: CallContext, args: SessionIdArgs) -> ToolReply:
    call.log_key = args.session_id
    result = await call.services.sessions.end(
        call.namespace, args.session_id, call.peer.project_root, call.agent
    )
    return ToolReply.data(result)


async def session_restore(call: CallContext, args: SessionRestoreArgs) -> ToolReply:
    call.log_key = args.session_id
    result = await call.services.sessions.restore(
        call.namespace, args.session_id, call.peer.project_root, args.force
    )
    return ToolReply.data(result)


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "session_save",
        GROUP,
        "Save your working context (task, step, pending actions, summary) for a later session or agent; "
        "merges top-level fields, null removes one.",
        SessionSaveArgs,
        session_save,
        title="Save session context",
        output=SaveResult,
    ),
    ToolSpec(
        "session_load",
        GROUP,
        "Load a session's saved context to resume it (found is false if there is none).",
        SessionIdArgs,
        session_load,
        read_only=True,
        idempotent=True,
        title="Load session context",
        output=LoadResult,
    ),
    ToolSpec(
        "session_append",
        GROUP,
        "Add a conversation turn to a session's history; when the session is full, session_end it and start "
        "a new one.",
        SessionAppendArgs,
        session_append,
        title="Append conversation turn",
        output=AppendResult,
    ),
    ToolSpec(
        "session_history",
        GROUP,
        "A session's last turns, oldest first.",
        SessionHistoryArgs,
        session_history,
        read_only=True,
        idempotent=True,
        title="Read conversation history",
        output=HistoryResult,
    ),
    ToolSpec(
        "session_list",
        GROUP,
        "Live sessions, most recently active first.",
        NoArgs,
        session_list,
        read_only=True,
        idempotent=True,
        title="List sessions",
        output=ListResult,
    ),
    ToolSpec(
        "session_end",
        GROUP,
        "Archive a session (context and history) to a JSON file in the project and remove it from the store.",
        SessionIdArgs,
        session_end,
        destructive=True,
        title="End and archive session",
        output=EndResult,
    ),
    ToolSpec(
        "session_restore",
        GROUP,
        "Bring an ended session back from its archive.",
        SessionRestoreArgs,
        session_restore,
        destructive=True,
        title="Restore archived session",
        output=RestoreResult,
    ),
)
