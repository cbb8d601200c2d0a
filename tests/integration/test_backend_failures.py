"""A backend that is reached but will not serve us is told apart from one that is not reached,
and each message names the setting and the URL form that fix it (real valkey-servers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinatord.errors import BackendUnavailableError
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore
from tests.support import ValkeyProcess, free_tcp_port, valkey_server

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-pass"
FAST = BackendSettings(timeout_s=1.0, retries=0, connect_timeout_s=1.0)


@pytest.fixture(scope="module")
def protected() -> Iterator[ValkeyProcess]:
    """The seed's WSL2 story: a Redis with requirepass on a TCP port."""
    with valkey_server(password=PASSWORD, tcp_port=free_tcp_port()) as server:
        yield server


async def failure(url: str) -> BackendUnavailableError:
    store = RedisStore.from_url(url, FAST)
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            await store.ping()
        return caught.value
    finally:
        await store.aclose()


async def test_no_password_is_noauth_and_names_the_url_form(protected: ValkeyProcess) -> None:
    """A protected server reached without a password fails as NOAUTH, saying it was reached and showing the
    URL form with PASSWORD, never as unreachable."""
    error = await failure(protected.tcp_url)
    message = str(error)
    assert error.kind == "noauth"
    assert "was reached but needs a password (NOAUTH)" in message
    assert f"redis://:PASSWORD@127.0.0.1:{protected.tcp_port}/0" in message
    assert "could not be reached" not in message


async def test_wrong_password_is_wrongpass_and_never_shows_it(protected: ValkeyProcess) -> None:
    """A wrong password fails as WRONGPASS with the URL form to copy, and the wrong password itself never
    appears in the message."""
    error = await failure(f"redis://:not-it@127.0.0.1:{protected.tcp_port}/0")
    message = str(error)
    assert error.kind == "wrongpass"
    assert "refused the password (WRONGPASS" in message
    assert "not-it" not in message
    assert f"redis://:PASSWORD@127.0.0.1:{protected.tcp_port}/0" in message


async def test_the_right_password_in_the_url_works(protected: ValkeyProcess) -> None:
    """The right password in the URL connects and pings, and the store's name (used in messages) hides it."""
    store = RedisStore.from_url(f"redis://:{PASSWORD}@127.0.0.1:{protected.tcp_port}/0", FAST)
    try:
        assert await store.ping()
        assert PASSWORD not in store.name
    finally:
        await store.aclose()


async def test_a_database_the_server_lacks_is_named(valkey: ValkeyProcess) -> None:
    """Asking for a database number the server does not have fails as no_such_db, naming the number and
    suggesting the URL with ``db=0``."""
    error = await failure(f"{valkey.url}?db=99")
    assert error.kind == "no_such_db", str(error)
    assert "has no database 99" in str(error)
    assert f"{valkey.url}?db=0" in str(error)


async def test_a_closed_port_is_refused() -> None:
    """A port nothing listens on fails as refused, with a message asking whether the server is running."""
    error = await failure(f"redis://127.0.0.1:{free_tcp_port()}/0")
    assert error.kind == "refused"
    assert "could not be reached" in str(error) and "is the server running" in str(error)


async def test_tls_to_a_plain_port_says_which_scheme(protected: ValkeyProcess) -> None:
    """A TLS client on a plain port waits for a handshake that never comes: only a timeout is
    seen, so the message says what it usually means."""
    error = await failure(f"rediss://127.0.0.1:{protected.tcp_port}/0")
    assert error.kind in ("timeout", "tls")
    assert "redis://" in str(error) and "TLS" in str(error)
