"""The seam between the services and a backend: the typed operations of :class:`Store`.

Every reply has one shape whatever the backend, because every store gets the same thing from the
wire. RedisStore speaks RESP2 with redis-py's reply callbacks switched off; Upstash's REST API is
RESP2 turned into JSON. Both give *raw RESP2 values*: ``str`` (bulk and status strings), ``int``,
``None`` (nil) and ``list`` of those. Each typed operation below is a command and one parser of its
raw reply, shared by both stores (:class:`StoreCommands`): the shape is made once, in this module,
and cannot drift between backends. No caller guards against two shapes.

A batch (:class:`Batch`) is the same operations queued for one round trip (a non-transactional
pipeline): each queued operation hands back a :class:`Reply` whose ``value`` is set, typed, once
:meth:`Store.run` returns.

Escape hatches, for what no typed operation covers (diagnostics, tests setting up odd states):
:meth:`Store.execute` and :meth:`Batch.raw` give the raw RESP2 value, the same on every backend.
Script replies are raw RESP2 values too (a Lua table is a list, ``false`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
Arg = str | int | float
"""A command argument; floats go by ``repr`` (exact, and ``inf``), as redis-py sends them."""
Bound = int | float | str
"""A sorted-set score bound: a number, ``"-inf"``/``"+inf"``, or ``"(123"`` for an open bound."""
Command = tuple[Arg, ...]
Parse = Callable[[Any], T]
ScoredMembers = list[tuple[str, float]]

__all__ = ["Arg", "Batch", "Bound", "Reply", "ScoredMembers", "Script", "Store", "StoreCommands"]


# --- parsers: a raw RESP2 value to the operation's type ------------------------------------------


def _raw(reply: Any) -> Any:
    return reply


def _optional_text(reply: Any) -> str | None:
    # Already a str or None on both backends (replies are decoded as UTF-8 with replacement).
    return reply  # type: ignore[no-any-return]


def _text(reply: Any) -> str:
    return "" if reply is None else str(reply)


def _texts(reply: Any) -> list[str]:
    return [str(item) for item in reply]


def _optional_texts(reply: Any) -> list[str | None]:
    return list(reply)


def _int(reply: Any) -> int:
    return int(reply)


def _flag(reply: Any) -> bool:
    return bool(reply == 1)


def _ok(reply: Any) -> bool:
    # SET answers OK, or nil when NX/XX kept it from writing.
    return bool(reply == "OK")


def _optional_float(reply: Any) -> float | None:
    return None if reply is None else float(reply)


def _optional_floats(reply: Any) -> list[float | None]:
    return [None if score is None else float(score) for score in reply]


def _scored(reply: Any) -> ScoredMembers:
    # WITHSCORES in RESP2: member, score, member, score, ...
    items = iter(reply)
    return [(str(member), float(score)) for member, score in zip(items, items, strict=True)]


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    items = iter(flat)
    return {str(name): str(value) for name, value in zip(items, items, strict=True)}


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    return [(str(entry_id), _fields(fields)) for entry_id, fields in reply or []]


def _stream_read(reply: Any) -> list[tuple[str, dict[str, str]]]:
    # XREAD of one stream: nil when nothing is new, else [[stream, entries]].
    return _entries(reply[0][1]) if reply else []


def _scan_page(reply: Any) -> tuple[str, list[str]]:
    return str(reply[0]), _texts(reply[1])


def _zscan_page(reply: Any) -> tuple[str, ScoredMembers]:
    return str(reply[0]), _scored(reply[1])


def _time(reply: Any) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def _ping(reply: Any) -> bool:
    return bool(reply == "PONG")


# --- commands that take some building ------------------------------------------------------------


def _set(key: str, value: str, ttl_s: int, only_if_absent: bool) -> Command:
    return ("SET", key, value, "EX", ttl_s, "NX") if only_if_absent else ("SET", key, value, "EX", ttl_s)


def _zrange(key: str, start: int, stop: int, rev: bool, scores: bool) -> Command:
    command: Command = ("ZREVRANGE" if rev else "ZRANGE", key, start, stop)
    return (*command, "WITHSCORES") if scores else command


def _zrange_by_score(
    key: str, low: Bound, high: Bound, rev: bool, offset: int, count: int | None, scores: bool
) -> Command:
    # ZREVRANGEBYSCORE takes its bounds high first; callers always say (low, high).
    command: Command = ("ZREVRANGEBYSCORE", key, high, low) if rev else ("ZRANGEBYSCORE", key, low, high)
    if scores:
        command = (*command, "WITHSCORES")
    if count is not None:
        command = (*command, "LIMIT", offset, count)
    return command


# --- the batch -----------------------------------------------------------------------------------


class Reply(Generic[T]):
    """The reply of one queued operation; ``value`` is there once the batch has run."""

    __slots__ = ("_parse", "_value")

    def __init__(self, parse: Parse[T]) -> None:
        self._parse = parse

    @property
    def value(self) -> T:
        try:
            return self._value
        except AttributeError:
            raise RuntimeError("the batch this reply belongs to has not run yet") from None

    def _resolve(self, raw: Any) -> None:
        self._value = self._parse(raw)


class Batch:
    """Operations queued for one round trip (:meth:`Store.run`): a non-transactional pipeline,
    so other clients' commands may run between them. A refused command fails the whole run."""

    __slots__ = ("_commands", "_replies")

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._replies: list[Reply[Any]] = []

    def __len__(self) -> int:
        return len(self._commands)

    @property
    def commands(self) -> Sequence[Command]:
        return self._commands

    def resolve(self, raws: Sequence[Any]) -> None:
        """Give each queued operation its raw reply (the store calls this, in order)."""
        for reply, raw in zip(self._replies, raws, strict=True):
            reply._resolve(raw)

    def _add(self, command: Command, parse: Parse[T]) -> Reply[T]:
        reply = Reply(parse)
        self._commands.append(command)
        self._replies.append(reply)
        return reply

    def raw(self, *command: Arg) -> Reply[Any]:
        """Any command; its raw RESP2 value (the same on every backend)."""
        return self._add(command, _raw)

    def get(self, key: str) -> Reply[str | None]:
        return self._add(("GET", key), _optional_text)

    def mget(self, keys: Sequence[str]) -> Reply[list[str | None]]:
        return self._add(("MGET", *keys), _optional_texts)

    def getrange(self, key: str, start: int, end: int) -> Reply[str]:
        return self._add(("GETRANGE", key, start, end), _text)

    def set(self, key: str, value: str, ttl_s: int, *, only_if_absent: bool = False) -> Reply[bool]:
        return self._add(_set(key, value, ttl_s, only_if_absent), _ok)

    def delete(self, keys: Sequence[str]) -> Reply[int]:
        return self._add(("DEL", *keys), _int)

    def ttl(self, key: str) -> Reply[int]:
        return self._add(("TTL", key), _int)

    def pttl(self, key: str) -> Reply[int]:
        return self._add(("PTTL", key), _int)

    def expire(self, key: str, seconds: int) -> Reply[bool]:
        return self._add(("EXPIRE", key, seconds), _flag)

    def llen(self, key: str) -> Reply[int]:
        return self._add(("LLEN", key), _int)

    def hset(self, key: str, field: str, value: str) -> Reply[int]:
        return self._add(("HSET", key, field, value), _int)

    def zcount(self, key: str, low: Bound, high: Bound) -> Reply[int]:
        return self._add(("ZCOUNT", key, low, high), _int)

    def zmscore(self, key: str, members: Sequence[str]) -> Reply[list[float | None]]:
        return self._add(("ZMSCORE", key, *members), _optional_floats)

    def zrem(self, key: str, members: Sequence[str]) -> Reply[int]:
        return self._add(("ZREM", key, *members), _int)

    def zrange_with_scores(
        self, key: str, start: int, stop: int, *, rev: bool = False
    ) -> Reply[ScoredMembers]:
        return self._add(_zrange(key, start, stop, rev, scores=True), _scored)

    def zrange_by_score(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> Reply[list[str]]:
        return self._add(_zrange_by_score(key, low, high, rev, offset, count, scores=False), _texts)

    def zrange_by_score_with_scores(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> Reply[ScoredMembers]:
        return self._add(_zrange_by_score(key, low, high, rev, offset, count, scores=True), _scored)

    def time(self) -> Reply[tuple[int, int]]:
        return self._add(("TIME",), _time)


# --- what a store is -----------------------------------------------------------------------------


class Script(Protocol):
    """A Lua script bound to a store: EVALSHA, loading the source when the server lacks it."""

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The script's reply as a raw RESP2 value."""
        ...


class Store(Protocol):
    """What services get: typed operations, one reply shape on every backend (see the module)."""

    name: str

    async def aclose(self) -> None: ...
    async def ping(self) -> bool: ...
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, ttl_s: int, *, only_if_absent: bool = False) -> bool: ...
    async def mget(self, keys: Sequence[str]) -> list[str | None]: ...
    async def delete(self, keys: Sequence[str]) -> int: ...
    async def unlink(self, keys: Sequence[str]) -> int: ...
    async def exists(self, keys: Sequence[str]) -> int: ...
    async def ttl(self, key: str) -> int: ...
    async def pttl(self, key: str) -> int: ...
    async def expire(self, key: str, seconds: int) -> bool: ...
    async def scan(self, match: str, limit: int) -> tuple[list[str], bool]: ...
    async def scan_page(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]: ...
    async def hgetall(self, key: str) -> dict[str, str]: ...
    async def hdel(self, key: str, fields: Sequence[str]) -> int: ...
    async def smembers(self, key: str) -> frozenset[str]: ...
    async def zcard(self, key: str) -> int: ...
    async def zscore(self, key: str, member: str) -> float | None: ...
    async def zrange(self, key: str, start: int, stop: int, *, rev: bool = False) -> list[str]: ...
    async def zrange_with_scores(
        self, key: str, start: int, stop: int, *, rev: bool = False
    ) -> ScoredMembers: ...
    async def zrange_by_score(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> list[str]: ...
    async def zrange_by_score_with_scores(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> ScoredMembers: ...
    async def zscan(self, key: str, cursor: str, count: int) -> tuple[str, ScoredMembers]: ...
    async def xrevrange(
        self, key: str, high: str, low: str, count: int
    ) -> list[tuple[str, dict[str, str]]]: ...
    async def xread(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, str]]]: ...
    async def time(self) -> tuple[int, int]: ...
    def script(self, source: str, *, exactly_once: bool = True) -> Script:
        """``source`` bound to this store. Exactly-once (:mod:`coordinatord.store.once`) unless
        ``exactly_once=False``, which only a script that changes nothing, or whose second
        application changes nothing and answers alike, may say (with a comment saying why)."""
        ...

    async def run(self, batch: Batch) -> None: ...
    async def execute(self, *command: Arg) -> Any: ...


class StoreCommands:
    """The typed operations over two primitives a store supplies: one raw command, and raw
    commands in one round trip. Both stores inherit them, so both parse the same way."""

    async def _one(self, command: Command, parse: Parse[T]) -> T:
        raise NotImplementedError

    async def _many(self, commands: Sequence[Command]) -> list[Any]:
        """Raw replies, in order; bounded and mapped onto our errors like any call."""
        raise NotImplementedError

    async def run(self, batch: Batch) -> None:
        """Send the batch in one round trip and set each of its replies (nothing for an empty one)."""
        if batch.commands:
            batch.resolve(await self._many(batch.commands))

    async def execute(self, *command: Arg) -> Any:
        """One command; its raw RESP2 value, the same on every backend (see the module)."""
        return await self._one(command, _raw)

    async def ping(self) -> bool:
        return await self._one(("PING",), _ping)

    async def get(self, key: str) -> str | None:
        return await self._one(("GET", key), _optional_text)

    async def set(self, key: str, value: str, ttl_s: int, *, only_if_absent: bool = False) -> bool:
        """Write with a TTL; whether it was written (``only_if_absent``: SET NX)."""
        return await self._one(_set(key, value, ttl_s, only_if_absent), _ok)

    async def mget(self, keys: Sequence[str]) -> list[str | None]:
        return await self._one(("MGET", *keys), _optional_texts) if keys else []

    async def delete(self, keys: Sequence[str]) -> int:
        return await self._one(("DEL", *keys), _int) if keys else 0

    async def unlink(self, keys: Sequence[str]) -> int:
        """Delete keys, freeing their memory in the background (UNLINK): for large deletions."""
        return await self._one(("UNLINK", *keys), _int) if keys else 0

    async def exists(self, keys: Sequence[str]) -> int:
        return await self._one(("EXISTS", *keys), _int) if keys else 0

    async def ttl(self, key: str) -> int:
        return await self._one(("TTL", key), _int)

    async def pttl(self, key: str) -> int:
        return await self._one(("PTTL", key), _int)

    async def expire(self, key: str, seconds: int) -> bool:
        return await self._one(("EXPIRE", key, seconds), _flag)

    async def scan_page(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]:
        """One SCAN step: the next cursor (``"0"`` when the walk is over) and the keys it found
        (a key may come twice while the table is rehashed). For walks that act on each page."""
        return await self._one(("SCAN", cursor, "MATCH", match, "COUNT", count), _scan_page)

    async def scan(self, match: str, limit: int) -> tuple[list[str], bool]:
        """Keys matching ``match``, at most ``limit`` of them, and whether more were left.

        SCAN, never KEYS: each step is bounded work on the server, so one agent listing a
        large keyspace cannot stall everyone else's calls.
        """
        found: list[str] = []
        seen: set[str] = set()
        cursor = "0"
        while True:
            cursor, keys = await self.scan_page(cursor, match, SCAN_BATCH)
            for key in keys:
                # SCAN may return a key more than once while the table is rehashed.
                if key not in seen:
                    seen.add(key)
                    found.append(key)
            if len(found) > limit:
                return found[:limit], True
            if cursor == "0":
                return found, False

    async def hgetall(self, key: str) -> dict[str, str]:
        return await self._one(("HGETALL", key), _fields)

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        return await self._one(("HDEL", key, *fields), _int) if fields else 0

    async def smembers(self, key: str) -> frozenset[str]:
        return frozenset(await self._one(("SMEMBERS", key), _texts))

    async def zcard(self, key: str) -> int:
        return await self._one(("ZCARD", key), _int)

    async def zscore(self, key: str, member: str) -> float | None:
        return await self._one(("ZSCORE", key, member), _optional_float)

    async def zrange(self, key: str, start: int, stop: int, *, rev: bool = False) -> list[str]:
        return await self._one(_zrange(key, start, stop, rev, scores=False), _texts)

    async def zrange_with_scores(
        self, key: str, start: int, stop: int, *, rev: bool = False
    ) -> ScoredMembers:
        return await self._one(_zrange(key, start, stop, rev, scores=True), _scored)

    async def zrange_by_score(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> list[str]:
        """Members with ``low <= score <= high`` (bounds as in ZRANGEBYSCORE, whatever ``rev``)."""
        return await self._one(_zrange_by_score(key, low, high, rev, offset, count, scores=False), _texts)

    async def zrange_by_score_with_scores(
        self,
        key: str,
        low: Bound,
        high: Bound,
        *,
        rev: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> ScoredMembers:
        return await self._one(_zrange_by_score(key, low, high, rev, offset, count, scores=True), _scored)

    async def zscan(self, key: str, cursor: str, count: int) -> tuple[str, ScoredMembers]:
        """One ZSCAN step: the next cursor (``"0"`` at the end) and ``(member, score)`` pairs."""
        return await self._one(("ZSCAN", key, cursor, "COUNT", count), _zscan_page)

    async def xrevrange(self, key: str, high: str, low: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` stream entries from ``high`` down to ``low``: ``(id, fields)``."""
        return await self._one(("XREVRANGE", key, high, low, "COUNT", count), _entries)

    async def xread(self, key: str, after: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries of one stream after id ``after``; never blocks (not every
        backend has blocking reads)."""
        return await self._one(("XREAD", "COUNT", count, "STREAMS", key, after), _stream_read)

    async def time(self) -> tuple[int, int]:
        """The server's clock: seconds and microseconds (TIME)."""
        return await self._one(("TIME",), _time)


SCAN_BATCH = 1000
