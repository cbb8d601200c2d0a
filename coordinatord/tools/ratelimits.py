"""Rate-limit tools: a shared sliding-window budget per external service (see services/ratelimits.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.ratelimits import RateLimitResetResult, RateLimitResult
from coordinatord.tools.registry import Integer, ToolArgs, ToolReply, ToolSpec

GROUP = "ratelimit"

# "At least 1" is static and the models'; the ceilings (ratelimits.max_limit, .max_window_s)
# are settings, and cost <= limit relates two arguments: both the service's.
Service = Annotated[str, Field(description="e.g. github-api")]
Limit = Annotated[Integer, Field(description="Units allowed per window", ge=1)]
Window = Annotated[Integer, Field(description="Window in seconds", ge=1)]


class RateLimitHitArgs(ToolArgs):
    service: Service
    limit: Limit
    window_s: Window
    cost: Integer = Field(1, description="Units this request uses", ge=1)


class RateLimitStatusArgs(ToolArgs):
    service: Service
    limit: Limit
    window_s: Window


class RateLimitResetArgs(ToolArgs):
    service: Service


async def ratelimit_hit(call: CallContext, args: RateLimitHitArgs) -> ToolReply:
    call.log_key = args.service
    result = await call.services.ratelimits.hit(
        call.namespace, args.service, args.limit, args.window_s, args.cost
    )
    return ToolReply.data(result)


async def ratelimit_status(call: CallContext, args: RateLimitStatusArgs) -> ToolReply:
    call.log_key = args.service
    result = await call.services.ratelimits.status(call.namespace, args.service, args.limit, args.window_s)
    return ToolReply.data(result)


async def ratelimit_reset(call: CallContext, args: RateLimitResetArgs) -> ToolReply:
    call.log_key = args.service
    return ToolReply.data(await call.services.ratelimits.reset(call.namespace, args.service))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "ratelimit_hit",
        GROUP,
        "Call before each request to a rate-limited API: counts it against the budget all agents share; if "
        "not allowed, wait reset_in_s.",
        RateLimitHitArgs,
        ratelimit_hit,
        output=RateLimitResult,
    ),
    ToolSpec(
        "ratelimit_status",
        GROUP,
        "What is left of a shared rate-limit budget, without using any.",
        RateLimitStatusArgs,
        ratelimit_status,
        read_only=True,
        idempotent=True,
        output=RateLimitResult,
    ),
    ToolSpec(
        "ratelimit_reset",
        GROUP,
        "Forget a service's recorded usage, for every agent.",
        RateLimitResetArgs,
        ratelimit_reset,
        destructive=True,
        idempotent=True,
        output=RateLimitResetResult,
    ),
)
