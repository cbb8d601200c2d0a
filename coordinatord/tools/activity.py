"""The activity tool: what agents and jobs did in this project lately (never values)."""

from __future__ import annotations

from typing import Any

from coordinatord.context import CallContext
from coordinatord.errors import LimitExceededError
from coordinatord.services.activity import ActivityEvent, ActivityRecent
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "activity"

MAX_LIMIT = 1000
"""Most events one call returns: more would flood the caller's context."""


async def activity_recent(call: CallContext, args: dict[str, Any]) -> ToolReply:
    limit: int = args["limit"]
    if limit > MAX_LIMIT:
        raise LimitExceededError(f"argument 'limit' is {limit}; the most one call returns is {MAX_LIMIT}")
    agent: str | None = args["agent"]
    call.log_key = agent
    activity = call.app.activity
    # Events are written in batches; flushing first makes the caller's own earlier calls visible.
    await activity.flush()
    events = await activity.recent(call.namespace, limit, agent)
    return ToolReply.data(ActivityRecent(events=[ActivityEvent.from_event(e) for e in events]))


TOOLS = (
    ToolSpec(
        "activity_recent",
        GROUP,
        "See what agents (and the daemon's jobs) did in this project lately: which tools they "
        "called on which keys, with outcome and duration, oldest first. Values are never shown.",
        (
            Param(
                "limit",
                "integer",
                f"How many of the newest events to return (at most {MAX_LIMIT})",
                required=False,
                default=50,
                minimum=1,
            ),
            Param("agent", "string", "Only this agent's events", required=False),
        ),
        activity_recent,
        read_only=True,
        idempotent=True,
        output=ActivityRecent,
    ),
)
