"""Lock tools: exclusive, leased, fenced locks on shared resources (see services/locks.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.locks import (
    LockAcquireResult,
    LockListResult,
    LockReleaseResult,
    LockRenewResult,
)
from coordinatord.tools.registry import Integer, NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "locks"

# The static bounds (a lease of at least 1 s, a wait of 0 ms or more) are the models'; the
# configured ceilings (locks.max_ttl_s, locks.max_wait_ms) are the service's.
Resource = Annotated[str, Field(description="Any name agents agree on, e.g. src/app.py")]
Token = Annotated[str, Field(description="From lock_acquire")]


class LockAcquireArgs(ToolArgs):
    resource: Resource
    ttl: Integer | None = Field(
        None,
        description="Lease in seconds",
        ge=1,
    )
    wait_ms: Integer = Field(
        0,
        description="How long to wait for the holder",
        ge=0,
    )


class LockReleaseArgs(ToolArgs):
    resource: Resource
    token: Token


class LockRenewArgs(ToolArgs):
    resource: Resource
    token: Token
    ttl: Integer = Field(description="New lease in seconds", ge=1)


async def lock_acquire(call: CallContext, args: LockAcquireArgs) -> ToolReply:
    call.log_key = args.resource
    result = await call.services.locks.acquire(
        call.namespace, call.agent, args.resource, args.ttl, args.wait_ms
    )
    return ToolReply.data(result)


async def lock_release(call: CallContext, args: LockReleaseArgs) -> ToolReply:
    call.log_key = args.resource
    return ToolReply.data(await call.services.locks.release(call.namespace, args.resource, args.token))


async def lock_renew(call: CallContext, args: LockRenewArgs) -> ToolReply:
    call.log_key = args.resource
    result = await call.services.locks.renew(call.namespace, args.resource, args.token, args.ttl)
    return ToolReply.data(result)


async def lock_list(call: CallContext, args: NoArgs) -> ToolReply:
    return ToolReply.data(await call.services.locks.list(call.namespace))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "lock_acquire",
        GROUP,
        "Lease a resource exclusively before changing it; returns a token and a fencing number.",
        LockAcquireArgs,
        lock_acquire,
        output=LockAcquireResult,
    ),
    ToolSpec(
        "lock_release",
        GROUP,
        "Release a lock you hold.",
        LockReleaseArgs,
        lock_release,
        idempotent=True,
        output=LockReleaseResult,
    ),
    ToolSpec(
        "lock_renew",
        GROUP,
        "Extend a lock you hold; renewed=false means you lost it and must stop.",
        LockRenewArgs,
        lock_renew,
        idempotent=True,
        output=LockRenewResult,
    ),
    ToolSpec(
        "lock_list",
        GROUP,
        "Locks held now: holder, fencing, seconds left.",
        NoArgs,
        lock_list,
        read_only=True,
        idempotent=True,
        output=LockListResult,
    ),
)
