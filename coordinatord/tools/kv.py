"""The seed's eight raw tools. Names, parameters and reply texts are a contract that existing
agent prompts rely on (``../shared/seed/redis-integration.md``): keep them exactly.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.tools.registry import Integer, NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "kv"

# The seed's parameters (names, types, which are required) are part of the contract; their
# descriptions are short because every model pays for them on every turn. The TTL rules
# (positive, at most ttl.max_s) are the keyspace's, which words the seed's error texts.
Key = Annotated[str, Field(description="e.g. agent:context:session-1")]
Keys = Annotated[list[str], Field(description="")]


class RedisGetArgs(ToolArgs):
    key: Key


class RedisSetArgs(ToolArgs):
    content: ClassVar[frozenset[str]] = frozenset({"value"})  # KvService.set scans it

    key: Key
    value: str = Field(description="Usually JSON text")
    ttl: Integer | None = Field(None, description="Seconds; default by key prefix")


class RedisDelArgs(ToolArgs):
    keys: Keys


class RedisKeysArgs(ToolArgs):
    pattern: str = Field("*", description="Glob: * ? [abc]")


class RedisExistsArgs(ToolArgs):
    keys: Keys


class RedisTtlArgs(ToolArgs):
    key: Key


class RedisExpireArgs(ToolArgs):
    key: Key
    seconds: Integer = Field(description="Positive")


async def redis_get(call: CallContext, args: RedisGetArgs) -> ToolReply:
    call.log_key = args.key
    value = await call.services.kv.get(call.namespace, args.key)
    return ToolReply.text(value if value is not None else "")


async def redis_set(call: CallContext, args: RedisSetArgs) -> ToolReply:
    call.log_key = args.key
    await call.services.kv.set(call.namespace, args.key, args.value, args.ttl)
    return ToolReply.text("OK")


async def redis_del(call: CallContext, args: RedisDelArgs) -> ToolReply:
    call.log_key = ",".join(args.keys[:5])
    deleted = await call.services.kv.delete(call.namespace, args.keys)
    return ToolReply.text(f"Deleted {deleted} key(s)")


async def redis_keys(call: CallContext, args: RedisKeysArgs) -> ToolReply:
    call.log_key = args.pattern
    keys, truncated = await call.services.kv.keys(call.namespace, args.pattern)
    listing = json.dumps(keys, ensure_ascii=False, separators=(",", ":"))  # as the seed shows it
    if not truncated:
        return ToolReply.text(listing)
    # The first block stays a plain JSON array, as the seed promises; the note comes second.
    limit = call.services.kv.keys_result_max
    note = (
        f"Truncated: more than {limit} keys match {args.pattern!r}; showing {limit} "
        "(limits.keys_result_max). Use a narrower pattern."
    )
    return ToolReply.text(listing, note)


async def redis_exists(call: CallContext, args: RedisExistsArgs) -> ToolReply:
    call.log_key = ",".join(args.keys[:5])
    return ToolReply.text(str(await call.services.kv.exists(call.namespace, args.keys)))


async def redis_ttl(call: CallContext, args: RedisTtlArgs) -> ToolReply:
    call.log_key = args.key
    return ToolReply.text(str(await call.services.kv.ttl(call.namespace, args.key)))


async def redis_expire(call: CallContext, args: RedisExpireArgs) -> ToolReply:
    call.log_key = args.key
    done = await call.services.kv.expire(call.namespace, args.key, args.seconds)
    return ToolReply.text("OK" if done else "Failed")


async def redis_ping(call: CallContext, args: NoArgs) -> ToolReply:
    await call.services.kv.ping()
    return ToolReply.text("PONG")


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "redis_get",
        GROUP,
        "Get a key's value (an empty string if the key is absent).",
        RedisGetArgs,
        redis_get,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_set",
        GROUP,
        "Store a string value under a key; every key expires (ttl in seconds, else its key prefix's "
        "default).",
        RedisSetArgs,
        redis_set,
        idempotent=True,
    ),
    ToolSpec(
        "redis_del",
        GROUP,
        "Delete keys; returns how many existed.",
        RedisDelArgs,
        redis_del,
        destructive=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_keys",
        GROUP,
        "List keys matching a glob pattern as a JSON array (capped; a second note says when cut).",
        RedisKeysArgs,
        redis_keys,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_exists",
        GROUP,
        "Count how many of the keys exist.",
        RedisExistsArgs,
        redis_exists,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_ttl",
        GROUP,
        "Seconds until a key expires: -2 if it is absent, -1 if it never expires.",
        RedisTtlArgs,
        redis_ttl,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "redis_expire",
        GROUP,
        "Set a new time to live on an existing key: OK, or Failed if it is absent.",
        RedisExpireArgs,
        redis_expire,
        idempotent=True,
    ),
    ToolSpec(
        "redis_ping",
        GROUP,
        "Check that the store answers: PONG.",
        NoArgs,
        redis_ping,
        read_only=True,
        idempotent=True,
        needs_project=False,
    ),
)
