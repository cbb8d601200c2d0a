"""The store over a Redis Cluster (``backend.mode = "cluster"``), through redis-py's asyncio
cluster client: ``backend.url`` names any one node, the others are discovered.

Why it works with one key layout: every key of a project carries the ``{<project>}`` hash tag
(:mod:`coordinatord.keyspace`), so a project's scripts and multi-key commands (MGET, DEL,
EXISTS, UNLINK) touch one slot and go to its master; the few keys outside a namespace
(``coord:projects``, ``coord:leader:<job>``) are only ever used one at a time.

What the cluster client does not route by itself is routed here:

- keyless commands: PING and TIME go to one node (the client would otherwise ask every node and
  fold the replies into a ``True``); SCAN whose MATCH pattern begins with a hash tag goes to the
  master of that tag's slot (the only node that can hold such keys); SCAN without one walks every
  master in turn, its cursor naming the node (``<host:port>@<cursor>``);
- scripts: EVALSHA to the slot of their keys, and EVAL of the source on NOSCRIPT (a master
  promoted by a failover, or a node added, has an empty script cache: SCRIPT LOAD on every master
  would fail while one is down);
- replies: the client's and every node's reply callbacks are switched off, so replies are the raw
  RESP2 values the typed operations parse (:mod:`coordinatord.store.interface`), as on one server.

Failover: MOVED and ASK are followed by the client; CLUSTERDOWN, TRYAGAIN and a dead node are
retried (``backend.retries``) with the topology read again; what is left when the bound
(``backend.timeout_s``) or the retries run out is a :class:`BackendUnavailableError` saying the
cluster is failing over.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord import backend_url
from coordinatord.errors import BackendError
from coordinatord.keyspace import write_record_ttl_s
from coordinatord.settings import BackendSettings
from coordinatord.store import failures
from coordinatord.store.bounded import bounded_call
from coordinatord.store.interface import Arg, Command, Parse, StoreCommands, _scan_page
from coordinatord.store.scripts import EvalScript

T = TypeVar("T")

ANY_NODE = frozenset({"PING", "TIME"})
"""Keyless commands whose answer is the same from any node."""
INTERNAL = ("COMMAND", "CLUSTER")
"""Commands whose replies the cluster client parses for its own use (reading the topology)."""
_GLOB = frozenset("*?[\\")
# What a keyless command retries on, as the client does for keyed ones.
_RETRIED = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError, RedisClusterException)


def build_cluster(url: str, settings: BackendSettings) -> RedisCluster:
    """A cluster client with the configured timeouts, retries and TLS options."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": settings.timeout_s,
        "retry": Retry(
            ExponentialBackoff(cap=settings.retry_backoff_cap_s, base=settings.retry_backoff_base_s),
            settings.retries,
        ),
        "decode_responses": True,
        "protocol": 2,  # one raw reply shape on every backend (see store.interface)
        "encoding_errors": "replace",
        "max_connections": settings.max_connections,  # per node
        # A MOVED reply patches the one slot it names and nothing more. With redis-py's default
        # (read the whole topology again every 5th MOVED) the re-read closes every connection,
        # the ones other calls are using included, and leaves the client without a default
        # node, which routes the calls starting meanwhile to random nodes: more MOVED replies,
        # a storm. Dead nodes and CLUSTERDOWN still have the topology read again.
        "reinitialize_steps": 0,
    }
    if urlsplit(url).scheme == "rediss":
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = settings.tls_check_hostname
        if settings.tls_ca_file:
            kwargs["ssl_ca_certs"] = str(settings.tls_ca_file)
        if settings.tls_cert_file:
            kwargs["ssl_certfile"] = str(settings.tls_cert_file)
        if settings.tls_key_file:
            kwargs["ssl_keyfile"] = str(settings.tls_key_file)
    return RedisCluster.from_url(url, **kwargs)


def _inside_redis(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in redis-py's own code (not in ours)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and f"{os.sep}redis{os.sep}" in frame.tb_frame.f_code.co_filename


def pattern_slot(match: str) -> int | None:
    """The slot every key matching ``match`` is in, when the pattern's literal beginning holds a
    whole hash tag (``coord:{p}:*``); None when matching keys may be anywhere."""
    literal = match
    for index, char in enumerate(match):
        if char in _GLOB:
            literal = match[:index]
            break
    opening = literal.find("{")
    closing = literal.find("}", opening + 1) if opening >= 0 else -1
    if opening < 0 or closing <= opening + 1:
        return None
    # Every matching key starts with this literal text, so its first {...} is this one.
    return int(key_slot(literal[: closing + 1].encode()))


class ClusterStore(StoreCommands):
    """The typed operations (:class:`~coordinatord.store.interface.Store`) on a Redis Cluster."""

    def __init__(self, client: RedisCluster, name: str, settings: BackendSettings, url: str = "") -> None:
        # Raw RESP2 replies: the client's callbacks (its nodes share this dict) are switched off,
        # but for the COMMAND and CLUSTER replies the client parses for itself when it reads the
        # topology (no service sends those); so are the ones that fold several nodes' replies
        # into one (only ever one node answers here).
        internal = {
            command: parse
            for command, parse in client.response_callbacks.items()
            if str(command).upper().startswith(INTERNAL)
        }
        client.response_callbacks.clear()
        client.response_callbacks.update(internal)
        client.result_callbacks.clear()
        self._client = client
        self.name = name
        self._timeout_s = settings.timeout_s
        self._retries = settings.retries
        self._backoff = ExponentialBackoff(
            cap=settings.retry_backoff_cap_s, base=settings.retry_backoff_base_s
        )
        self._url = url
        self._timeout_hint = failures.timeout_hint(url)

    @classmethod
    def from_url(cls, url: str, settings: BackendSettings) -> Self:
        return cls(build_cluster(url, settings), f"cluster via {backend_url.mask(url)}", settings, url)

    def _explain(self, exc: BaseException) -> BackendError | None:
        found = failures.explain_failover(exc, self.name) or failures.explain(exc, self.name, self._url)
        if found is None or found.kind == "refused":
            return failures.explain_node_down(exc, self.name, "cluster") or found
        return found

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        async def guarded() -> T:
            # redis-py decides where a command goes before it reads a topology it lacks; a
            # command issued then goes to a random node (a MOVED reply each time). Read it first.
            if self._client._initialize:
                await self._client.initialize()
            try:
                return await operation()
            except AttributeError as exc:
                # A connection closed under a call by a topology re-read of another call
                # (after CLUSTERDOWN) fails inside redis-py with this, not a ConnectionError.
                if not _inside_redis(exc):
                    raise
                raise RedisConnectionError(
                    "the connection was closed under the call while the client re-read the cluster's topology"
                ) from exc

        return await bounded_call(
            self.name,
            self._timeout_s,
            guarded,
            unreachable=(RedisConnectionError, RedisTimeoutError, OSError),
            refused=(RedisError, RedisClusterException),
            explain=self._explain,
            timeout_hint=self._timeout_hint,
        )

    async def _on(self, pick: Callable[[], ClusterNode], command: Command) -> Any:
        """``command`` on the node ``pick`` names (asked again on each try, after the topology
        is read again): the client does not retry a command sent to a node it was given."""
        for attempt in range(self._retries + 1):
            try:
                if self._client._initialize:  # a failed call asked for the topology to be read again
                    await self._client.initialize()
                return await self._client.execute_command(*command, target_nodes=pick())
            except _RETRIED:
                if attempt == self._retries:
                    raise
                self._client._initialize = True
                await asyncio.sleep(self._backoff.compute(attempt + 1))
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _one(self, command: Command, parse: Parse[T]) -> T:
        if str(command[0]).upper() in ANY_NODE:
            raw = await self._call(lambda: self._on(self._client.get_random_node, command))
        else:
            raw = await self._call(lambda: self._client.execute_command(*command))
        return parse(raw)

    async def _many(self, commands: Sequence[Command]) -> list[Any]:
        async def run() -> list[Any]:
            # Non-transactional: the client groups the commands by node, sends each group in one
            # round trip, and resends one by one what a MOVED or ASK redirected.
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return await self._call(run)

    async def scan_page(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]:
        """One SCAN step. A pattern inside one hash tag (every namespace pattern) is scanned on
        the master of its slot alone; any other walks every master, one after the other."""
        slot = pattern_slot(match)
        if slot is not None:
            command: Command = ("SCAN", cursor, "MATCH", match, "COUNT", count)
            raw = await self._call(lambda: self._on(lambda: self._owner(slot), command))
            return _scan_page(raw)
        return await self._call(lambda: self._scan_masters(cursor, match, count))

    def _owner(self, slot: int) -> ClusterNode:
        return self._client.nodes_manager.get_node_from_slot(slot)

    async def _scan_masters(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]:
        if self._client._initialize:
            await self._client.initialize()
        masters = sorted(node.name for node in self._client.get_primaries())
        node_name, _, inner = cursor.rpartition("@") if cursor != "0" else (masters[0], "", "0")
        if node_name not in masters:
            raise BackendError(
                f"backend {self.name}: the SCAN cursor names node {node_name}, which is no longer a "
                "master (the cluster failed over during the walk): start the walk again"
            )
        node = self._client.get_node(node_name=node_name)
        assert node is not None
        command: Command = ("SCAN", inner, "MATCH", match, "COUNT", count)
        raw = await self._client.execute_command(*command, target_nodes=node)
        following, keys = _scan_page(raw)
        if following != "0":
            return f"{node_name}@{following}", keys
        later = masters.index(node_name) + 1
        return (f"{masters[later]}@0" if later < len(masters) else "0"), keys

    def script(self, source: str, *, exactly_once: bool = True) -> EvalScript:
        """A Lua script (:class:`~coordinatord.store.scripts.EvalScript`), sent to the master of
        its keys' slot (its write record's too: the same hash tag); exactly-once unless told it
        need not be."""
        ttl = write_record_ttl_s(self._timeout_s) if exactly_once else None
        return EvalScript(source, self._single, self._call, ttl)

    async def _single(self, command: Sequence[Arg]) -> Any:
        return await self._client.execute_command(*command)
