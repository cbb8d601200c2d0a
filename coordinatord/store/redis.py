"""The store over redis-py's asyncio client: redis://, rediss:// (TLS) and unix:// URLs, and the
master of a Sentinel set-up (``backend.mode = "sentinel"``).

Every call is bounded by ``backend.timeout_s`` (retries with backoff included) and maps
redis-py's exceptions onto :mod:`coordinatord.errors`, so a dead backend costs a caller at most
that long and never an exception trace. The pool reconnects by itself when the backend returns.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord import backend_url
from coordinatord.errors import BackendError
from coordinatord.keyspace import write_record_ttl_s
from coordinatord.settings import BackendSettings, sentinel_address
from coordinatord.store import failures
from coordinatord.store.bounded import bounded_call
from coordinatord.store.direct import DirectConnections
from coordinatord.store.interface import Arg, Command, Parse, StoreCommands
from coordinatord.store.scripts import EvalScript

T = TypeVar("T")


def _url_kwargs(url: str, settings: BackendSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "decode_responses": True,
        # RESP2, as Upstash's REST API answers: one raw reply shape for every backend (see
        # store.interface), and no HELLO round trip per new connection.
        "protocol": 2,
        # Values written by other clients may not be UTF-8; show them rather than fail.
        "encoding_errors": "replace",
        "max_connections": settings.max_connections,
    }
    if urlsplit(url).scheme == "rediss":
        kwargs.update(_tls_kwargs(settings))
    return kwargs


def build_client(url: str, settings: BackendSettings) -> Redis:
    """A redis-py client with the configured timeouts, retries and TLS options."""
    kwargs = _url_kwargs(url, settings)
    kwargs.update(socket_timeout=settings.timeout_s, retry=_retry(settings), timeout=settings.timeout_s)
    # A blocking pool makes a burst of calls queue for a connection instead of failing
    # with "Too many connections"; the queueing is bounded by `timeout`.
    pool = BlockingConnectionPool.from_url(url, **kwargs)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def build_direct_pool(url: str, settings: BackendSettings) -> ConnectionPool:
    """The pool of :class:`~coordinatord.store.direct.DirectConnections`: the client's URL and
    options, without a socket timeout (the store's bound on the whole call is the timeout)."""
    return ConnectionPool.from_url(url, **_url_kwargs(url, settings))


def build_sentinel_client(settings: BackendSettings) -> tuple[Redis, Sentinel]:
    """A client of the master the sentinels name for ``backend.sentinel_master``.

    Its connections ask the sentinels for the master's address whenever they connect, so after
    a failover the next connection reaches the new master; a connection still open to a demoted
    master gets READONLY, which redis-py turns into a connection error (retried, reconnecting).
    ``backend.url``, when set, gives only the master's password, user, database and TLS (its host
    and port are not used); ``backend.sentinel_password`` is the sentinels' own password.
    """
    url = settings.url.get_secret_value()
    parts = urlsplit(url) if url else None
    tls = parts is not None and parts.scheme == "rediss"
    common: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": settings.timeout_s,
    }
    if tls:
        common.update(_tls_kwargs(settings))
        common["ssl"] = True
    master: dict[str, Any] = {
        **common,
        "retry": _retry(settings),
        "decode_responses": True,
        "protocol": 2,  # one raw reply shape on every backend (see store.interface)
        "encoding_errors": "replace",
        "max_connections": settings.max_connections,
        "db": backend_url.database(url) if url else 0,
    }
    if parts is not None:
        if parts.username:
            master["username"] = unquote(parts.username)
        if parts.password:
            master["password"] = unquote(parts.password)
        query_password = parse_qs(parts.query).get("password")
        if query_password:
            master["password"] = query_password[-1]
    sentinel_kwargs: dict[str, Any] = dict(common)
    if settings.sentinel_password.get_secret_value():
        sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed since redis 8.2
        [sentinel_address(entry) for entry in settings.sentinels], sentinel_kwargs=sentinel_kwargs, **master
    )
    # The client owns its pool (aclose() closes the master's connections); the sentinels'
    # clients are the Sentinel's, closed with the store.
    return sentinel.master_for(settings.sentinel_master), sentinel


def _retry(settings: BackendSettings) -> Retry:
    return Retry(
        ExponentialBackoff(cap=settings.retry_backoff_cap_s, base=settings.retry_backoff_base_s),
        settings.retries,
        # redis-py wraps socket errors (refused, reset) in its ConnectionError.
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _tls_kwargs(settings: BackendSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": settings.tls_check_hostname,
    }
    if settings.tls_ca_file:
        kwargs["ssl_ca_certs"] = str(settings.tls_ca_file)
    if settings.tls_cert_file:
        kwargs["ssl_certfile"] = str(settings.tls_cert_file)
    if settings.tls_key_file:
        kwargs["ssl_keyfile"] = str(settings.tls_key_file)
    return kwargs


class RedisStore(StoreCommands):
    """The typed operations (:class:`~coordinatord.store.interface.Store`) on one backend over
    redis-py. The only code that touches redis-py types."""

    def __init__(
        self,
        client: Redis,
        name: str,
        timeout_s: float,
        url: str = "",
        topology: str = "single",
        sentinel: Sentinel | None = None,
        direct: DirectConnections | None = None,
    ) -> None:
        """``direct``: connections for single commands and scripts (the hot path); without it
        every command takes redis-py's full path."""
        # Raw RESP2 replies, parsed by the shared typed operations: the shapes Upstash gives too.
        client.response_callbacks.clear()
        self._client = client
        self.name = name
        self._timeout_s = timeout_s
        # Only for the URL forms error messages suggest; they never show its password.
        self._url = url
        self._timeout_hint = failures.timeout_hint(url)
        self._topology = topology
        self._sentinel = sentinel
        self._direct = direct

    @classmethod
    def from_url(cls, url: str, settings: BackendSettings, name: str | None = None) -> Self:
        # Half the connections for single commands, the rest (and any overflow) for batches.
        direct = DirectConnections(build_direct_pool(url, settings), max(1, settings.max_connections // 2))
        client = build_client(url, settings)
        return cls(client, name or backend_url.mask(url), settings.timeout_s, url, direct=direct)

    @classmethod
    def from_sentinels(cls, settings: BackendSettings) -> Self:
        """The master of a Sentinel set-up (``backend.mode = "sentinel"``)."""
        name = f"sentinel master {settings.sentinel_master!r} via {','.join(settings.sentinels)}"
        url = settings.url.get_secret_value()
        client, sentinel = build_sentinel_client(settings)
        return cls(client, name, settings.timeout_s, url, topology="sentinel", sentinel=sentinel)

    def _explain(self, exc: BaseException) -> BackendError | None:
        found = failures.explain(exc, self.name, self._url) or failures.explain_failover(exc, self.name)
        if self._topology != "single" and (found is None or found.kind == "refused"):
            return failures.explain_node_down(exc, self.name, self._topology) or found
        return found

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._direct is not None:
            await self._direct.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await bounded_call(
            self.name,
            self._timeout_s,
            operation,
            unreachable=(RedisConnectionError, RedisTimeoutError, OSError),
            refused=(RedisError,),
            explain=self._explain,
            timeout_hint=self._timeout_hint,
        )

    async def _one(self, command: Command, parse: Parse[T]) -> T:
        return parse(await self._call(lambda: self._single(command)))

    async def _single(self, command: Sequence[Arg]) -> Any:
        """One command: on a direct connection when one is free, else (and after a broken
        connection, to reconnect and retry) by redis-py's full path."""
        if self._direct is not None:
            try:
                done, raw = await self._direct.execute(command)
            except (RedisConnectionError, OSError):
                done, raw = False, None  # the full path reconnects, and retries as configured
            if done:
                return raw
        # redis-py leaves execute_command untyped.
        return await self._client.execute_command(*command)  # type: ignore[no-untyped-call]

    async def _many(self, commands: Sequence[Command]) -> list[Any]:
        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return await self._call(run)

    def script(self, source: str, *, exactly_once: bool = True) -> EvalScript:
        """A Lua script (:class:`~coordinatord.store.scripts.EvalScript`), on a direct connection
        like any single command; exactly-once unless told it need not be."""
        ttl = write_record_ttl_s(self._timeout_s) if exactly_once else None
        return EvalScript(source, self._single, self._call, ttl)
