"""A Lua script on a redis-py backend (one server, a Sentinel master, a Cluster): EVALSHA, and
EVAL of the source when the server lacks the script (first use, a restart, a node a failover
promoted). EVAL caches it there too, so the next EVALSHA finds it; no SCRIPT LOAD, which on a
Cluster would have to reach every master and fails while one is down."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from coordinatord.store.interface import Arg

Single = Callable[[Sequence[Arg]], Awaitable[Any]]
"""Send one command (routed by its keys) and give its raw reply."""
Bounded = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""The store's rule for a call: bounded in time, errors in our terms."""


class EvalScript:
    """One script bound to a store's ``single`` command and its ``bounded`` call."""

    def __init__(self, source: str, single: Single, bounded: Bounded) -> None:
        self._source = source
        self._single = single
        self._bounded = bounded
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        async def run() -> Any:
            try:
                return await self._single(("EVALSHA", self.sha, len(keys), *keys, *args))
            except NoScriptError:
                return await self._single(("EVAL", self._source, len(keys), *keys, *args))

        return await self._bounded(run)
