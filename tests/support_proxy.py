"""A loopback TCP proxy in front of a real Valkey that loses replies the way a flaky network does.

Listens on 127.0.0.1 (a free port) and forwards each connection to the server's Unix socket,
reading both directions as RESP so it knows which reply answers which command. When armed
(:attr:`ReplyLosingProxy.losing`), the first reply to each exactly-once write (a command naming a
write record, ``..._once:<write id>``) is not forwarded: the proxy keeps it, runs
:attr:`on_lost` (a test may kill the server there), and closes the client's connection, so the
client sees the connection break after the server applied the command and resends it. The reply
to that resend is kept too, so a test can compare the two byte for byte.

Bounded: at most :data:`MAX_CONNECTIONS` connections at once (more are closed at once), every
socket has a timeout, and :meth:`close` ends every thread.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 60.0
WRITE_ID = re.compile(rb"_once:([0-9a-f]+-[0-9a-f]+\.[0-9]+)")


def resp_end(data: bytes | bytearray, at: int = 0) -> int | None:
    """Where the RESP value starting at ``at`` ends, or ``None`` when ``data`` holds only part
    of it."""
    line_end = data.find(b"\r\n", at)
    if line_end < 0:
        return None
    kind, head = data[at : at + 1], data[at + 1 : line_end]
    after = line_end + 2
    if kind in (b"+", b"-", b":"):
        return after
    if kind == b"$":
        size = int(head)
        if size < 0:
            return after
        return after + size + 2 if len(data) >= after + size + 2 else None
    if kind == b"*":
        count = int(head)
        for _ in range(max(count, 0)):
            end = resp_end(data, after)
            if end is None:
                return None
            after = end
        return after
    raise ValueError(f"not RESP at byte {at}: {bytes(data[at : at + 20])!r}")


def _split(buffer: bytearray) -> list[bytes]:
    """The complete RESP values at the start of ``buffer`` (taken out of it)."""
    values = []
    while buffer:
        end = resp_end(buffer)
        if end is None:
            break
        values.append(bytes(buffer[:end]))
        del buffer[:end]
    return values


class ReplyLosingProxy:
    def __init__(self, upstream: Path, chance: float = 1.0, seed: int | None = None) -> None:
        """``chance``: while armed, the share of write ids whose first reply is lost (1: every
        one, as the tests want; bench/chaos.py loses a few at random, drawn from ``seed``)."""
        self._upstream = upstream
        self._chance = chance
        self._random = random.Random(seed)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.losing = False
        """Armed: the first reply to each write id is lost (and kept in :attr:`lost`)."""
        self.on_lost: Callable[[], None] | None = None
        self.lost: dict[str, bytes] = {}
        """Write id → the reply the client never got."""
        self.resent: dict[str, bytes] = {}
        """Write id → the reply to its resend (the one the client got)."""
        self.answered: dict[str, int] = {}
        """Write id → how many times the server answered a command carrying it (NOSCRIPT aside:
        the EVALSHA a server without the script refuses is not the write)."""
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._sockets) >= 2 * MAX_CONNECTIONS:
                    client.close()
                    continue
                try:
                    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    server.settimeout(5)
                    server.connect(str(self._upstream))
                except OSError:
                    server.close()
                    client.close()  # the server is down: the client sees a refused connection
                    continue
                self._sockets |= {client, server}
                expected: deque[str | None] = deque()
                for target, args in (
                    (self._commands, (client, server, expected)),
                    (self._replies, (server, client, expected)),
                ):
                    thread = threading.Thread(target=target, args=args, daemon=True)
                    self._threads.append(thread)
                    thread.start()

    def _commands(self, client: socket.socket, server: socket.socket, expected: deque[str | None]) -> None:
        """Client to server: note, per command, the write id it carries (if any)."""
        client.settimeout(IDLE_TIMEOUT_S)
        buffer = bytearray()
        try:
            while chunk := client.recv(65536):
                buffer += chunk
                commands = _split(buffer)
                for command in commands:
                    found = WRITE_ID.search(command)
                    expected.append(found.group(1).decode() if found else None)
                if commands:
                    server.sendall(b"".join(commands))
        except OSError:
            pass
        finally:
            self._close(client, server)

    def _replies(self, server: socket.socket, client: socket.socket, expected: deque[str | None]) -> None:
        """Server to client: lose the first reply of each write id while armed."""
        server.settimeout(IDLE_TIMEOUT_S)
        buffer = bytearray()
        try:
            while chunk := server.recv(65536):
                buffer += chunk
                for reply in _split(buffer):
                    write_id = expected.popleft() if expected else None
                    if write_id is not None and self._lose(write_id, reply):
                        if self.on_lost is not None:
                            self.on_lost()
                        return  # closes both: the client's read fails, and it resends
                    client.sendall(reply)
        except OSError:
            pass
        finally:
            self._close(client, server)

    def _lose(self, write_id: str, reply: bytes) -> bool:
        if reply.startswith(b"-NOSCRIPT"):
            return False  # the client sends the write again with EVAL: that one counts
        with self._lock:
            self.answered[write_id] = self.answered.get(write_id, 0) + 1
            if write_id in self.lost:
                self.resent.setdefault(write_id, reply)
                return False
            if not self.losing or self._random.random() >= self._chance:
                return False
            self.lost[write_id] = reply
            return True

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                if sock in self._sockets:
                    self._sockets.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._close(*list(self._sockets))
        self._accepter.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def reply_losing_proxy(upstream: Path) -> Iterator[ReplyLosingProxy]:
    """A proxy on 127.0.0.1 in front of the Valkey at Unix socket ``upstream``; closed on exit."""
    proxy = ReplyLosingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
