"""Fixtures shared by the suite: real Valkey, real Redis (where it answers), real daemons."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync

from coordinatord.settings import BackendSettings
from coordinatord.store import Store
from tests.support import REDIS_TEST_URL, ValkeyProcess, redis_available, valkey_server

BACKENDS = ["valkey", "redis"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyProcess]:
    """One valkey-server for the session, on a private Unix socket."""
    with valkey_server() as server:
        yield server


@pytest.fixture(scope="session")
def real_redis() -> Iterator[str]:
    """The machine's Redis on 127.0.0.1:6379, database 13, emptied after the session.

    Not emptied before: every test works in a namespace of its own, and a flush at the start
    would wipe the keys of a test session already running against the same database.
    """
    if not redis_available():
        pytest.skip("no redis-server answers on 127.0.0.1:6379")
    client = redis_sync.Redis.from_url(REDIS_TEST_URL)
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once against Valkey and once against real Redis."""
    fixture = "valkey" if request.param == "valkey" else "real_redis"
    value = request.getfixturevalue(fixture)
    return value.url if isinstance(value, ValkeyProcess) else str(value)


@pytest.fixture
async def store(backend_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(backend_url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()
