"""The connection to the backend: Upstash REST, a configured Redis URL, a Redis Cluster, the
master of a Sentinel set-up, or the embedded Valkey.

Selection: ``backend.mode = "cluster"`` is the cluster ``backend.url`` names a node of, and
``"sentinel"`` the master ``backend.sentinels`` name (settings refuse either with Upstash or
without what it needs). In the default ``"single"`` mode, as the seed orders it: Upstash when both
``UPSTASH_REDIS_REST_URL`` and ``UPSTASH_REDIS_REST_TOKEN`` are set (it wins over ``REDIS_URL``);
else ``REDIS_URL``; else the embedded Valkey the daemon starts. An Upstash URL without its token
is a configuration error. The choice is logged once (``backend_selected``, with ``kind``).

Above this package nothing imports redis-py or an HTTP client; services speak to the
:class:`Store` protocol only (:mod:`coordinatord.store.interface`): typed operations whose replies
have one shape on every backend. :class:`RedisStore` (one server, or a Sentinel's master),
:class:`~coordinatord.store.cluster.ClusterStore` and :class:`UpstashStore` implement it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog

from coordinatord import logs
from coordinatord.errors import BackendError, ConfigError
from coordinatord.settings import Settings
from coordinatord.store.interface import Batch, Reply, Script, Store
from coordinatord.store.redis import RedisStore

if TYPE_CHECKING:
    from coordinatord.store.cluster import ClusterStore
    from coordinatord.store.upstash import UpstashStore

__all__ = ["Batch", "RedisStore", "Reply", "Script", "Store", "open_store"]

log = structlog.get_logger("coordinatord.store")


if TYPE_CHECKING:

    def _all_conform(redis: RedisStore, upstash: UpstashStore, cluster: ClusterStore) -> tuple[Store, ...]:
        # mypy checks here that every store has every operation of the protocol, typed alike.
        return redis, upstash, cluster


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """Open the configured backend, starting the embedded Valkey when none is configured."""
    backend = settings.backend
    redis_url = backend.url.get_secret_value()
    if backend.mode == "cluster":
        from coordinatord.store.cluster import ClusterStore

        cluster = ClusterStore.from_url(redis_url, backend)
        log.info("backend_selected", kind="cluster", backend=cluster.name)
        async with _remote(cluster) as store:
            yield store
        return
    if backend.mode == "sentinel":
        sentinel = RedisStore.from_sentinels(backend)
        log.info("backend_selected", kind="sentinel", backend=sentinel.name)
        async with _remote(sentinel) as store:
            yield store
        return
    has_token = bool(backend.upstash_token.get_secret_value())
    if backend.upstash_url and not has_token:
        raise ConfigError(
            "backend.upstash_url (UPSTASH_REDIS_REST_URL) is set but backend.upstash_token "
            "(UPSTASH_REDIS_REST_TOKEN) is empty; set UPSTASH_REDIS_REST_TOKEN to the database's "
            "REST token, or unset UPSTASH_REDIS_REST_URL"
        )
    if backend.upstash_url:
        from coordinatord.store.upstash import UpstashStore

        upstash = UpstashStore.from_settings(backend)
        if redis_url:
            log.info(
                "backend_selected",
                kind="upstash",
                backend=upstash.name,
                ignored="backend.url (REDIS_URL)",
                reason="Upstash takes precedence when both are set, as in the seed",
            )
        else:
            log.info("backend_selected", kind="upstash", backend=upstash.name)
        async with _remote(upstash) as store:
            yield store
        return
    if has_token:
        log.warning(
            "upstash_token_ignored",
            reason="backend.upstash_token (UPSTASH_REDIS_REST_TOKEN) is set without "
            "backend.upstash_url (UPSTASH_REDIS_REST_URL)",
        )
    if settings.uses_embedded_backend:
        from coordinatord.store.embedded import EmbeddedValkey

        async with EmbeddedValkey(settings.embedded, settings.state_dir) as embedded:
            name = f"embedded valkey-server at {embedded.socket_path}"
            log.info("backend_selected", kind="embedded", backend=name)
            store = RedisStore.from_url(embedded.url, settings.backend, name=name)
            try:
                yield store
            finally:
                await store.aclose()
        return
    redis = RedisStore.from_url(redis_url, settings.backend)
    log.info("backend_selected", kind="redis", backend=redis.name)
    async with _remote(redis) as store:
        yield store


@asynccontextmanager
async def _remote(store: Store) -> AsyncIterator[Store]:
    """A remote store, pinged once at start (a failed ping is logged, not fatal), closed at the end."""
    try:
        try:
            await store.ping()
            log.info("backend_connected", backend=store.name)
        except BackendError as exc:
            # The daemon serves anyway: calls fail fast with a clear message until it returns
            # (or until the password is given: a restart with the fixed URL reconnects the
            # editors by themselves). Said on stderr too, where someone starting it looks.
            log.warning("backend_unreachable_at_start", backend=store.name, kind=exc.kind, error=str(exc))
            if not logs.console_enabled():
                print(f"coordinatord: warning: {exc}", file=sys.stderr, flush=True)
        yield store
    finally:
        await store.aclose()
