"""The shim's one loop: editor's stdio on one side, the daemon's socket on the other.

It reads lines only as far as it must (:mod:`coordinatord.shim.lines`) to remember three things:
the editor's ``initialize`` request and ``notifications/initialized`` (the handshake era; the
2026-07-28 era is stateless and needs nothing), the requests in flight on the current
connection, and the requests waiting for a daemon. With those, a daemon restart costs the editor
nothing but the calls that were running:

- when the connection drops, every request in flight gets a JSON-RPC error under its own id
  (:data:`RESTARTED`), except the few that change nothing (``initialize``, listings, ``ping``),
  which are sent again;
- the shim reconnects with capped exponential backoff with jitter (:func:`backoff_s`: the first
  retry within 50 ms, then doubling up to 2 s; up to 0.25 s while the first start of an outage is
  under way), sends the preamble, replays the ``initialize`` under an id of its own, swallows that
  reply, replays ``notifications/initialized``, and goes on. The backoff starts again from 50 ms
  only once a daemon has answered on a connection: one that accepts and dies, or a daemon killed
  while it starts, again and again, gets no more than about one attempt a second from each shim;
- requests that arrive while no daemon answers wait up to ``shim.wait_for_daemon_s``, then fail
  under their id with the reason; when one waits and auto-start is on, the shim starts a daemon
  (:mod:`coordinatord.shim.autostart`);
- stdin EOF ends the shim: at once when no daemon is connected, else after the daemon has
  answered what it read (the shim half-closes the socket; the daemon closes after its last reply).

One thread and ``select``: no locks, and nothing to import beyond the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Callable

from coordinatord import socket_trust
from coordinatord.errors import ForeignServerError
from coordinatord.request_id import HEAD_BYTES, RequestId, read_id
from coordinatord.shim import lines
from coordinatord.shim.autostart import FAILED, HELD, OTHERS_STARTING, STARTING, Starter
from coordinatord.shim.config import ShimConfig

CHUNK = 64 * 1024

NO_DAEMON = -32000
"""Error code of a request no daemon answered (none was reachable within the wait)."""
DAEMON_RESTARTED = -32002
"""Error code of a request in flight when the connection to the daemon was lost."""
LINE_TOO_LONG = -32600
REFUSED = -32600
"""Error code of the shim's own refusal (a bad ``--tools`` or config): the daemon's for the same."""

RESTARTED = "the coordinatord daemon restarted; this call may or may not have taken effect"

RESENDABLE = frozenset(
    {"initialize", "ping", "tools/list", "server/discover", "resources/list", "resources/templates/list"}
)
"""Requests that change nothing: sent again after a reconnect instead of failing."""

FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0
MAX_RETRY_FIRST_START_S = 0.25
"""The backoff's cap while the first start of an outage is under way (or a daemon that holds the
socket's lock is binding it anew): a daemon usually answers 1-2 s after its start, and a late
connect costs the waiting call up to the whole gap. Once a start has failed (the daemon was
killed, or died), the cap is :data:`MAX_RETRY_S`."""
NEW_CALL_GAP_S = 0.25
"""A request arriving while none waits tries a connect at once, unless the last try was more
recent than this: the editor's pace never makes attempts more frequent than that."""
REPLAY_PREFIX = "coordinatord-shim-replay-"


def backoff_s(step: int, cap: float, jitter: float) -> float:
    """The wait before the next connect attempt after ``step`` attempts without a daemon that
    answered: 50 ms doubling per step up to ``cap``, of which a random half (``jitter`` in
    [0, 1)) is taken off, so that shims that lost one daemon together do not knock together."""
    full = min(cap, FIRST_RETRY_S * 2.0 ** min(step, 20))
    return full * (0.5 + jitter / 2)


def _jitter() -> float:
    """A number in [0, 1): from os.urandom, since importing random costs the shim's start."""
    return int.from_bytes(os.urandom(2), "big") / 65536


class _Waiting:
    """A line waiting for a connection that can take it."""

    __slots__ = ("deadline", "line", "method", "request_id")

    def __init__(
        self, line: bytes, request_id: RequestId | None, method: str | None, deadline: float
    ) -> None:
        self.line = line
        self.request_id = request_id
        self.method = method
        self.deadline = deadline


class Relay:
    def __init__(
        self,
        config: ShimConfig,
        preamble: bytes,
        starter: Starter | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._preamble = preamble
        self._starter = starter
        self._clock = clock
        self._sock: socket.socket | None = None
        self._ready = False  # connected, and the handshake (if any) replayed
        self._out = bytearray()  # bytes for the daemon not yet taken by the socket
        self._from_daemon = bytearray()  # a partial line from the daemon
        self._from_editor = bytearray()  # a partial line from the editor
        self._skipping: bytes | None = None  # the head of an over-long editor line being skipped
        self._stdin_open = True
        self._half_closed = False
        self._in_flight: dict[RequestId, tuple[str | None, bytes]] = {}
        self._waiting: deque[_Waiting] = deque()
        self._initialize: dict[str, object] | None = None  # the editor's, once answered
        self._initialize_candidate: dict[str, object] | None = None  # the editor's, sent
        self._initialize_pending: RequestId | None = None
        self._initialized: bytes | None = None
        self._replay_id: str | None = None
        self._replays = 0
        self._retry_at = 0.0
        self._backoff_step = 0  # connect attempts since a daemon last answered on a connection
        self._answered = False  # the daemon has written something on the current connection
        self._attempts = 0  # connect attempts in the current outage (said when it ends)
        self._last_attempt = float("-inf")
        self._outage_since: float | None = None
        self._said_waiting = False
        self._said_expired: str | None = None
        self._said_failure: str | None = None
        self._refused: lines.Refusal | None = None
        self._exit_code: int | None = None

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        self._connect(self._clock())
        while self._exit_code is None:
            now = self._clock()
            if self._sock is None:
                if self._starter is not None:
                    self._starter.poll(now)
                    self._after_failed_start(now)
                if now >= self._retry_at:
                    self._connect(now)
            self._expire(now)
            if self._exit_code is not None:
                break
            sock = self._sock
            readers: list[int | socket.socket] = [0] if self._stdin_open else []
            writers: list[socket.socket] = []
            if sock is not None:
                readers.append(sock)
                if self._out:
                    writers.append(sock)
            readable, writable, _ = select.select(readers, writers, [], self._timeout(now))
            if sock is not None and writable:
                self._flush()
            if sock is not None and sock in readable and self._sock is sock:
                self._read_daemon()
            if 0 in readable:
                self._read_editor()
        return self._exit_code

    def _timeout(self, now: float) -> float | None:
        deadlines = [w.deadline for w in self._waiting]
        if self._sock is None and (self._stdin_open or self._waiting):
            deadlines.append(self._retry_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    # --- the editor's side -------------------------------------------------------------------

    def _read_editor(self) -> None:
        try:
            data = os.read(0, CHUNK)
        except OSError:
            data = b""
        if not data:
            self._stdin_closed()
            return
        buffer = self._from_editor
        buffer += data
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline < 0:
                break
            line = bytes(buffer[start:newline])
            start = newline + 1
            if self._skipping is not None:
                self._skipped(self._skipping, line)
            elif line.strip():
                self._from_editor_line(line)
        del buffer[:start]
        if len(buffer) > self._config.max_line_bytes:
            if self._skipping is None:
                self._skipping = bytes(buffer[:HEAD_BYTES])
            del buffer[: len(buffer) - HEAD_BYTES]  # keep the tail: the id may be the last member
        if self._sock is not None and self._out:
            self._flush()

    def _skipped(self, head: bytes, tail: bytes) -> None:
        """An over-long line ended: answer it (under its id, if it can be read), send nothing."""
        self._skipping = None
        request_id = read_id(head + tail[-HEAD_BYTES:])
        if request_id is not None:
            limit = self._config.max_line_bytes
            message = f"message longer than server.max_line_bytes = {limit} bytes"
            self._to_editor(lines.error_reply(request_id, LINE_TOO_LONG, message))

    def _from_editor_line(self, line: bytes) -> None:
        if len(line) > self._config.max_line_bytes:
            self._skipped(line[:HEAD_BYTES], line[-HEAD_BYTES:])
            return
        parsed = lines.client_line(line)
        kind = parsed.kind
        if kind == lines.REQUEST:
            if parsed.method == "initialize":
                self._initialize_pending = parsed.request_id
                self._initialize = None
                self._remember_initialize(line)
            if self._ready:
                self._send_request(line, parsed.request_id, parsed.method)
                return
            self._wait(line, parsed.request_id, parsed.method)
            return
        if kind == lines.NOTIFICATION:
            if parsed.method == "notifications/initialized":
                self._initialized = line
                if not self._ready and self._initialize is not None:
                    return  # the replayed handshake will send it
            if parsed.cancels is not None:
                self._in_flight.pop(parsed.cancels, None)  # withdrawn: it gets no reply
                if self._drop_waiting(parsed.cancels):
                    return  # never sent: the daemon need not hear of it
        elif kind == lines.RESPONSE and not self._ready:
            return  # answers a request of a daemon that is gone
        if self._ready:
            self._out += line + b"\n"
        else:
            self._wait(line, None, None)

    def _remember_initialize(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        self._initialize_candidate = message if isinstance(message, dict) else None

    def _wait(self, line: bytes, request_id: RequestId | None, method: str | None) -> None:
        now = self._clock()
        first = not any(w.request_id is not None for w in self._waiting)
        self._waiting.append(_Waiting(line, request_id, method, now + self._config.wait_for_daemon_s))
        if self._sock is None and request_id is not None and first:
            # The daemon may be back (else this may start one): try now, or as soon as the
            # editor's pace allows; requests that join a wait leave it to the backoff.
            if now - self._last_attempt >= NEW_CALL_GAP_S:
                self._connect(now)
            else:  # the last try, a moment ago, found none
                self._maybe_autostart(now)
                self._retry_at = min(self._retry_at, self._last_attempt + NEW_CALL_GAP_S)

    def _drop_waiting(self, request_id: RequestId) -> bool:
        for waiting in self._waiting:
            if waiting.request_id == request_id:
                self._waiting.remove(waiting)
                return True
        return False

    def _stdin_closed(self) -> None:
        self._stdin_open = False
        if self._skipping is not None:
            self._skipped(self._skipping, bytes(self._from_editor))
            self._from_editor.clear()
        elif self._from_editor.strip():
            line = bytes(self._from_editor)
            self._from_editor.clear()
            self._from_editor_line(line)
        if self._sock is None:
            # No daemon to finish anything: what waits gets its answer now, and the shim ends
            # (with status 1 if a request could not be served). A daemon still replaying the
            # handshake gets what waits once it is done, then the half-close.
            unserved = any(w.request_id is not None for w in self._waiting)
            self._fail_waiting(self._no_daemon_message(waited=False))
            self._close_socket()
            self._exit(1 if unserved else 0)
            return
        self._flush()  # half-closes once everything is out (after a handshake replay, if one runs)

    def _half_close(self) -> None:
        if self._sock is not None and not self._half_closed:
            self._half_closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def _to_editor(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(1, view)
                view = view[written:]
        except OSError:
            self._exit(0)  # the editor closed our stdout: nobody is left to serve

    # --- the daemon's side -------------------------------------------------------------------

    def _connect(self, now: float) -> None:
        self._attempts += 1
        self._last_attempt = now
        try:
            sock = socket_trust.connect(self._config.socket, 1.0)
        except ForeignServerError as exc:
            self._foreign_server(now, str(exc))
            return
        except OSError:
            self._connect_failed(now)
            return
        sock.setblocking(False)
        self._sock = sock
        self._half_closed = False
        self._refused = None
        self._answered = False
        self._from_daemon.clear()
        self._out = bytearray(self._preamble)
        starts = 0
        if self._starter is not None:
            starts = self._starter.starts
            self._starter.connected()
        if self._outage_since is not None:
            took = now - self._outage_since
            started = f", {starts} daemon start(s)" if starts else ""
            self._say(
                f"connected to the daemon at {self._config.socket} after {took:.1f} s "
                f"({self._attempts} connection attempt(s){started})"
            )
            self._outage_since = None
        self._attempts = 0
        self._said_waiting = False
        self._said_expired = None
        if self._initialize is not None:
            self._replay_handshake()
        else:
            self._become_ready()
        self._flush()

    def _connect_failed(self, now: float) -> None:
        if self._outage_since is None:
            self._outage_since = now
        if self._starter is not None:
            self._starter.connect_failed()
        if any(w.request_id is not None for w in self._waiting):
            self._maybe_autostart(now)
        self._schedule_retry(now)

    def _schedule_retry(self, now: float, at_least: float = 0.0) -> None:
        """The next connect attempt, after the backoff's next step."""
        starter = self._starter
        first_start = (
            starter is not None
            and starter.state in (STARTING, OTHERS_STARTING, HELD)
            and starter.failed_starts == 0
        )
        cap = MAX_RETRY_FIRST_START_S if first_start else MAX_RETRY_S
        delay = backoff_s(self._backoff_step, cap, _jitter())
        self._backoff_step += 1
        self._retry_at = now + max(delay, at_least)

    def _foreign_server(self, now: float, message: str) -> None:
        """Another uid serves the socket: it was sent nothing. No daemon is started (ours
        could not take the path), what waits fails now with the reason, and the shim keeps
        looking, as after a failed connect, in case that server goes away."""
        if message != self._said_failure:
            self._said_failure = message
            self._say(message)
        self._fail_waiting(message)
        if self._outage_since is None:
            self._outage_since = now
        self._schedule_retry(now)

    def _maybe_autostart(self, now: float) -> None:
        starter = self._starter
        if starter is None:
            if not self._said_waiting:
                self._said_waiting = True
                self._say(
                    f"no coordinatord daemon answers at {self._config.socket}; waiting for one "
                    f"(auto-start is off); start it with: {self._config.serve_command()}"
                )
            return
        if not starter.may_start(now):
            return
        if starter.start(now):
            how = "systemd's unit" if starter.by_systemd else "one"
            self._say(
                f"no daemon answers at {self._config.socket}; starting {how} (see {starter.starting_hint()})"
            )
        elif starter.state == HELD and not self._said_waiting:
            self._said_waiting = True
            self._say(f"waiting: {self._no_daemon_message(waited=False)}")

    def _after_failed_start(self, now: float) -> None:
        """A start failed: requests fail now, with its reason, rather than after the full wait.
        (One more connect first: another daemon may have won the race.)"""
        starter = self._starter
        if starter is None or starter.state != FAILED or not self._waiting:
            return
        if now >= self._retry_at:
            self._connect(now)
        if self._sock is None:
            if starter.failure != self._said_failure:
                self._said_failure = starter.failure
                self._say(starter.failure or "the daemon could not be started")
            self._fail_waiting(self._no_daemon_message(waited=False))

    def _replay_handshake(self) -> None:
        assert self._initialize is not None
        self._replays += 1
        self._replay_id = f"{REPLAY_PREFIX}{self._replays}"
        replay = {**self._initialize, "id": self._replay_id}
        self._out += json.dumps(replay, separators=(",", ":")).encode() + b"\n"

    def _become_ready(self) -> None:
        self._ready = True
        if self._initialize is not None and self._initialized is not None:
            self._out += self._initialized + b"\n"
        waiting, self._waiting = self._waiting, deque()
        for item in waiting:
            self._send_request(item.line, item.request_id, item.method)

    def _send_request(self, line: bytes, request_id: RequestId | None, method: str | None) -> None:
        if request_id is not None:
            self._in_flight[request_id] = (method, line)
        self._out += line + b"\n"

    def _flush(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if not self._out:
            if not self._stdin_open and self._ready:
                self._half_close()
            return
        try:
            sent = sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._out.clear()
            self._read_daemon(until_closed=True)  # the daemon closed its end
            return
        del self._out[:sent]
        if not self._out and not self._stdin_open and self._ready:
            self._half_close()

    def _read_daemon(self, until_closed: bool = False) -> None:
        """Read what the daemon wrote; ``until_closed`` after a write it refused: everything it
        wrote before it closed (a refusal, replies) decides what happens next, then the loss."""
        sock = self._sock
        assert sock is not None
        while self._sock is sock:
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                if not until_closed:
                    return
                data = b""
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._take_from_daemon(data)
            if not until_closed:
                return

    def _take_from_daemon(self, data: bytes) -> None:
        if not self._answered:
            self._answered = True
            self._backoff_step = 0  # a daemon that answers: the next outage starts afresh
        buffer = self._from_daemon
        buffer += data
        end = buffer.rfind(b"\n")
        if end < 0:
            return
        chunk = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        forward = []
        start = 0
        while start < len(chunk):
            newline = chunk.index(b"\n", start)
            line = chunk[start : newline + 1]
            start = newline + 1
            if self._from_daemon_line(line):
                forward.append(line)
        if forward:
            self._to_editor(b"".join(forward) if len(forward) > 1 else forward[0])

    def _from_daemon_line(self, line: bytes) -> bool:
        """Track the reply in ``line``; whether it goes on to the editor."""
        parsed = lines.daemon_line(line)
        request_id = parsed.request_id
        if request_id is None:
            if parsed.refusal is not None:
                self._refused = parsed.refusal
                return False
            return True
        if request_id == self._replay_id and self._replay_id is not None:
            self._replay_id = None
            if parsed.is_error:
                self._say(
                    f"the daemon refused the replayed initialize: {line.decode(errors='replace').strip()}"
                )
            self._become_ready()
            self._flush()
            return False
        self._in_flight.pop(request_id, None)
        if request_id == self._initialize_pending:
            self._initialize_pending = None
            if not parsed.is_error:
                self._initialize = self._initialize_candidate
        return True

    def _lost(self) -> None:
        """The connection ended: answer or resend what was in flight, then reconnect."""
        now = self._clock()
        self._close_socket()
        refused = self._refused
        if refused is not None and not refused.retry:
            self._say(refused.message)
            self._fail_everything(refused.message)
            self._exit(2)
            return
        resend: list[_Waiting] = []
        failed: list[bytes] = []
        deadline = now + self._config.wait_for_daemon_s
        for request_id, (method, line) in self._in_flight.items():
            if method in RESENDABLE:
                resend.append(_Waiting(line, request_id, method, deadline))
            else:
                failed.append(lines.error_reply(request_id, DAEMON_RESTARTED, RESTARTED))
        self._in_flight.clear()
        self._waiting.extendleft(reversed(resend))
        if failed:
            self._to_editor(b"".join(failed))
        if not self._stdin_open:
            self._fail_waiting(self._no_daemon_message(waited=False))
            self._exit(0)
            return
        if refused is None:
            calls = f"; {len(failed)} call(s) in flight got an error" if failed else ""
            self._say(f"lost the daemon at {self._config.socket}{calls}; reconnecting")
        self._outage_since = now
        self._schedule_retry(now, at_least=0.0 if refused is None else MAX_RETRY_S)

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._ready = False
        self._replay_id = None
        self._out.clear()
        self._from_daemon.clear()

    # --- waiting requests --------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        expired = [w for w in self._waiting if w.deadline <= now] if self._waiting else None
        if not expired:
            return
        for item in expired:
            self._waiting.remove(item)
        message = self._no_daemon_message(waited=True)
        replies = [
            lines.error_reply(w.request_id, NO_DAEMON, message) for w in expired if w.request_id is not None
        ]
        if replies:
            if message != self._said_expired:  # once per outage and reason, however many calls
                self._said_expired = message
                self._say(message)
            self._to_editor(b"".join(replies))

    def _fail_waiting(self, message: str) -> None:
        waiting, self._waiting = self._waiting, deque()
        replies = [
            lines.error_reply(w.request_id, NO_DAEMON, message) for w in waiting if w.request_id is not None
        ]
        if replies:
            self._to_editor(b"".join(replies))

    def _fail_everything(self, message: str) -> None:
        replies = [lines.error_reply(request_id, NO_DAEMON, message) for request_id in self._in_flight]
        self._in_flight.clear()
        if replies:
            self._to_editor(b"".join(replies))
        self._fail_waiting(message)

    def _no_daemon_message(self, waited: bool) -> str:
        config = self._config
        where = f"no coordinatord daemon answers at {config.socket}"
        if self._sock is not None and not self._ready:
            return f"the coordinatord daemon at {config.socket} did not finish the handshake in time"
        starter = self._starter
        if starter is not None and starter.state == FAILED and starter.failure:
            return f"{where}: {starter.failure}"
        wait = f" within {config.wait_for_daemon_s:g} s" if waited else ""
        if starter is None:
            return f"{where}{wait} (auto-start is off); start it with: {config.serve_command()}"
        if starter.state == HELD and starter.holder is not None:
            from coordinatord import daemon_locks

            return f"{where}{wait}: {daemon_locks.unreachable(starter.holder, config.socket)}"
        before = f" (the start before: {starter.failure})" if starter.failure else ""
        if starter.state in (STARTING, OTHERS_STARTING):
            hint = starter.starting_hint()
            return f"{where}: a daemon is starting but did not answer{wait}{before}; see {hint}"
        if starter.failure:
            return f"{where}{wait}: {starter.failure}; the shim starts another while calls wait"
        return f"{where}{wait}; start it with: {config.serve_command()}"

    # --- small things ------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        try:
            sys.stderr.write(f"coordinatord shim: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # no stderr to write to: the editor may have closed it

    def _exit(self, code: int) -> None:
        if self._exit_code is None:
            self._exit_code = code


def refuse(message: str, timeout_s: float = 10.0) -> int:
    """Say ``message`` on stderr, answer the editor's first request (its ``initialize``) with it
    under that request's id, and exit 2: for errors no daemon could fix (``--tools``, config)."""
    sys.stderr.write(f"coordinatord shim: {message}\n")
    sys.stderr.flush()
    deadline = time.monotonic() + timeout_s
    buffer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([0], [], [], remaining)[0]:
            return 2
        try:
            data = os.read(0, CHUNK)
        except OSError:
            return 2
        if not data:
            return 2
        buffer += data
        while (newline := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            parsed = lines.client_line(line)
            if parsed.kind == lines.REQUEST:
                with contextlib.suppress(OSError):
                    os.write(1, lines.error_reply(parsed.request_id, REFUSED, message))
                return 2
