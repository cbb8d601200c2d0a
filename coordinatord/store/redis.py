"""The store over redis-py's asyncio client: redis://, rediss:// (TLS) and unix:// URLs.

Every call is bounded by ``backend.timeout_s`` (retries with backoff included) and maps
redis-py's exceptions onto :mod:`coordinatord.errors`, so a dead backend costs a caller at most
that long and never an exception trace. The pool reconnects by itself when the backend returns.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord.errors import BackendError
from coordinatord.settings import BackendSettings, mask_url
from coordinatord.store import failures
from coordinatord.store.bounded import bounded_call

T = TypeVar("T")

SCAN_BATCH = 1000


def describe_url(url: str) -> str:
    """How a backend is named in messages: its URL, password masked."""
    return mask_url(url)


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


class RedisStore:
    """Async operations on one backend. The only code that touches redis-py types."""

    def __init__(self, client: Redis, name: str, timeout_s: float, url: str = "") -> None:
        self._client = client
        self.name = name
        self._timeout_s = timeout_s
        # Only for the URL forms error messages suggest; they never show its password.
        self._url = url
        self._timeout_hint = failures.timeout_hint(url)

    @classmethod
    def from_url(cls, url: str, settings: BackendSettings, name: str | None = None) -> RedisStore:
        return cls(build_client(url, settings), name or describe_url(url), settings.timeout_s, url)

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

    def script(self, source: str) -> StoreScript:
        """A Lua script, run by EVALSHA (loaded on first use and after a server restart)."""
        return StoreScript(self, self._client.register_script(source))

    async def execute(self, *command: str | int | float) -> Any:
        """One raw command. Services use it for reads the named methods do not cover."""
        # redis-py leaves execute_command untyped.
        return await self._call(lambda: self._client.execute_command(*command))  # type: ignore[no-untyped-call]

    async def batch(self, commands: Sequence[Sequence[str | int | float]]) -> list[Any]:
        """Several commands in one round trip (a non-transactional pipeline)."""

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return await self._call(run)

    async def ping(self) -> bool:
        return bool(await self._call(self._client.ping))

    async def get(self, key: str) -> str | None:
        result = await self._call(lambda: self._client.get(key))
        return None if result is None else _text(result)

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        await self._call(lambda: self._client.set(key, value, ex=ttl_s))

    async def delete(self, keys: list[str]) -> int:
        if not keys:
            return 0
        return int(await self._call(lambda: self._client.delete(*keys)))

    async def exists(self, keys: list[str]) -> int:
        if not keys:
            return 0
        return int(await self._call(lambda: self._client.exists(*keys)))

    async def ttl(self, key: str) -> int:
        return int(await self._call(lambda: self._client.ttl(key)))

    async def expire(self, key: str, seconds: int) -> bool:
        return bool(await self._call(lambda: self._client.expire(key, seconds)))

    async def scan_page(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]:
        """One SCAN step: the next cursor (``"0"`` when the walk is over) and the keys it found
        (a key may come twice while the table is rehashed). For walks that act on each page."""

        async def step() -> tuple[str, list[str]]:
            following, keys = await self._client.scan(cursor=int(cursor), match=match, count=count)
            return str(following), [_text(key) for key in keys]

        return await self._call(step)

    async def unlink(self, keys: list[str]) -> int:
        """Delete keys, freeing their memory in the background (UNLINK): for large deletions."""
        if not keys:
            return 0
        return int(await self._call(lambda: self._client.unlink(*keys)))

    async def scan(self, match: str, limit: int) -> tuple[list[str], bool]:
        """Keys matching ``match``, at most ``limit`` of them, and whether more were left.

        SCAN, never KEYS: each step is bounded work on the server, so one agent listing a
        large keyspace cannot stall everyone else's calls.
        """

        async def walk() -> tuple[list[str], bool]:
            found: list[str] = []
            seen: set[str] = set()
            cursor = 0
            while True:
                cursor, batch = await self._client.scan(cursor=cursor, match=match, count=SCAN_BATCH)
                for key in map(_text, batch):
                    # SCAN may return a key more than once while the table is rehashed.
                    if key not in seen:
                        seen.add(key)
                        found.append(key)
                if len(found) > limit:
                    return found[:limit], True
                if cursor == 0:
                    return found, False

        return await self._call(walk)


def _text(value: bytes | str) -> str:
    # The client decodes responses; this only narrows redis-py's `bytes | str` for the type checker.
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class StoreScript:
    """A Lua script bound to a store; calls are bounded and mapped like every other call."""

    def __init__(self, store: RedisStore, script: AsyncScript) -> None:
        self._store = store
        self._script = script

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        # redis-py's AsyncScript sends EVALSHA and falls back to loading it on NOSCRIPT.
        return await self._store._call(lambda: self._script(keys=list(keys), args=list(args)))
