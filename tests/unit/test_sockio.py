"""ProtocolStream over a real socket pair: flow control never strands a sender."""

from __future__ import annotations

import socket
import threading

import anyio
import pytest

from coordinatord.server.sockio import ProtocolStream

pytestmark = pytest.mark.anyio


async def test_every_sender_waiting_for_a_full_buffer_is_woken() -> None:
    """Replies of concurrent calls wait side by side for a slow reader; when it reads, all go out
    (a single wake-up slot once left all but the last waiting for ever)."""
    ours, theirs = socket.socketpair()
    payload = b"x" * (1024 * 1024)
    received = bytearray()
    ready = threading.Event()

    def read_late() -> None:
        ready.wait(10)  # let the buffers fill and every sender block first
        with theirs:
            theirs.settimeout(10)
            while len(received) < 8 * len(payload):
                chunk = theirs.recv(1024 * 1024)
                if not chunk:
                    break
                received.extend(chunk)

    reader = threading.Thread(target=read_late)
    reader.start()
    try:
        async with await ProtocolStream.wrap(ours) as stream:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(stream.send, payload)
                    await anyio.wait_all_tasks_blocked()  # every sender waits on the full buffer
                    ready.set()
    finally:
        ready.set()
        reader.join(timeout=10)
    assert len(received) == 8 * len(payload)
