"""A connection's bytes through an asyncio protocol: the daemon's hot path for every request.

anyio's socket stream (what the listener hands out) costs, per request and per reply, a
checkpoint (one extra turn of the event loop) and, when no data is waiting, an
``add_reader``/``remove_reader`` pair; with sixteen busy editors that was a fifth of the
daemon's time. Here the event loop delivers data to :meth:`_Protocol.data_received` as it
arrives and replies go straight into the transport's buffer, so a request costs one turn to
read and none to answer. The interface is the small part of anyio's byte stream the server
uses (``receive``, ``send``, ``send_eof``, ``aclose``) with anyio's exceptions, so the rest of
the server does not know the difference.

Flow control both ways: reading pauses while :data:`READ_BUFFER_MAX` bytes wait unread (a
flooding client cannot grow the daemon's memory), and ``send`` waits while the transport's
write buffer is over its high-water mark (a client that does not read its replies slows down
only its own connection).
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import cast

import anyio

READ_BUFFER_MAX = 1024 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.reading_paused = False
        self._data_waiter: asyncio.Future[None] | None = None  # one reader per connection
        # Every sender waiting for the write buffer to drain: replies of concurrent calls send
        # side by side, and each must be woken (one slot lost all but the last, for ever).
        self._drain_waiters: set[asyncio.Future[None]] = set()
        self._writing_paused = False

    # --- the event loop's side ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport subclass (uvloop's are not).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_BUFFER_MAX and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # half-close: replies still go out after the client's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter, self._data_waiter = self._data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- the stream's side -------------------------------------------------------------------

    async def wait_for_data(self) -> None:
        waiter = self._data_waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._data_waiter = None

    async def drain(self) -> None:
        while self._writing_paused and not self.lost:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.add(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.discard(waiter)


class ProtocolStream:
    """An accepted connection as a byte stream (see the module's docstring)."""

    def __init__(self, raw_socket: socket.socket, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.raw_socket = raw_socket
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def wrap(cls, raw_socket: socket.socket) -> ProtocolStream:
        """Take over an accepted socket (nothing may have read from it yet)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(_Protocol, sock=raw_socket)
        return cls(raw_socket, transport, protocol)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """What has arrived (at most ``max_bytes``), waiting for some if nothing has."""
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.eof:
                raise anyio.EndOfStream
            await protocol.wait_for_data()
        data = bytes(protocol.buffer[:max_bytes])
        del protocol.buffer[:max_bytes]
        if protocol.reading_paused and len(protocol.buffer) <= READ_BUFFER_MAX // 2:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        """Write ``data`` whole: the transport takes it in one piece, so concurrent senders
        (replies of calls running side by side) never interleave and need no lock."""
        if self._protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._transport.write(data)
        await self._protocol.drain()

    async def send_eof(self) -> None:
        if not (self._protocol.lost or self._transport.is_closing()):
            self._transport.write_eof()

    async def aclose(self) -> None:
        self._transport.close()

    async def __aenter__(self) -> ProtocolStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
