"""Rate-limit tools: a shared sliding-window budget per external service (see services/ratelimits.py)."""

from __future__ import annotations

from typing import Any

from coordinatord.context import CallContext
from coordinatord.services.ratelimits import RateLimitResetResult, RateLimitResult
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "ratelimit"

SERVICE = Param(
    "service", "string", "The rate-limited thing, e.g. firecrawl or github-api (letters, digits, . _ -)"
)
LIMIT = Param("limit", "integer", "Most units allowed in any window_s seconds", minimum=1)
WINDOW = Param("window_s", "integer", "Window length in seconds, e.g. 60 or 86400", minimum=1)


async def ratelimit_hit(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["service"]
    result = await call.services.ratelimits.hit(
        call.namespace, args["service"], args["limit"], args["window_s"], args["cost"]
    )
    return ToolReply.data(result)


async def ratelimit_status(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["service"]
    result = await call.services.ratelimits.status(
        call.namespace, args["service"], args["limit"], args["window_s"]
    )
    return ToolReply.data(result)


async def ratelimit_reset(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["service"]
    return ToolReply.data(await call.services.ratelimits.reset(call.namespace, args["service"]))


TOOLS = (
    ToolSpec(
        "ratelimit_hit",
        GROUP,
        "Call just before each request to a rate-limited external API: counts it against the budget "
        "all agents share and says whether to go ahead (allowed) or wait reset_in_s.",
        (
            SERVICE,
            LIMIT,
            WINDOW,
            Param(
                "cost",
                "integer",
                "Units this request uses (default 1; at most limit)",
                required=False,
                default=1,
                minimum=1,
            ),
        ),
        ratelimit_hit,
        output=RateLimitResult,
    ),
    ToolSpec(
        "ratelimit_status",
        GROUP,
        "Check how much of a shared rate-limit budget is left without using any of it.",
        (SERVICE, LIMIT, WINDOW),
        ratelimit_status,
        read_only=True,
        idempotent=True,
        output=RateLimitResult,
    ),
    ToolSpec(
        "ratelimit_reset",
        GROUP,
        "Forget all recorded usage of a service (every window), e.g. after its quota was raised; "
        "other agents' counts are lost too.",
        (SERVICE,),
        ratelimit_reset,
        destructive=True,
        idempotent=True,
        output=RateLimitResetResult,
    ),
)
