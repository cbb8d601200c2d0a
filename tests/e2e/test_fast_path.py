"""Fast-path calls on a raw connection: withdrawn calls, and calls whose client went away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Waiting:
    holder: RawConnection
    waiter: RawConnection
    resource: str
    token: str


@contextmanager
def waiting_for_a_lock(daemon: DaemonProcess, waiter_name: str) -> Iterator[Waiting]:
    """``holder`` holds a fresh lock, and ``waiter``'s request 2, a ``lock_acquire`` of it with
    ``wait_ms``, is waiting; both connections use request id 3 next."""
    resource = f"{waiter_name}-{uuid.uuid4().hex}"
    holder, waiter = RawConnection(daemon.socket_path), RawConnection(daemon.socket_path)
    try:
        holder.initialize("holder")
        waiter.initialize(waiter_name)
        holder.send(frames(call_line(2, "lock_acquire", {"resource": resource, "ttl": 60})))
        token = str(structured(holder.reply_to(2))["token"])
        waiter.send(frames(call_line(2, "lock_acquire", {"resource": resource, "wait_ms": 20_000})))
        waiter.send(frames(call_line(3, "redis_ping", {})))
        waiter.reply_to(3)  # the acquire is waiting by now
        yield Waiting(holder, waiter, resource, token)
    finally:
        holder.close()
        waiter.close()


def release(lock: Waiting, request_id: int) -> None:
    arguments = {"resource": lock.resource, "token": lock.token}
    lock.holder.send(frames(call_line(request_id, "lock_release", arguments)))
    assert structured(lock.holder.reply_to(request_id))["released"] is True


async def test_a_withdrawn_call_gets_no_reply_and_takes_nothing(daemon: DaemonProcess) -> None:
    """notifications/cancelled stops a waiting lock_acquire: no reply for it, later calls on the
    same connection are answered, and the lock is not taken once it frees up."""
    with waiting_for_a_lock(daemon, "withdrawer") as lock:
        lock.waiter.send(frames(cancelled(2)))
        lock.waiter.send(frames(call_line(4, "redis_ping", {})))
        assert lock.waiter.reply_to(4)["result"] == {"content": [{"type": "text", "text": "PONG"}]}
        release(lock, 3)
        assert holders(lock.waiter, 5, lock.resource) == {}  # and no reply to 2 came before this


async def test_a_call_whose_client_left_is_cancelled() -> None:
    """A lock_acquire still waiting when its connection ends (after server.drain_timeout_s, the
    time a half-closed client is given for its replies) is cancelled with it: the lock is not
    taken for a client that is gone."""
    with (
        running_daemon({"COORDINATORD_SERVER__DRAIN_TIMEOUT_S": "0.2"}) as daemon,
        waiting_for_a_lock(daemon, "leaver") as lock,
    ):
        closed_before = count_logged(daemon, "connection_closed")
        lock.waiter.close()
        with anyio.fail_after(10):  # the daemon logs it once the connection's calls are over
            while count_logged(daemon, "connection_closed") == closed_before:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        release(lock, 3)
        assert holders(lock.holder, 4, lock.resource) == {}
