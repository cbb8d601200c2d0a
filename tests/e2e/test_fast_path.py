"""Fast-path calls on a raw connection: withdrawn calls, and calls whose client went away."""

from __future__ import annotations

import uuid

import anyio
import pytest

from tests.e2e.conftest import RawConnection, call_line, frames
from tests.support import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def count_logged(daemon: DaemonProcess, event: str) -> int:
    return sum(1 for line in daemon.log_events() if line.get("event") == event)


def cancelled(request_id: int) -> dict[str, object]:
    params = {"requestId": request_id, "reason": "the user moved on"}
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}


def structured(reply: dict[str, object]) -> dict[str, object]:
    result = reply["result"]
    assert isinstance(result, dict) and not result.get("isError"), reply
    content = result["structuredContent"]
    assert isinstance(content, dict)
    return content


def holders(conn: RawConnection, request_id: int, resource: str) -> dict[str, object]:
    conn.send(frames(call_line(request_id, "lock_list", {})))
    locks = structured(conn.reply_to(request_id))["locks"]
    assert isinstance(locks, list)
    return {lock["resource"]: lock["held_by"] for lock in locks if lock["resource"] == resource}


async def test_a_withdrawn_call_gets_no_reply_and_takes_nothing(daemon: DaemonProcess) -> None:
    """notifications/cancelled stops a waiting lock_acquire: no reply for it, later calls on the
    same connection are answered, and the lock is not taken once it frees up."""
    resource = f"withdrawn-{uuid.uuid4().hex}"
    holder, waiter = RawConnection(daemon.socket_path), RawConnection(daemon.socket_path)
    try:
        holder.initialize("holder")
        waiter.initialize("waiter")
        holder.send(frames(call_line(2, "lock_acquire", {"resource": resource, "ttl": 60})))
        token = structured(holder.reply_to(2))["token"]
        waiter.send(frames(call_line(2, "lock_acquire", {"resource": resource, "wait_ms": 20_000})))
        waiter.send(frames(call_line(3, "redis_ping", {})))
        waiter.reply_to(3)  # the acquire is waiting by now
        waiter.send(frames(cancelled(2)))
        waiter.send(frames(call_line(4, "redis_ping", {})))
        assert waiter.reply_to(4)["result"] == {"content": [{"type": "text", "text": "PONG"}]}

        holder.send(frames(call_line(3, "lock_release", {"resource": resource, "token": token})))
        assert structured(holder.reply_to(3))["released"] is True
        assert holders(waiter, 5, resource) == {}  # and no reply to 2 came before this one
    finally:
        holder.close()
        waiter.close()


async def test_a_call_whose_client_left_is_cancelled() -> None:
    """A lock_acquire still waiting when its connection ends (after server.drain_timeout_s, the
    time a half-closed client is given for its replies) is cancelled with it: the lock is not
    taken for a client that is gone."""
    with running_daemon({"COORDINATORD_SERVER__DRAIN_TIMEOUT_S": "0.2"}) as daemon:
        await leave_while_waiting(daemon)


async def leave_while_waiting(daemon: DaemonProcess) -> None:
    resource = f"abandoned-{uuid.uuid4().hex}"
    holder, waiter = RawConnection(daemon.socket_path), RawConnection(daemon.socket_path)
    try:
        holder.initialize("holder")
        waiter.initialize("leaver")
        holder.send(frames(call_line(2, "lock_acquire", {"resource": resource, "ttl": 60})))
        token = structured(holder.reply_to(2))["token"]
        waiter.send(frames(call_line(2, "lock_acquire", {"resource": resource, "wait_ms": 20_000})))
        waiter.send(frames(call_line(3, "redis_ping", {})))
        waiter.reply_to(3)  # the acquire is waiting by now
        closed_before = count_logged(daemon, "connection_closed")
        waiter.close()
        with anyio.fail_after(10):  # the daemon logs it once the connection's calls are over
            while count_logged(daemon, "connection_closed") == closed_before:  # noqa: ASYNC110
                await anyio.sleep(0.02)

        holder.send(frames(call_line(3, "lock_release", {"resource": resource, "token": token})))
        assert structured(holder.reply_to(3))["released"] is True
        assert holders(holder, 4, resource) == {}
    finally:
        holder.close()
        waiter.close()
