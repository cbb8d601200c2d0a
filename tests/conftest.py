"""Fixtures shared by the suite: real Valkey, real Redis (where it answers), real daemons, and
the Upstash REST backend over an Upstash-compatible emulator in front of the real Valkey."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from pydantic import SecretStr

from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.cluster import ClusterStore
from coordinatord.store.upstash import UpstashStore
from tests.support import (
    REDIS_EXCLUSIVE_URL,
    REDIS_TEST_URL,
    ValkeyProcess,
    redis_available,
    short_tmpdir,
    valkey_server,
)
from tests.support_cluster import (
    SENTINEL_MASTER,
    ValkeyCluster,
    ValkeySentinel,
    valkey_cluster,
    valkey_sentinel,
)
from tests.support_upstash import FakeUpstash, upstash_server

BACKENDS = ["valkey", "redis"]
STORE_BACKENDS = [*BACKENDS, "upstash", "cluster", "sentinel"]
UPSTASH_TOKEN = "tok-suite-4d1b"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path (a Unix socket path must fit in 107 bytes), removed
    afterwards."""
    path = short_tmpdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


CLAIM_KEY = "coordinatord-tests:claimed-by"


@pytest.fixture(scope="session")
def redis_to_ourselves() -> Iterator[str | None]:
    """Database 14 of the machine's Redis, for this test session alone, or None when another
    session (a second suite run on this machine) holds it. The claim is a key naming this host
    and pid; a claim whose process is gone is taken over. Emptied before use (nobody else is
    on it) and after."""
    if not redis_available():
        yield None
        return
    client = redis_sync.Redis.from_url(REDIS_EXCLUSIVE_URL, decode_responses=True)
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        if not client.set(CLAIM_KEY, me, nx=True, ex=3600):
            holder = client.get(CLAIM_KEY)
            if holder is not None and _alive_here(str(holder)):
                yield None
                return
        client.flushdb()  # what a session that died left behind (the claim with it)
        client.set(CLAIM_KEY, me, ex=3600)
        yield REDIS_EXCLUSIVE_URL
        client.flushdb()
    finally:
        client.close()


def _alive_here(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's session: assume it is running
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def daemon_redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis a ``redis`` daemon fixture runs on: a database of this session's own when it
    could be claimed (its jobs' leases are then this daemon's to take), else the shared one."""
    exclusive: str | None = request.getfixturevalue("redis_to_ourselves")
    return exclusive or str(request.getfixturevalue("real_redis"))


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


@pytest.fixture(scope="session")
def cluster() -> Iterator[ValkeyCluster]:
    """One Valkey Cluster for the session (three masters, three replicas), shared by the tests
    that do not break it; the failover tests start their own."""
    with valkey_cluster() as running:
        yield running


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[ValkeySentinel]:
    """One Sentinel set-up for the session (a master, a replica, three sentinels), shared by the
    tests that do not break it; the failover tests start their own."""
    with valkey_sentinel() as running:
        yield running


def cluster_settings(cluster: ValkeyCluster) -> BackendSettings:
    return BackendSettings(mode="cluster", url=SecretStr(cluster.url))


def sentinel_settings(setup: ValkeySentinel) -> BackendSettings:
    return BackendSettings(
        mode="sentinel", sentinels=tuple(setup.sentinel_addresses), sentinel_master=SENTINEL_MASTER
    )


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each test using this runs against Valkey, real Redis, Upstash REST (emulated on Valkey), a
    Valkey Cluster and the master of a Valkey Sentinel set-up."""
    store: Store
    if request.param == "upstash":
        emulator: FakeUpstash = request.getfixturevalue("upstash_emulator")
        store = UpstashStore(emulator.url, UPSTASH_TOKEN, BackendSettings())
    elif request.param == "cluster":
        settings = cluster_settings(request.getfixturevalue("cluster"))
        store = ClusterStore.from_url(settings.url.get_secret_value(), settings)
    elif request.param == "sentinel":
        store = RedisStore.from_sentinels(sentinel_settings(request.getfixturevalue("sentinel_setup")))
    else:
        server = request.getfixturevalue("valkey" if request.param == "valkey" else "real_redis")
        url = server.url if isinstance(server, ValkeyProcess) else str(server)
        store = RedisStore.from_url(url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()
