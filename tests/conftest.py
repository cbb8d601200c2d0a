"""Fixtures shared by the suite: real Valkey, real Redis (where it answers), real daemons, and
the Upstash REST backend over an Upstash-compatible emulator in front of the real Valkey."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync

from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.upstash import UpstashStore
from tests.support import REDIS_TEST_URL, ValkeyProcess, redis_available, valkey_server
from tests.support_upstash import FakeUpstash, upstash_server

BACKENDS = ["valkey", "redis"]
STORE_BACKENDS = [*BACKENDS, "upstash"]
UPSTASH_TOKEN = "tok-suite-4d1b"


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


@pytest.fixture(scope="session")
def upstash_emulator(valkey: ValkeyProcess) -> Iterator[FakeUpstash]:
    """One Upstash-compatible REST server for the session, in front of the session's Valkey."""
    with upstash_server(valkey, UPSTASH_TOKEN) as server:
        yield server


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each test using this runs against Valkey, real Redis, and Upstash REST (emulated on Valkey)."""
    store: Store
    if request.param == "upstash":
        emulator: FakeUpstash = request.getfixturevalue("upstash_emulator")
        store = UpstashStore(emulator.url, UPSTASH_TOKEN, BackendSettings())
    else:
        server = request.getfixturevalue("valkey" if request.param == "valkey" else "real_redis")
        url = server.url if isinstance(server, ValkeyProcess) else str(server)
        store = RedisStore.from_url(url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()
