"""Newline-delimited lines from a connection's byte stream, each at most ``server.max_line_bytes``.

A line above the cap is skipped, not buffered: what the daemon keeps of it is its first and its
last :data:`~coordinatord.request_id.HEAD_BYTES` bytes (an :class:`OverlongLine`), which is
where a request's id is found, so the error for it can still carry that id. Memory per
connection stays at about the cap plus one receive, whatever a client sends.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from coordinatord.request_id import HEAD_BYTES

RECEIVE_CHUNK = 256 * 1024


class ByteSource(Protocol):
    async def receive(self, max_bytes: int = ...) -> bytes: ...


class OverlongLine:
    """A line longer than the cap (``limit``): its two ends and its length, skipped bytes included."""

    __slots__ = ("head", "length", "limit", "tail")

    def __init__(self, head: bytes, tail: bytes, length: int, limit: int) -> None:
        self.head = head
        self.tail = tail
        self.length = length
        self.limit = limit


class LineReader:
    """Lines (without their newline) from ``stream``; ``max_line`` is the cap on a line's size."""

    def __init__(self, stream: ByteSource, max_line: int) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._eof = False

    async def next_line(self) -> bytes | OverlongLine | None:
        """The next line, an :class:`OverlongLine` for one above the cap (skipped by then), or
        ``None`` at the end of the stream."""
        scanned = 0  # the buffer up to here has no newline: don't search it again
        while True:
            newline = self._buffer.find(b"\n", scanned)
            if newline > self._max_line:
                return self._cut(newline)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            scanned = len(self._buffer)
            if scanned > self._max_line:
                return await self._skip_rest()
            if self._eof:
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            await self._fill()

    def _cut(self, newline: int) -> OverlongLine:
        """A whole over-long line is in the buffer (it came in one receive): keep its ends."""
        buffer = self._buffer
        head = bytes(buffer[: min(HEAD_BYTES, newline)])
        tail = bytes(buffer[max(0, newline - HEAD_BYTES) : newline])
        del buffer[: newline + 1]
        return OverlongLine(head, tail, newline, self._max_line)

    async def _skip_rest(self) -> OverlongLine:
        """Read past the rest of an over-long line, keeping only its head and a rolling tail."""
        buffer = self._buffer
        head = bytes(buffer[:HEAD_BYTES])
        tail = bytes(buffer[-HEAD_BYTES:])
        length = len(buffer)
        buffer.clear()
        while not self._eof:
            await self._fill()
            newline = buffer.find(b"\n")
            end = newline if newline >= 0 else len(buffer)
            tail = (tail + buffer[max(0, end - HEAD_BYTES) : end])[-HEAD_BYTES:]
            length += end
            if newline >= 0:
                del buffer[: newline + 1]
                return OverlongLine(head, tail, length, self._max_line)
            buffer.clear()
        return OverlongLine(head, tail, length, self._max_line)

    async def _fill(self) -> None:
        try:
            self._buffer += await self._stream.receive(RECEIVE_CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            self._eof = True
