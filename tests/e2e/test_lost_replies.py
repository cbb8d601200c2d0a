"""Issue 21's four double writes, end to end: a real daemon whose backend (REDIS_URL) is a loopback
proxy in front of a real Valkey, called through the real shim. While armed, the proxy loses the
first reply to each write after Valkey applied it and breaks the connection, so the daemon's
store resends the write: task_advance completes one step, session_append stores one turn,
message_send delivers one message, a ratelimit_hit of cost 3 counts 3 — and each resend got the
lost reply, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.e2e.conftest import call, connect
from tests.support import DaemonProcess, running_daemon, valkey_server
from tests.support_proxy import ReplyLosingProxy, reply_losing_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def proxy() -> Iterator[ReplyLosingProxy]:
    """A Valkey of this module's own, behind the proxy."""
    with valkey_server() as server, reply_losing_proxy(server.socket_path) as running:
        yield running


@pytest.fixture(scope="module")
def daemon(proxy: ReplyLosingProxy) -> Iterator[DaemonProcess]:
    env = {
        "REDIS_URL": proxy.url,
        # Short bounds: a lost reply breaks the connection at once, so nothing waits for them.
        "COORDINATORD_BACKEND__TIMEOUT_S": "5",
        "COORDINATORD_BACKEND__RETRY_BACKOFF_BASE_S": "0.01",
    }
    with running_daemon(env) as process:
        yield process


async def losing(
    proxy: ReplyLosingProxy, client: Client, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The call with the first reply to each write lost (the call's own, and any other the daemon
    sends meanwhile, such as an activity flush); every one was resent and got the lost reply."""
    before = set(proxy.lost)
    proxy.losing = True
    try:
        result = await call(client, tool, arguments)
    finally:
        proxy.losing = False
    lost = {write_id: reply for write_id, reply in proxy.lost.items() if write_id not in before}
    assert lost, f"{tool}: no reply was lost"
    for write_id, reply in lost.items():
        assert proxy.resent.get(write_id) == reply, (tool, write_id)
    return result


async def test_the_four_double_writes_of_the_issue_are_applied_once(
    proxy: ReplyLosingProxy, daemon: DaemonProcess, workdir: Path
) -> None:
    """task_advance, session_append, message_send and ratelimit_hit, each with its reply lost
    once: one step, one turn, one message, a cost of 3 counted 3."""
    async with (
        connect(daemon.socket_path, agent="alice", project=workdir) as alice,
        connect(daemon.socket_path, agent="bob", project=workdir) as bob,
    ):
        await call(alice, "task_create", {"task_id": "t", "steps": ["a", "b", "c"]})
        advanced = await losing(proxy, alice, "task_advance", {"task_id": "t"})
        assert [s["status"] for s in advanced["steps"]] == ["completed", "in_progress", "pending"]
        got = await call(bob, "task_get", {"task_id": "t"})
        assert [s["status"] for s in got["steps"]] == ["completed", "in_progress", "pending"]

        await call(alice, "session_save", {"session_id": "s", "context": {"goal": "g"}})
        appended = await losing(
            proxy, alice, "session_append", {"session_id": "s", "role": "user", "message": "m"}
        )
        assert appended["history_length"] == 1
        history = await call(bob, "session_history", {"session_id": "s"})
        assert [t["message"] for t in history["turns"]] == ["m"]

        sent = await losing(proxy, alice, "message_send", {"to": "bob", "subject": "hi", "body": "once"})
        inbox = await call(bob, "message_inbox", {})
        assert [m["id"] for m in inbox["messages"]] == [sent["id"]]

        hit = await losing(
            proxy, alice, "ratelimit_hit", {"service": "api", "limit": 10, "window_s": 60, "cost": 3}
        )
        assert (hit["allowed"], hit["used"]) == (True, 3)
        status = await call(bob, "ratelimit_status", {"service": "api", "limit": 10, "window_s": 60})
        assert status["used"] == 3
