"""What the shim reads of each line: just enough to know which requests wait for a reply.

The shim does not validate MCP: the daemon does. It only needs, for a line from the editor,
whether it is a request (and its id and method) or a notification (and which request a
``notifications/cancelled`` withdraws); for a line from the daemon, whether it answers a request
(and which) or refuses the connection. Pure functions, standard library only.
"""

from __future__ import annotations

import json
import re

from coordinatord.request_id import RequestId, read_id

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PARSE_LIMIT = 64 * 1024
"""Lines up to this size are parsed whole; longer ones (large values) only have their id read."""

REQUEST, NOTIFICATION, RESPONSE, UNREADABLE = range(4)

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
# How the daemon writes every reply (the SDK's and the fast path's): jsonrpc, then id, then the
# result or error. One match reads the id without parsing the result, which may be megabytes.
_REPLY_HEAD = re.compile(
    rb'\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(' + _STRING + rb'|-?[0-9]+|null)\s*,\s*"(result|error)"'
)


class ClientLine:
    """One line from the editor. (Not a dataclass: its import costs the shim milliseconds.)"""

    __slots__ = ("cancels", "kind", "method", "request_id")

    def __init__(
        self,
        kind: int,
        request_id: RequestId | None = None,
        method: str | None = None,
        cancels: RequestId | None = None,
    ) -> None:
        self.kind = kind
        self.request_id = request_id
        self.method = method
        self.cancels = cancels


def client_line(line: bytes) -> ClientLine:
    """Classify a line the editor wrote: a request (with a usable id), a notification, a
    response (to a request of the daemon's), or something unreadable the daemon will answer."""
    if len(line) > PARSE_LIMIT:
        return _unparsed(line)  # a tools/call with a large value: read its id, not the value
    try:
        message: Any = json.loads(line)
    except (ValueError, RecursionError):
        return _unparsed(line)
    if not isinstance(message, dict):
        return ClientLine(UNREADABLE)
    method = message.get("method")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        request_id = None
    if not isinstance(method, str):
        return ClientLine(RESPONSE if "id" in message else UNREADABLE, request_id)
    if "id" not in message:
        cancels = None
        if method == "notifications/cancelled":
            params = message.get("params")
            cancels = params.get("requestId") if isinstance(params, dict) else None
            if isinstance(cancels, bool) or not isinstance(cancels, str | int):
                cancels = None
        return ClientLine(NOTIFICATION, method=method, cancels=cancels)
    if request_id is None:
        return ClientLine(UNREADABLE)  # an id the daemon will refuse; nothing to track
    return ClientLine(REQUEST, request_id, method)


def _unparsed(line: bytes) -> ClientLine:
    """A line not parsed whole: a request if it has an id and names a method (the daemon
    answers it, even if only with an error), else nothing the shim can track."""
    request_id = read_id(line)
    if request_id is not None and b'"method"' in line[:PARSE_LIMIT]:
        return ClientLine(REQUEST, request_id)
    return ClientLine(UNREADABLE, request_id)


class DaemonLine:
    """One line from the daemon: a reply to ``request_id``, a refusal, or anything else."""

    __slots__ = ("is_error", "refusal", "request_id")

    def __init__(
        self, request_id: RequestId | None, is_error: bool = False, refusal: Refusal | None = None
    ) -> None:
        self.request_id = request_id
        self.is_error = is_error
        self.refusal = refusal


class Refusal:
    """The daemon refused this connection at its first line (``error.data.refused``)."""

    __slots__ = ("message", "retry")

    def __init__(self, message: str, retry: bool) -> None:
        self.message = message
        self.retry = retry


NOT_A_REPLY = DaemonLine(None)


def daemon_line(line: bytes) -> DaemonLine:
    """Classify a line the daemon wrote. Replies are read from their first bytes only."""
    match = _REPLY_HEAD.match(line)
    if match is not None and match.group(1) != b"null":
        return DaemonLine(_decode_id(match.group(1)), is_error=match.group(2) == b"error")
    if len(line) > PARSE_LIMIT:
        return NOT_A_REPLY
    try:
        message: Any = json.loads(line)
    except (ValueError, RecursionError):
        return NOT_A_REPLY
    if not isinstance(message, dict) or "method" in message:
        return NOT_A_REPLY  # a request or notification of the daemon's, for the editor
    error = message.get("error")
    if message.get("id") is None and isinstance(error, dict):
        data = error.get("data")
        if isinstance(data, dict) and data.get("refused") is True:
            return DaemonLine(None, True, Refusal(str(error.get("message", "")), data.get("retry") is True))
        return DaemonLine(None, True)
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return NOT_A_REPLY
    return DaemonLine(request_id, is_error=isinstance(error, dict))


def _decode_id(raw: bytes) -> RequestId | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def error_reply(request_id: RequestId | None, code: int, message: str) -> bytes:
    reply = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
