"""The store when its backend dies and comes back: clear errors, no hang, recovery."""

from __future__ import annotations

import pytest

from coordinatord.errors import BackendUnavailableError
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore
from tests.support import valkey_server

pytestmark = pytest.mark.anyio

FAST = BackendSettings(timeout_s=1.0, connect_timeout_s=0.5, retries=2, retry_backoff_base_s=0.01)


async def test_backend_killed_then_back() -> None:
    """A dead backend fails calls with a message naming it; once back, calls succeed again."""
    with valkey_server() as server:
        store = RedisStore.from_url(server.url, FAST)
        try:
            await store.set("k", "before", 60)
            server.kill()
            with pytest.raises(BackendUnavailableError) as caught:
                await store.get("k")
            assert str(server.socket_path) in str(caught.value)
            server.start()  # same socket path, empty data (no persistence in this fixture)
            await store.set("k", "after", 60)
            assert await store.get("k") == "after"
        finally:
            await store.aclose()


async def test_unreachable_tcp_backend_names_the_address() -> None:
    """Nothing listening on a TCP port: the error names host and port, the password masked."""
    store = RedisStore.from_url("redis://user:secret@127.0.0.1:1/0", FAST)
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            await store.ping()
        message = str(caught.value)
        assert "127.0.0.1:1" in message and "secret" not in message
    finally:
        await store.aclose()
