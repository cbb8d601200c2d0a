"""Lock tools: exclusive, leased, fenced locks on shared resources (see services/locks.py)."""

from __future__ import annotations

from typing import Any

from coordinatord.context import CallContext
from coordinatord.services.locks import (
    LockAcquireResult,
    LockListResult,
    LockReleaseResult,
    LockRenewResult,
)
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "locks"

RESOURCE = Param(
    "resource", "string", "What to lock: any name agents agree on, e.g. src/app.py or db:migrations"
)
TOKEN = Param("token", "string", "The token lock_acquire returned")


async def lock_acquire(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["resource"]
    result = await call.services.locks.acquire(
        call.namespace, call.agent, args["resource"], args["ttl"], args["wait_ms"]
    )
    return ToolReply.data(result)


async def lock_release(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["resource"]
    return ToolReply.data(await call.services.locks.release(call.namespace, args["resource"], args["token"]))


async def lock_renew(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["resource"]
    result = await call.services.locks.renew(call.namespace, args["resource"], args["token"], args["ttl"])
    return ToolReply.data(result)


async def lock_list(call: CallContext, args: dict[str, Any]) -> ToolReply:
    return ToolReply.data(await call.services.locks.list(call.namespace))


TOOLS = (
    ToolSpec(
        "lock_acquire",
        GROUP,
        "Take an exclusive lease on a shared resource (a file, a migration, a port) before changing "
        "it; returns a token for lock_release/lock_renew and a fencing number to attach to your writes.",
        (
            RESOURCE,
            Param(
                "ttl",
                "integer",
                "Lease in seconds (default locks.default_ttl_s, 60; at most locks.max_ttl_s); "
                "the lock frees itself when it ends",
                required=False,
                minimum=1,
            ),
            Param(
                "wait_ms",
                "integer",
                "How long to wait for the current holder to let go, in ms (at most locks.max_wait_ms)",
                required=False,
                default=0,
                minimum=0,
            ),
        ),
        lock_acquire,
        output=LockAcquireResult,
    ),
    ToolSpec(
        "lock_release",
        GROUP,
        "Release a lock you took with lock_acquire as soon as your change is done, so others can proceed.",
        (RESOURCE, TOKEN),
        lock_release,
        idempotent=True,
        output=LockReleaseResult,
    ),
    ToolSpec(
        "lock_renew",
        GROUP,
        "Extend the lease of a lock you hold when your work takes longer than its ttl; "
        "renewed=false means you lost it and must stop.",
        (
            RESOURCE,
            TOKEN,
            Param("ttl", "integer", "New lease in seconds from now (at most locks.max_ttl_s)", minimum=1),
        ),
        lock_renew,
        idempotent=True,
        output=LockRenewResult,
    ),
    ToolSpec(
        "lock_list",
        GROUP,
        "See which resources other agents hold locked right now (holder, fencing, seconds left) "
        "before you plan work on them.",
        (),
        lock_list,
        read_only=True,
        idempotent=True,
        output=LockListResult,
    ),
)
