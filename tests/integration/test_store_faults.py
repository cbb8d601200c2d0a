"""The store when its backend dies and comes back: clear errors, no hang, recovery."""

from __future__ import annotations

import uuid

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


async def test_a_call_cut_off_mid_reply_leaves_no_reply_for_the_next(backend_url: str) -> None:
    """A command still waiting for its reply when its bound runs out (a BLPOP the server holds)
    fails as a timeout, and its connection is not reused: the replies that follow, on every
    connection the store holds, each answer their own command, never the abandoned one's."""
    store = RedisStore.from_url(backend_url, BackendSettings(timeout_s=0.3, retries=0))
    key = f"direct:{uuid.uuid4().hex}"
    try:
        await store.set(f"{key}:value", "mine", 60)
        with pytest.raises(BackendUnavailableError, match="did not answer within"):
            await store.execute("BLPOP", f"{key}:list", 5)
        # The server answers the abandoned BLPOP once the list has an item: on a reused
        # connection that answer would be read as the reply to a later command.
        await store.execute("RPUSH", f"{key}:list", "late")
        for _ in range(20):
            assert await store.get(f"{key}:value") == "mine"
        await store.delete([f"{key}:value", f"{key}:list"])
    finally:
        await store.aclose()
