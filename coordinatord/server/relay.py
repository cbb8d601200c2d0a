"""One connection after its first line: its frames between the socket and the SDK's loop (or
the fast path), and the requests read from it and not yet answered.

Each line is decoded once into a frame (:func:`coordinatord.server.framing.decode_frame`): a
:class:`~coordinatord.server.framing.Call` goes to the fast path once the handshake is done, a
:class:`~coordinatord.server.framing.Cancel` to the fast path and the SDK, anything else to the
SDK as the message :func:`~coordinatord.server.framing.to_message` makes of the same value, and
a :class:`~coordinatord.server.framing.BadLine` back to the client as its error.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.abc
import structlog
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCRequest, JSONRPCResponse

from coordinatord.app import App
from coordinatord.context import Peer
from coordinatord.server import framing
from coordinatord.server.fastpath import FastPath
from coordinatord.server.framing import NO_META, BadLine, Call, Cancel, Frame
from coordinatord.server.in_flight import InFlight
from coordinatord.server.line_reader import LineReader, OverlongLine
from coordinatord.server.sockio import ProtocolStream

log = structlog.get_logger("coordinatord.server")

INTERNAL_ERROR = -32603


class Outstanding:
    """Request ids read from a connection and not yet answered.

    The SDK's loop answers "Connection closed" to every request still running when its read
    stream ends, so on the client's EOF the reader waits for this set to empty before ending
    the stream: a shim that half-closes right after its last request still gets the reply.
    The daemon-wide :class:`~coordinatord.server.in_flight.InFlight` count follows these sets, so a shutdown
    waits until every request read has been answered, not merely handled.
    """

    def __init__(self, in_flight: InFlight) -> None:
        self._ids: set[str | int] = set()
        self._empty: anyio.Event | None = None  # made only when someone waits
        self._fewer: anyio.Event | None = None  # likewise
        self._in_flight = in_flight

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, request_id: str | int) -> None:
        if request_id not in self._ids:
            self._ids.add(request_id)
            self._in_flight.enter()

    def discard(self, request_id: str | int | None) -> None:
        if request_id is None or request_id not in self._ids:
            return
        self._ids.discard(request_id)
        self._in_flight.leave()
        if self._fewer is not None:
            self._fewer.set()
            self._fewer = None
        if not self._ids and self._empty is not None:
            self._empty.set()
            self._empty = None

    def pending(self) -> list[str | int]:
        return list(self._ids)

    def abandon(self) -> None:
        """The connection is gone: its unanswered requests no longer hold up a shutdown."""
        for request_id in list(self._ids):
            self.discard(request_id)

    async def wait_empty(self) -> None:
        if not self._ids:
            return
        if self._empty is None:
            self._empty = anyio.Event()
        await self._empty.wait()

    async def wait_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` requests are unanswered."""
        while len(self._ids) >= limit:
            if self._fewer is None:
                self._fewer = anyio.Event()
            await self._fewer.wait()


class Relay:
    """Moves one connection's frames between the socket and the SDK's loop (or the fast path)."""

    def __init__(
        self,
        app: App,
        in_flight: InFlight,
        peer: Peer,
        lines: LineReader,
        sender: ProtocolStream,
        stream: ProtocolStream,
        drain_timeout_s: float,
        fast_path: bool,
        server_info: dict[str, Any],
        max_calls_in_flight: int,
    ) -> None:
        """``server_info``: the SDK's ``serverInfo`` stamp, for the fast path's new-era results.
        ``max_calls_in_flight``: past this many unanswered requests, the next line is not read
        until one is answered: each call holds its reply (a value may be megabytes) until it is
        written, so a client pipelining reads would otherwise grow the daemon without bound."""
        self._max_calls_in_flight = max_calls_in_flight
        self.peer = peer
        self._lines = lines
        self._sender = sender
        self._stream = stream
        self._drain_timeout_s = drain_timeout_s
        self._outstanding = Outstanding(in_flight)
        self._given_up: set[str | int] = set()  # answered by give_up(): later replies are dropped
        self._reading = anyio.CancelScope()
        self._fast = None
        if fast_path:
            self._fast = FastPath(app, peer, self._send_reply, self._outstanding.discard, server_info)

    async def close(self) -> None:
        """The connection is over: fast-path calls still running are cancelled (their client
        is gone; a lock acquired for nobody would only block others), and the unanswered
        requests no longer hold up a shutdown."""
        if self._fast is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._drain_timeout_s):
                await self._fast.close()
        self._outstanding.abandon()

    def describe(self) -> dict[str, Any]:
        return self.peer.describe()

    async def read_frames(
        self, out: anyio.abc.ObjectSendStream[SessionMessage | Exception], opening: tuple[Frame, ...]
    ) -> None:
        """Dispatch every line until the client's EOF; ``opening`` holds the first line's frame
        when it was no preamble."""
        async with out:
            with self._reading:
                for frame in opening:
                    await self._dispatch(frame, out)
                while True:
                    if len(self._outstanding) >= self._max_calls_in_flight:
                        await self._outstanding.wait_below(self._max_calls_in_flight)
                    if (line := await self._lines.next_line()) is None:
                        break
                    if isinstance(line, OverlongLine) or line.strip():
                        await self._dispatch(framing.decode_frame(line), out)
            with anyio.move_on_after(self._drain_timeout_s):
                await self._outstanding.wait_empty()
            await self._give_up()

    async def _give_up(self) -> None:
        """The calls still running after the drain are cancelled, and each is answered under its
        own id with why, instead of the SDK's bare "Connection closed" (or, on the fast path,
        no answer at all): the client, or the shim relaying for it, learns what became of it."""
        pending = self._outstanding.pending()
        if not pending:
            return
        if self._reading.cancel_called:
            why = "the coordinatord daemon is stopping"
        else:
            limit = f"server.drain_timeout_s = {self._drain_timeout_s:g}"
            why = f"the client closed its end and the call ran past {limit}"
        message = f"{why}; this call was cancelled and may or may not have taken effect"
        if self._fast is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._drain_timeout_s):
                await self._fast.close()
        for request_id in pending:
            self._given_up.add(request_id)
            self._outstanding.discard(request_id)
            await self._send_reply(framing.error_line(framing.CANCELLED, message, request_id))
        log.info(
            "calls_given_up", conn=self.peer.conn_id, count=len(pending), stopping=self._reading.cancel_called
        )

    def stop_reading(self) -> None:
        """Shutdown: read no more requests. Replies still due are written, then the daemon
        half-closes, so the client reads every byte before it sees the end."""
        self._reading.cancel()

    async def _dispatch(
        self, frame: Frame, out: anyio.abc.ObjectSendStream[SessionMessage | Exception]
    ) -> None:
        """One line's frame to the fast path, the SDK, or back to the client as its error."""
        if isinstance(frame, BadLine):
            await self._answer_bad(frame)
            return
        fast = self._fast
        if fast is not None:
            if isinstance(frame, Call):
                if frame.meta is NO_META:
                    if fast.enabled:
                        self._outstanding.add(frame.id)
                        fast.start(frame.id, frame.name, frame.arguments)
                        return
                elif fast.new_era and frame.plain:
                    agent = fast.envelope_agent(frame.meta)
                    if agent is not None:
                        self._outstanding.add(frame.id)
                        fast.start(frame.id, frame.name, frame.arguments, agent)
                        return
            elif isinstance(frame, Cancel):
                fast.cancel(frame.request_id)
        message = framing.to_message(frame.value)
        if isinstance(message, BadLine):
            await self._answer_bad(message)
            return
        request = message.message
        if isinstance(request, JSONRPCRequest):
            self._outstanding.add(request.id)
            if fast is not None:
                if not fast.era_decided:
                    # The SDK's era is the first request's it reads, which is this one.
                    fast.saw_opening(request.method, request.params)
                if request.method == "initialize":
                    fast.saw_initialize(request.id, request.params)
        await out.send(message)

    async def _answer_bad(self, frame: BadLine) -> None:
        log.warning("bad_frame", conn=self.peer.conn_id, kind=frame.kind, answered=frame.reply is not None)
        if frame.reply is not None:
            await self._send_reply(frame.reply)

    async def _send_reply(self, data: bytes) -> None:
        # A client that left has nowhere for its reply to go.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            await self._sender.send(data)

    async def write_frames(self, frames: anyio.abc.ObjectReceiveStream[SessionMessage]) -> None:
        async with frames:
            try:
                async for frame in frames:
                    message = frame.message
                    if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id in self._given_up:
                        self._given_up.discard(message.id)  # already answered by _give_up
                        continue
                    await self._sender.send(_encode(message))
                    if isinstance(message, JSONRPCResponse | JSONRPCError):
                        self._outstanding.discard(message.id)
                        if self._fast is not None:
                            self._fast.saw_reply(message.id, ok=isinstance(message, JSONRPCResponse))
                # Half-close once every reply is out: the shim sees EOF and exits cleanly.
                with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._stream.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                # The peer went away; drain so the MCP loop never blocks on a dead connection.
                async for _ in frames:
                    pass


def _encode(message: JSONRPCMessage) -> bytes:
    """A message of the SDK's as one line. Should one ever fail to serialise, its request is
    answered with an internal error instead: a reply that cannot be written must not end the
    connection (the writer's failure would)."""
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    except Exception:
        log.exception("reply_not_serialisable", kind=type(message).__name__)
        request_id = message.id if isinstance(message, JSONRPCResponse | JSONRPCError) else None
        if request_id is None:
            return b""
        return framing.error_line(
            INTERNAL_ERROR, "Internal error: the reply could not be serialised", request_id
        )
