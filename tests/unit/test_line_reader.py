"""LineReader over a real socket pair: lines, and over-long lines skipped with their ends kept."""

from __future__ import annotations

import socket
import threading

import pytest

from coordinatord.request_id import HEAD_BYTES
from coordinatord.server.line_reader import LineReader, OverlongLine
from coordinatord.server.sockio import ProtocolStream

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024


async def read_all(data: bytes, limit: int = LIMIT, chunk: int = 7919) -> list[bytes | OverlongLine]:
    """Everything a reader makes of ``data`` written in ``chunk``-byte pieces, then EOF."""
    ours, theirs = socket.socketpair()

    def write() -> None:
        with theirs:
            for start in range(0, len(data), chunk):
                theirs.sendall(data[start : start + chunk])
            theirs.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        async with await ProtocolStream.wrap(ours) as stream:
            reader = LineReader(stream, limit)
            lines: list[bytes | OverlongLine] = []
            while (line := await reader.next_line()) is not None:
                lines.append(line)
            return lines
    finally:
        writer.join(timeout=10)


async def test_lines_split_at_newlines_and_the_last_needs_none() -> None:
    """Newline-delimited lines come back without their newline; an unterminated last one too."""
    assert await read_all(b'{"a":1}\n\n{"b":2}\nend') == [b'{"a":1}', b"", b'{"b":2}', b"end"]


@pytest.mark.parametrize("chunk", [1000, 300 * 1024])
async def test_an_overlong_line_is_skipped_keeping_its_ends(chunk: int) -> None:
    """Above the cap, in many pieces or in one: the head and tail are kept, and the next line
    is read as usual."""
    head = b'{"jsonrpc":"2.0","id":"first","method":"x","params":{"v":"'
    body = head + b"y" * (3 * LIMIT) + b'"},"id":"last"}'
    lines = await read_all(body + b'\n{"next":1}\n', chunk=chunk)
    assert len(lines) == 2 and lines[1] == b'{"next":1}'
    overlong = lines[0]
    assert isinstance(overlong, OverlongLine)
    assert overlong.head == body[:HEAD_BYTES]
    assert overlong.tail == body[-HEAD_BYTES:]
    assert (overlong.length, overlong.limit) == (len(body), LIMIT)


async def test_a_line_at_the_cap_is_a_line() -> None:
    """Exactly max_line bytes is still a line; one more is not."""
    at_cap = b"x" * LIMIT
    lines = await read_all(at_cap + b"\n" + at_cap + b"x\n")
    assert lines[0] == at_cap
    assert isinstance(lines[1], OverlongLine) and lines[1].length == LIMIT + 1


async def test_an_overlong_line_cut_by_eof_still_comes_back() -> None:
    """A client that leaves in the middle of a huge line: what was read is reported once."""
    lines = await read_all(b"[" * (2 * LIMIT))
    assert len(lines) == 1 and isinstance(lines[0], OverlongLine)
    assert lines[0].head == b"[" * HEAD_BYTES and lines[0].length == 2 * LIMIT
