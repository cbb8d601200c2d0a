"""The store over redis-py's asyncio client: redis://, rediss:// (TLS) and unix:// URLs.

Every call is bounded by ``backend.timeout_s`` (retries with backoff included) and maps
redis-py's exceptions onto :mod:`coordinatord.errors`, so a dead backend costs a caller at most
that long and never an exception trace. The pool reconnects by itself when the backend returns.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord import backend_url
from coordinatord.errors import BackendError
from coordinatord.settings import BackendSettings
from coordinatord.store import failures
from coordinatord.store.bounded import bounded_call
from coordinatord.store.interface import Arg, Command, Parse, StoreCommands

T = TypeVar("T")


def build_client(url: str, settings: BackendSettings) -> Redis:
    """A redis-py client with the configured timeouts, retries and TLS options."""
    scheme = urlsplit(url).scheme
    retry = Retry(
        ExponentialBackoff(cap=settings.retry_backoff_cap_s, base=settings.retry_backoff_base_s),
        settings.retries,
        # redis-py wraps socket errors (refused, reset) in its ConnectionError.
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": settings.timeout_s,
        "retry": retry,
        "decode_responses": True,
        # RESP2, as Upstash's REST API answers: one raw reply shape for every backend (see
        # store.interface), and no HELLO round trip per new connection.
        "protocol": 2,
        # Values written by other clients may not be UTF-8; show them rather than fail.
        "encoding_errors": "replace",
        "max_connections": settings.max_connections,
        "timeout": settings.timeout_s,
    }
    if scheme == "rediss":
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = settings.tls_check_hostname
        if settings.tls_ca_file:
            kwargs["ssl_ca_certs"] = str(settings.tls_ca_file)
        if settings.tls_cert_file:
            kwargs["ssl_certfile"] = str(settings.tls_cert_file)
        if settings.tls_key_file:
            kwargs["ssl_keyfile"] = str(settings.tls_key_file)
    # A blocking pool makes a burst of calls queue for a connection instead of failing
    # with "Too many connections"; the queueing is bounded by `timeout`.
    pool = BlockingConnectionPool.from_url(url, **kwargs)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


class RedisStore(StoreCommands):
    """The typed operations (:class:`~coordinatord.store.interface.Store`) on one backend over
    redis-py. The only code that touches redis-py types."""

    def __init__(self, client: Redis, name: str, timeout_s: float, url: str = "") -> None:
        # Raw RESP2 replies, parsed by the shared typed operations: the shapes Upstash gives too.
        client.response_callbacks.clear()
        self._client = client
        self.name = name
        self._timeout_s = timeout_s
        # Only for the URL forms error messages suggest; they never show its password.
        self._url = url
        self._timeout_hint = failures.timeout_hint(url)

    @classmethod
    def from_url(cls, url: str, settings: BackendSettings, name: str | None = None) -> Self:
        return cls(build_client(url, settings), name or backend_url.mask(url), settings.timeout_s, url)

    def _explain(self, exc: BaseException) -> BackendError | None:
        return failures.explain(exc, self.name, self._url)

    async def aclose(self) -> None:
        await self._client.aclose()

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
        # redis-py leaves execute_command untyped.
        raw = await self._call(lambda: self._client.execute_command(*command))  # type: ignore[no-untyped-call]
        return parse(raw)

    async def _many(self, commands: Sequence[Command]) -> list[Any]:
        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return await self._call(run)

    def script(self, source: str) -> StoreScript:
        """A Lua script, run by EVALSHA (loaded on first use and after a server restart)."""
        return StoreScript(self, self._client.register_script(source))


class StoreScript:
    """A Lua script bound to a store; calls are bounded and mapped like every other call."""

    def __init__(self, store: RedisStore, script: AsyncScript) -> None:
        self._store = store
        self._script = script

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        # redis-py's AsyncScript sends EVALSHA and falls back to loading it on NOSCRIPT.
        return await self._store._call(lambda: self._script(keys=list(keys), args=list(args)))
