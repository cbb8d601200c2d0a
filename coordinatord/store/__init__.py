"""The connection to the backend: a configured Redis URL, or the embedded Valkey.

Above this package nothing imports redis-py; services speak to :class:`Store` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from coordinatord.errors import BackendError, ConfigError
from coordinatord.settings import Settings
from coordinatord.store.redis import RedisStore

Store = RedisStore

__all__ = ["Store", "open_store"]

log = structlog.get_logger("coordinatord.store")


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """Open the configured backend, starting the embedded Valkey when none is configured."""
    if settings.backend.upstash_url and not settings.backend.url.get_secret_value():
        raise ConfigError(
            "backend.upstash_url (UPSTASH_REDIS_REST_URL) is set, but the Upstash REST backend is not "
            "supported yet; set REDIS_URL to a redis:// or rediss:// URL, or unset it to use the "
            "embedded Valkey"
        )
    if settings.uses_embedded_backend:
        from coordinatord.store.embedded import EmbeddedValkey

        async with EmbeddedValkey(settings.embedded, settings.state_dir) as embedded:
            name = f"embedded valkey-server at {embedded.socket_path}"
            store = RedisStore.from_url(embedded.url, settings.backend, name=name)
            try:
                yield store
            finally:
                await store.aclose()
        return
    if settings.backend.upstash_url:
        log.warning(
            "upstash_ignored",
            reason="the Upstash REST backend is not supported yet; using backend.url (REDIS_URL) instead",
        )
    store = RedisStore.from_url(settings.backend.url.get_secret_value(), settings.backend)
    try:
        try:
            await store.ping()
            log.info("backend_connected", backend=store.name)
        except BackendError as exc:
            # The daemon serves anyway: calls fail fast with a clear message until it returns.
            log.warning("backend_unreachable_at_start", backend=store.name, error=str(exc))
        yield store
    finally:
        await store.aclose()
