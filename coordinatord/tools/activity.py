"""The activity tool: what agents and jobs did in this project lately (never values)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.errors import LimitExceededError
from coordinatord.services.activity import ActivityEvent, ActivityRecent
from coordinatord.tools.registry import Integer, ToolArgs, ToolReply, ToolSpec

GROUP = "activity"

MAX_LIMIT = 1000
"""Most events one call returns: more would flood the caller's context."""


class ActivityRecentArgs(ToolArgs):
    # The ceiling stays in the handler, not a le= here: it is a LimitExceededError with its own
    # text, and the listed schema has never shown a maximum.
    limit: Integer = Field(50, description="How many of the newest", ge=1)
    agent: str | None = Field(None, description="Only this agent's")


async def activity_recent(call: CallContext, args: ActivityRecentArgs) -> ToolReply:
    limit = args.limit
    if limit > MAX_LIMIT:
        raise LimitExceededError(f"argument 'limit' is {limit}; the most one call returns is {MAX_LIMIT}")
    agent = args.agent
    call.log_key = agent
    activity = call.app.activity
    # Events are written in batches; flushing first makes the caller's own earlier calls visible.
    await activity.flush()
    events = await activity.recent(call.namespace, limit, agent)
    return ToolReply.data(ActivityRecent(events=[ActivityEvent.from_event(e) for e in events]))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "activity_recent",
        GROUP,
        "Recent tool calls and job actions in this project (who, which key, outcome), oldest first; never "
        "values.",
        ActivityRecentArgs,
        activity_recent,
        read_only=True,
        idempotent=True,
        output=ActivityRecent,
    ),
)
