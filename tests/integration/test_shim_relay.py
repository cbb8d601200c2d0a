"""The real shim process against a scripted peer on its socket, for the moments a real daemon
cannot be made to produce on cue: a connection dropped while the initialize is in flight, a
refusal, the exact bytes of a replayed handshake. The real daemon's side of the same story is in
tests/e2e/test_shim_reconnect.py.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import INITIALIZE, INITIALIZED, call_line
from tests.support import COORDINATORD, ShimProcess, short_tmpdir


class Peer:
    """One accepted connection, read line by line with timeouts."""

    def __init__(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        self.conn = conn
        self.reader = conn.makefile("rb")

    def line(self) -> dict[str, Any]:
        raw = self.reader.readline()
        assert raw, "the shim closed the connection"
        return dict(json.loads(raw))

    def send(self, message: dict[str, Any]) -> None:
        self.conn.sendall(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self.reader.close()
        self.conn.close()


class ScriptedDaemon:
    """A listening socket whose connections the test handles by hand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self._accepted: queue.Queue[socket.socket] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._accepted.put(conn)

    def next(self) -> Peer:
        try:
            return Peer(self._accepted.get(timeout=30))
        except queue.Empty:
            raise AssertionError("the shim did not connect within 30 s") from None

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedDaemon]:
    directory = short_tmpdir()
    daemon = ScriptedDaemon(directory / "c.sock")
    try:
        yield daemon
    finally:
        daemon.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shim(scripted: ScriptedDaemon) -> Iterator[ShimProcess]:
    project = scripted.path.parent
    args = [COORDINATORD, "shim", "--socket", str(scripted.path), "--project", str(project), "--no-autostart"]
    with ShimProcess(args) as process:
        yield process


def ok(request_id: Any, result: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result or {}}


def handshake(peer: Peer, shim: ShimProcess) -> None:
    assert peer.line()["type"] == "coordinatord-preamble"
    shim.send(INITIALIZE)
    assert peer.line()["method"] == "initialize"
    peer.send(ok(1, {"protocolVersion": "2025-06-18"}))
    assert shim.reply()["id"] == 1
    shim.send(INITIALIZED)
    assert peer.line()["method"] == "notifications/initialized"


def test_the_handshake_is_replayed_under_an_id_of_the_shims(
    scripted: ScriptedDaemon, shim: ShimProcess
) -> None:
    """After a drop: preamble, the editor's initialize under a shim id (its reply swallowed),
    notifications/initialized, then the call that waited; the editor sees only its own reply."""
    first = scripted.next()
    handshake(first, shim)
    first.close()
    shim.stderr(wait_for="lost the daemon")
    shim.send(call_line(2, "redis_ping", {}))
    second = scripted.next()
    assert second.line()["type"] == "coordinatord-preamble"
    replayed = second.line()
    assert replayed["method"] == "initialize" and replayed["params"] == INITIALIZE["params"]
    assert str(replayed["id"]).startswith("coordinatord-shim-replay-")
    second.send(ok(replayed["id"]))
    assert second.line()["method"] == "notifications/initialized"
    assert second.line()["id"] == 2
    second.send(ok(2, {"content": [{"type": "text", "text": "PONG"}]}))
    assert shim.reply() == ok(2, {"content": [{"type": "text", "text": "PONG"}]})
    shim.send(call_line(3, "redis_ping", {}))
    assert second.line()["id"] == 3  # nothing else was queued in between
    second.close()


def test_a_dropped_initialize_is_sent_again(scripted: ScriptedDaemon, shim: ShimProcess) -> None:
    """The initialize (a request that changes nothing) in flight at the drop is resent, not failed."""
    first = scripted.next()
    assert first.line()["type"] == "coordinatord-preamble"
    shim.send(INITIALIZE)
    assert first.line()["method"] == "initialize"
    first.close()
    second = scripted.next()
    assert second.line()["type"] == "coordinatord-preamble"
    again = second.line()
    assert (again["method"], again["id"]) == ("initialize", 1)
    second.send(ok(1))
    assert shim.reply() == ok(1)
    second.close()


def test_calls_in_flight_fail_under_their_ids_and_withdrawn_ones_do_not(
    scripted: ScriptedDaemon, shim: ShimProcess
) -> None:
    """At the drop, each call in flight gets the restart error; a call the editor withdrew gets
    nothing; a listing is sent again instead."""
    first = scripted.next()
    handshake(first, shim)
    shim.send(call_line(2, "lock_acquire", {"resource": "r"}), call_line(3, "redis_get", {"key": "k"}))
    shim.send({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})
    shim.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}})
    assert [first.line().get("id") for _ in range(4)] == [2, 3, 4, None]
    first.close()
    error = shim.reply()
    assert error["id"] == 2
    assert error["error"]["code"] == -32002
    assert "daemon restarted; this call may or may not have taken effect" in error["error"]["message"]
    second = scripted.next()
    second.line()  # preamble
    second.send(ok(second.line()["id"]))  # the replayed initialize
    assert second.line()["method"] == "notifications/initialized"
    assert second.line()["id"] == 4  # the listing, again
    second.send(ok(4, {"tools": []}))
    assert shim.reply() == ok(4, {"tools": []})
    second.close()


def test_a_refusal_ends_the_shim_and_reaches_the_editor(scripted: ScriptedDaemon, shim: ShimProcess) -> None:
    """A refused preamble (retry false): no reconnect loop; the waiting request gets the
    message under its id; the shim says it on stderr and exits 2."""
    peer = scripted.next()
    assert peer.line()["type"] == "coordinatord-preamble"
    shim.send(INITIALIZE)
    refusal = {"code": -32600, "message": "bad coordinatord preamble: nope", "data": {"refused": True}}
    peer.send({"jsonrpc": "2.0", "id": None, "error": refusal})
    peer.close()
    reply = shim.reply()
    assert reply["id"] == 1 and reply["error"]["message"] == "bad coordinatord preamble: nope"
    assert "bad coordinatord preamble: nope" in shim.stderr(wait_for="bad coordinatord preamble")
    assert shim.process.wait(timeout=30) == 2


def test_a_busy_daemon_is_tried_again(scripted: ScriptedDaemon, shim: ShimProcess) -> None:
    """A refusal that says retry (too many connections): the shim connects again and goes on."""
    peer = scripted.next()
    peer.line()
    shim.send(INITIALIZE)
    busy = {"code": -32001, "message": "too many connections", "data": {"refused": True, "retry": True}}
    peer.send({"jsonrpc": "2.0", "id": None, "error": busy})
    peer.close()
    second = scripted.next()
    assert second.line()["type"] == "coordinatord-preamble"
    assert second.line()["method"] == "initialize"
    second.send(ok(1))
    assert shim.reply() == ok(1)
    second.close()


def test_an_over_long_line_is_answered_by_the_shim_and_never_sent(scripted: ScriptedDaemon) -> None:
    """Above server.max_line_bytes: an error under the line's id (read from its head or its
    end), nothing sent to the daemon, and the next line goes through."""
    config = scripted.path.parent / "c.toml"
    config.write_text("[server]\nmax_line_bytes = 4096\n")
    args = [COORDINATORD, "shim", "--socket", str(scripted.path), "--project", str(scripted.path.parent)]
    with ShimProcess([*args, "--no-autostart", "--config", str(config)]) as shim:
        peer = scripted.next()
        handshake(peer, shim)
        big = {"key": "k", "value": "x" * 100_000}
        shim.send(call_line(7, "redis_set", big))
        last = {
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "redis_set", "arguments": big},
            "id": 8,
        }
        shim.send(last)
        for expected in (7, 8):
            error = shim.reply()
            assert error["id"] == expected and "max_line_bytes = 4096" in error["error"]["message"]
        shim.send(call_line(9, "redis_ping", {}))
        assert peer.line()["id"] == 9
        peer.close()


def test_stdin_closed_during_a_replay_still_sends_what_waits(
    scripted: ScriptedDaemon, shim: ShimProcess
) -> None:
    """The editor sends a call and leaves while the handshake is being replayed: the call still
    goes out after the replay, its reply comes back, then the shim half-closes and exits 0."""
    first = scripted.next()
    handshake(first, shim)
    first.close()
    second = scripted.next()  # the shim reconnects by itself, nothing waiting
    assert second.line()["type"] == "coordinatord-preamble"
    replayed = second.line()
    shim.send(call_line(2, "redis_ping", {}))
    assert shim.process.stdin is not None
    shim.process.stdin.close()
    second.send(ok(replayed["id"]))
    assert second.line()["method"] == "notifications/initialized"
    assert second.line()["id"] == 2
    second.send(ok(2, {"content": []}))
    assert shim.reply() == ok(2, {"content": []})
    assert second.reader.readline() == b""  # the shim's half-close
    second.close()
    assert shim.process.wait(timeout=30) == 0
