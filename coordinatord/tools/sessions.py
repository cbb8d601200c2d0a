"""Session tools: save and resume an agent's working context, keep its conversation history,
archive it to the project folder and bring it back. The logic is in
:mod:`coordinatord.services.sessions`; these only map arguments and results.
"""

from __future__ import annotations

from typing import Any

from coordinatord.context import CallContext
from coordinatord.services.sessions import (
    ROLES,
    AppendResult,
    EndResult,
    HistoryResult,
    ListResult,
    LoadResult,
    RestoreResult,
    SaveResult,
)
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "sessions"

SESSION_ID = Param(
    "session_id", "string", "Session id: 1-128 letters, digits, '.', '_' or '-', e.g. session-2026-02-13-001"
)


async def session_save(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    result = await call.services.sessions.save(
        call.namespace, args["session_id"], args["context"], args["ttl"], call.agent
    )
    return ToolReply.data(result)


async def session_load(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    return ToolReply.data(await call.services.sessions.load(call.namespace, args["session_id"]))


async def session_append(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    result = await call.services.sessions.append(
        call.namespace, args["session_id"], args["role"], args["message"], call.agent
    )
    return ToolReply.data(result)


async def session_history(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    result = await call.services.sessions.history(call.namespace, args["session_id"], args["last"])
    return ToolReply.data(result)


async def session_list(call: CallContext, args: dict[str, Any]) -> ToolReply:
    return ToolReply.data(await call.services.sessions.list_sessions(call.namespace))


async def session_end(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    result = await call.services.sessions.end(
        call.namespace, args["session_id"], call.peer.project_root, call.agent
    )
    return ToolReply.data(result)


async def session_restore(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["session_id"]
    result = await call.services.sessions.restore(
        call.namespace, args["session_id"], call.peer.project_root, args["force"]
    )
    return ToolReply.data(result)


TOOLS = (
    ToolSpec(
        "session_save",
        GROUP,
        "Save what you are doing (task, step, pending actions, summary) so a later session or another "
        "agent can resume it; merges top-level fields into the saved context, and a field set to null "
        "is removed.",
        (
            SESSION_ID,
            Param("context", "object", "Fields to merge into the saved context; null removes a field"),
            Param(
                "ttl",
                "integer",
                "Seconds the session lives after each write (optional; default 24 h, kept for later writes)",
                required=False,
                minimum=1,
            ),
        ),
        session_save,
        title="Save session context",
        output=SaveResult,
    ),
    ToolSpec(
        "session_load",
        GROUP,
        "Resume a session at the start of your work: returns its saved context, version, number of "
        "turns and expiry (found is false if there is no such session).",
        (SESSION_ID,),
        session_load,
        read_only=True,
        idempotent=True,
        title="Load session context",
        output=LoadResult,
    ),
    ToolSpec(
        "session_append",
        GROUP,
        "Record one conversation turn in a session's history (creating the session if needed); when it "
        "refuses because the session is full, archive it with session_end and start a new one.",
        (
            SESSION_ID,
            Param("role", "string", "Who spoke", choices=ROLES),
            Param("message", "string", "What was said (or a summary of it)"),
        ),
        session_append,
        title="Append conversation turn",
        output=AppendResult,
    ),
    ToolSpec(
        "session_history",
        GROUP,
        "Read the last turns of a session's conversation, oldest first, to catch up on what was said.",
        (
            SESSION_ID,
            Param(
                "last",
                "integer",
                "How many of the latest turns to return",
                required=False,
                default=50,
                minimum=1,
            ),
        ),
        session_history,
        read_only=True,
        idempotent=True,
        title="Read conversation history",
        output=HistoryResult,
    ),
    ToolSpec(
        "session_list",
        GROUP,
        "List this project's live sessions, most recently active first, with expiry and size, to find "
        "one to resume.",
        (),
        session_list,
        read_only=True,
        idempotent=True,
        title="List sessions",
        output=ListResult,
    ),
    ToolSpec(
        "session_end",
        GROUP,
        "Finish a session: archive its context and full history to a JSON file in the project "
        "(.kilocode/sessions/<session_id>.json by default), then remove it from the shared store.",
        (SESSION_ID,),
        session_end,
        destructive=True,
        title="End and archive session",
        output=EndResult,
    ),
    ToolSpec(
        "session_restore",
        GROUP,
        "Bring an ended session back from its archive in the project folder to continue it; refuses "
        "to replace a live session unless force is true.",
        (
            SESSION_ID,
            Param(
                "force",
                "boolean",
                "Replace the session if it is live in the store",
                required=False,
                default=False,
            ),
        ),
        session_restore,
        destructive=True,
        title="Restore archived session",
        output=RestoreResult,
    ),
)
