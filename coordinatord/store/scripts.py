"""A Lua script on a redis-py backend (one server, a Sentinel master, a Cluster): EVALSHA, and
EVAL of the source when the server lacks the script (first use, a restart, a node a failover
promoted). EVAL caches it there too, so the next EVALSHA finds it; no SCRIPT LOAD, which on a
Cluster would have to reach every master and fails while one is down.

A script that changes state is exactly-once (:mod:`coordinatord.store.once`): each invocation
gets its write record before its first send, so the EVAL after a NOSCRIPT and every resend by
redis-py or the store carry the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from coordinatord.store.interface import Arg
from coordinatord.store.once import exactly_once_source, with_write_record

Single = Callable[[Sequence[Arg]], Awaitable[Any]]
"""Send one command (routed by its keys) and give its raw reply."""
Bounded = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""The store's rule for a call: bounded in time, errors in our terms."""


class EvalScript:
    """One script bound to a store's ``single`` command and its ``bounded`` call; with
    ``record_ttl_s``, exactly-once (its writes' records live that long), else sent as it is."""

    def __init__(
        self, source: str, single: Single, bounded: Bounded, record_ttl_s: int | None = None
    ) -> None:
        self._source = source if record_ttl_s is None else exactly_once_source(source)
        self._single = single
        self._bounded = bounded
        self._record_ttl_s = record_ttl_s
        self.sha = hashlib.sha1(self._source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if self._record_ttl_s is not None:
            keys, args = with_write_record(keys, args, self._record_ttl_s)

        async def run() -> Any:
            try:
                return await self._single(("EVALSHA", self.sha, len(keys), *keys, *args))
            except NoScriptError:
                return await self._single(("EVAL", self._source, len(keys), *keys, *args))

        return await self._bounded(run)
