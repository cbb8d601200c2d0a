"""A local Upstash-compatible REST server in front of a real valkey-server: no mocks.

It speaks the part of Upstash's REST API the store uses: ``POST /`` with a JSON command array,
``POST /pipeline`` with an array of them; bearer-token auth (HTTP 401 ``{"error":
"Unauthorized"}``); a refused command as HTTP 400 ``{"error": "ERR ..."}``, inside a pipeline as
an ``{"error"}`` item of an HTTP 200 reply; an ``Upstash-Sync-Token`` header on every reply.

Each HTTP connection (HTTP/1.1, keep-alive) gets its own connection to Valkey's Unix socket;
commands go over it as RESP and replies come back through hiredis, so RESP2 maps one to one onto
Upstash's JSON (strings, integers, arrays, null) and error texts keep their prefix (``NOSCRIPT
...``). The server runs in its own thread (an anyio blocking portal), so an async test and a
daemon child process can both use it. Given an SSL context it serves HTTPS instead.
"""

from __future__ import annotations

import itertools
import json
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import hiredis
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.tls import TLSListener

from tests.support import ValkeyProcess

MAX_HEAD = 64 * 1024
WRITE_ID = re.compile(rb"_once:([0-9a-f]+-[0-9a-f]+\.[0-9]+)")
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


class _Closed(Exception):
    """The client closed the connection between requests."""


class FakeUpstash:
    """The server; :func:`upstash_server` starts one. ``stall`` makes it read requests and never answer."""

    def __init__(
        self, portal: BlockingPortal, valkey_socket: Path, token: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self._portal = portal
        self._valkey_socket = valkey_socket
        self.token = token
        self._tls = tls
        self.port = 0
        self.stall = False
        self.losing = False
        """Armed: a request carrying a write id (an exactly-once script) not seen before is run,
        and its connection closed without an answer, as a network losing the reply does."""
        self.lost: set[str] = set()
        self.paths: list[str] = []  # the path of every authorised request, in order
        self.sync_tokens_seen: list[str] = []  # the upstash-sync-token header of every request
        self._tokens = itertools.count(1)
        self._scope: anyio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the same port once it is known, so a client finds it where it was."""
        _, self.port = self._portal.start_task(self._serve)

    def stop(self) -> None:
        """Close the listener and every open connection: the client sees a dead server."""
        if self._scope is not None:
            self._portal.call(self._scope.cancel)
            self._scope = None

    async def _serve(self, *, task_status: TaskStatus[int]) -> None:
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        port = tcp.extra(SocketAttribute.local_port)
        listener: Listener[Any] = tcp
        if self._tls is not None:
            listener = TLSListener(tcp, self._tls, standard_compatible=False)
        async with listener, anyio.create_task_group() as group:
            self._scope = group.cancel_scope
            task_status.started(port)
            await listener.serve(self._connection, task_group=group)

    async def _connection(self, client: ByteStream) -> None:
        async with client, await anyio.connect_unix(self._valkey_socket) as valkey:
            reader = hiredis.Reader(encoding="utf-8", errors="replace")
            buffer = bytearray()
            with suppress(_Closed, anyio.BrokenResourceError, anyio.ClosedResourceError):
                while True:
                    method, path, headers, body = await _read_request(client, buffer)
                    if self.stall:
                        await anyio.sleep_forever()
                    status, reply = await self._answer(method, path, headers, body, valkey, reader)
                    if self._lose(body, status):
                        return  # applied, and the reply never sent: the client sees a dropped connection
                    await client.send(self._response(status, reply, headers))
                    if headers.get("connection", "").lower() == "close":
                        return

    def _lose(self, body: bytes, status: int) -> bool:
        found = WRITE_ID.search(body)
        if not self.losing or found is None or status != 200:  # a NOSCRIPT refusal is not the write
            return False
        write_id = found.group(1).decode()
        if write_id in self.lost:
            return False
        self.lost.add(write_id)
        return True

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        valkey: ByteStream,
        reader: hiredis.Reader,
    ) -> tuple[int, Any]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthorized"}
        self.paths.append(path)
        self.sync_tokens_seen.append(headers.get("upstash-sync-token", ""))
        if method != "POST":
            return 405, {"error": "Method Not Allowed"}
        try:
            request = json.loads(body)
        except ValueError:
            return 400, {"error": "ERR failed to parse command"}
        if path == "/":
            if not _is_command(request):
                return 400, {"error": "ERR failed to parse command"}
            (reply,) = await _roundtrip(valkey, reader, [request])
            if isinstance(reply, hiredis.ReplyError):
                return 400, {"error": str(reply)}
            return 200, {"result": _jsonable(reply)}
        if path == "/pipeline":
            if not isinstance(request, list) or not request or not all(map(_is_command, request)):
                return 400, {"error": "ERR failed to parse pipeline request"}
            replies = await _roundtrip(valkey, reader, request)
            return 200, [
                {"error": str(r)} if isinstance(r, hiredis.ReplyError) else {"result": _jsonable(r)}
                for r in replies
            ]
        return 404, {"error": "Not Found"}

    def _response(self, status: int, reply: Any, headers: dict[str, str]) -> bytes:
        body = json.dumps(reply).encode()
        head = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if status != 401:
            head.append(f"Upstash-Sync-Token: sync-{next(self._tokens)}")
        if headers.get("connection", "").lower() == "close":
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _is_command(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(part, str | int | float) and not isinstance(part, bool) for part in value)
    )


async def _read_request(stream: ByteStream, buffer: bytearray) -> tuple[str, str, dict[str, str], bytes]:
    """One request from a keep-alive connection: method, path, lower-cased headers, body."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise _Closed
        try:
            buffer += await stream.receive()
        except anyio.EndOfStream:
            raise _Closed from None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        try:
            rest += await stream.receive()
        except anyio.EndOfStream:
            raise _Closed from None
    buffer[:] = rest[length:]
    return method, target.split("?", 1)[0], headers, rest[:length]


def _resp(command: list[Any]) -> bytes:
    parts = [str(part).encode("utf-8", "replace") for part in command]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


async def _roundtrip(valkey: ByteStream, reader: hiredis.Reader, commands: list[list[Any]]) -> list[Any]:
    """Send commands in one write (a pipeline) and read one reply for each."""
    await valkey.send(b"".join(_resp(command) for command in commands))
    replies: list[Any] = []
    while len(replies) < len(commands):
        reply = reader.gets()
        if reply is False:
            reader.feed(await valkey.receive())
        else:
            replies.append(reply)
    return replies


def _jsonable(reply: Any) -> Any:
    if isinstance(reply, list):
        return [_jsonable(item) for item in reply]
    if isinstance(reply, hiredis.ReplyError):
        return str(reply)
    return reply


@contextmanager
def upstash_server(
    valkey: ValkeyProcess, token: str, tls: ssl.SSLContext | None = None
) -> Iterator[FakeUpstash]:
    """A running fake Upstash on 127.0.0.1 (a free port) in front of ``valkey``; HTTPS with ``tls``."""
    with start_blocking_portal() as portal:
        server = FakeUpstash(portal, valkey.socket_path, token, tls)
        server.start()
        try:
            yield server
        finally:
            server.stop()
