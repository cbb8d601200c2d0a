"""The seed's eight raw tools. Names, parameters and reply texts are a contract that existing
agent prompts rely on (``../shared/seed/redis-integration.md``): keep them exactly.
"""

from __future__ import annotations

import json
from typing import Any

from coordinatord.context import CallContext
from coordinatord.tools.registry import Param, ToolReply, ToolSpec

GROUP = "kv"

KEY = Param("key", "string", "Key inside this project's namespace, e.g. agent:context:session-1")
KEYS = Param("keys", "string_array", "Keys inside this project's namespace")


async def redis_get(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["key"]
    value = await call.services.kv.get(call.namespace, args["key"])
    return ToolReply.text(value if value is not None else "")


async def redis_set(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["key"]
    await call.services.kv.set(call.namespace, args["key"], args["value"], args["ttl"])
    return ToolReply.text("OK")


async def redis_del(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = ",".join(args["keys"][:5])
    deleted = await call.services.kv.delete(call.namespace, args["keys"])
    return ToolReply.text(f"Deleted {deleted} key(s)")


async def redis_keys(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["pattern"]
    keys, truncated = await call.services.kv.keys(call.namespace, args["pattern"])
    listing = json.dumps(keys, ensure_ascii=False, separators=(",", ":"))  # as the seed shows it
    if not truncated:
        return ToolReply.text(listing)
    # The first block stays a plain JSON array, as the seed promises; the note comes second.
    limit = call.services.kv.keys_result_max
    note = (
        f"Truncated: more than {limit} keys match {args['pattern']!r}; showing {limit} "
        "(limits.keys_result_max). Use a narrower pattern."
    )
    return ToolReply.text(listing, note)


async def redis_exists(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = ",".join(args["keys"][:5])
    return ToolReply.text(str(await call.services.kv.exists(call.namespace, args["keys"])))


async def redis_ttl(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["key"]
    return ToolReply.text(str(await call.services.kv.ttl(call.namespace, args["key"])))


async def redis_expire(call: CallContext, args: dict[str, Any]) -> ToolReply:
    call.log_key = args["key"]
    done = await call.services.kv.expire(call.namespace, args["key"], args["seconds"])
    return ToolReply.text("OK" if done else "Failed")


async def redis_ping(call: CallContext, args: dict[str, Any]) -> ToolReply:
    await call.services.kv.ping()
    return ToolReply.text("PONG")


TOOLS = (
    ToolSpec(
        "redis_get",
        GROUP,
        "Read a value by key from this project's shared store; returns an empty string if the key is absent.",
        (KEY,),
        redis_get,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_set",
        GROUP,
        "Store a string value under a key for other agents and later sessions; every key expires "
        "(ttl in seconds, else the default for its key prefix, e.g. 24 h for agent:context:*).",
        (
            KEY,
            Param("value", "string", "The value to store (usually JSON text)"),
            Param(
                "ttl", "integer", "Time to live in seconds (optional; default by key prefix)", required=False
            ),
        ),
        redis_set,
        idempotent=True,
    ),
    ToolSpec(
        "redis_del",
        GROUP,
        "Delete one or more keys from this project's store; returns how many existed.",
        (KEYS,),
        redis_del,
        destructive=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_keys",
        GROUP,
        "List this project's keys matching a glob pattern (e.g. task:progress:*) as a JSON array; "
        "the list is capped, and a second note says when it was cut.",
        (Param("pattern", "string", "Glob pattern: * ? [abc]", required=False, default="*"),),
        redis_keys,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_exists",
        GROUP,
        "Count how many of the given keys exist in this project's store.",
        (KEYS,),
        redis_exists,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_ttl",
        GROUP,
        "Seconds until a key expires: -2 if it does not exist, -1 if it never expires.",
        (KEY,),
        redis_ttl,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_expire",
        GROUP,
        "Set a new time to live on an existing key; returns OK, or Failed if the key does not exist.",
        (KEY, Param("seconds", "integer", "New time to live in seconds (positive, at most ttl.max_s)")),
        redis_expire,
        idempotent=True,
    ),
    ToolSpec(
        "redis_ping",
        GROUP,
        "Check that the coordination store answers; returns PONG.",
        (),
        redis_ping,
        read_only=True,
        idempotent=True,
        needs_project=False,
    ),
)
