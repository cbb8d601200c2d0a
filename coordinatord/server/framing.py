"""Each line a connection carries, parsed once and told apart: a typed frame to serve, or a
:class:`BadLine` holding the JSON-RPC error it gets instead.

:func:`decode` runs ``json.loads`` exactly once per line and turns every way that can fail into
a :class:`BadLine`, so no line, however hostile, ends a connection. :func:`decode_frame` (and
:func:`frame_of`, for a value already decoded) then says once what the line is: a well-formed
``tools/call`` (:class:`Call`), a ``notifications/cancelled`` (:class:`Cancel`) or anything else
(:class:`Other`). Every reader consumes that one frame: the first line's value may be a
preamble (:mod:`coordinatord.preamble`) or a control request (:mod:`coordinatord.control.wire`),
a :class:`Call` may go to the fast path (:mod:`coordinatord.server.fastpath`), a
:class:`Cancel` to both paths, and :func:`to_message` makes the SDK's message of a frame's value.

What a bad line gets back (its id is the request's whenever it can be read: from the parsed
value, else from the raw line by :mod:`coordinatord.request_id`; else ``null``):

- ``-32700 Parse error: …`` — not UTF-8, or not JSON;
- ``-32600 Invalid Request: …`` — JSON nested deeper than :data:`MAX_DEPTH` levels, a string
  with a lone surrogate, a number too long to read, a line longer than
  ``server.max_line_bytes``, a request whose id is neither a string nor an integer (``null``
  id then), or any JSON that is not a JSON-RPC message.

A notification (a message with a ``method`` and no id) or a response (``result``/``error``, no
``method``) that is bad gets nothing back, as JSON-RPC says; a line that could not be parsed at
all cannot be told to be one, so it is always answered.

The SDK parsed lines with pydantic's ``validate_json``, the reference for what a message is.
``json.loads`` then ``validate_python`` (what :func:`to_message` does) accepts exactly the same
messages once :func:`decode` refuses what only ``json.loads`` takes: bytes that are not strict
UTF-8 (``json.loads`` of bytes lets encoded surrogates through and guesses UTF-16/32), a UTF-8
byte-order mark, lone surrogate escapes (``"\\ud800"``), and nesting deeper than pydantic's
parser goes (``json.loads`` goes on until the interpreter's recursion limit, about 1 000).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from coordinatord.request_id import read_id, read_id_from_ends
from coordinatord.server.line_reader import OverlongLine

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SERVER_BUSY = -32001
CANCELLED = -32002
"""A call given up before it was answered (the daemon stopping, or a client that left): it may
or may not have taken effect. The shim answers calls cut off by a lost connection with the same
code (``coordinatord.shim.relay.DAEMON_RESTARTED``)."""

MAX_DEPTH = 201
"""The deepest nesting of arrays and objects accepted, the outermost one counting 1: what
pydantic's JSON parser (jiter) accepts, so the fast path and the SDK agree."""

TOO_DEEP = f"Invalid Request: nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"
LONE_SURROGATE = "Invalid Request: a string holds a lone surrogate (\\ud800-\\udfff), which is not text"
NOT_JSONRPC = "Invalid Request: not a JSON-RPC 2.0 message"
BATCH = "Invalid Request: a batch (JSON array); send one JSON-RPC message per line"
BAD_ID = "Invalid Request: id must be a string or an integer"

_SURROGATE = re.compile("[\ud800-\udfff]")


class BadLine:
    """A line that is no message to serve: ``kind`` names why (for the log, never the content),
    ``reply`` is the error line owed for it, ``None`` when nothing is."""

    __slots__ = ("kind", "reply")

    def __init__(self, kind: str, reply: bytes | None) -> None:
        self.kind = kind
        self.reply = reply

    def __repr__(self) -> str:
        return f"BadLine({self.kind!r}, {self.reply!r})"


NO_META: Any = object()
""":attr:`Call.meta` of a call whose params hold no ``_meta`` at all (``null`` is a value)."""

_ENVELOPED_KEYS = frozenset({"name", "arguments", "_meta"})


class Call:
    """A well-formed ``tools/call`` the fast path may serve: a string or integer id, a string
    name, arguments an object or absent, and no ``task`` in its params (the SDK's business).

    ``meta`` is the params' ``_meta`` as sent (:data:`NO_META` when absent): a handshake-era
    call is served fast only without one (a progress token is the SDK's), a 2026-07-28 call
    only with its envelope there (:mod:`coordinatord.server.fastpath` checks it). ``plain``:
    the params hold nothing but ``name``, ``arguments`` and ``_meta``. ``value`` is the parsed
    line, for the SDK."""

    __slots__ = ("arguments", "id", "meta", "name", "plain", "value")

    def __init__(
        self,
        value: dict[str, Any],
        request_id: str | int,
        name: str,
        arguments: Any,
        meta: Any = NO_META,
        plain: bool = True,
    ) -> None:
        self.value = value
        self.id = request_id
        self.name = name
        self.arguments: dict[str, Any] | None = arguments
        self.meta = meta
        self.plain = plain


class Cancel:
    """A ``notifications/cancelled`` naming a string or integer ``requestId``: it withdraws a
    fast-path call, and goes to the SDK as well (which may hold the call)."""

    __slots__ = ("request_id", "value")

    def __init__(self, value: dict[str, Any], request_id: str | int) -> None:
        self.value = value
        self.request_id = request_id


class Other:
    """Any other parsed line: the SDK's to read (or to refuse, through :func:`to_message`)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


Frame = Call | Cancel | Other | BadLine


def decode_frame(line: bytes | OverlongLine) -> Frame:
    """The frame ``line`` is: :func:`decode` (its one ``json.loads``), then :func:`frame_of`."""
    value = decode(line)
    return value if isinstance(value, BadLine) else frame_of(value)


def frame_of(value: object) -> Call | Cancel | Other:
    """What a parsed line is. Only reads the top two levels of ``value``: this runs per line."""
    if not isinstance(value, dict):
        return Other(value)
    method = value.get("method")
    if method == "tools/call":
        if value.get("jsonrpc") != "2.0":
            return Other(value)
        request_id, params = value.get("id"), value.get("params")
        if (
            isinstance(request_id, bool)
            or not isinstance(request_id, str | int)
            or not isinstance(params, dict)
        ):
            return Other(value)
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return Other(value)
        if "task" in params:
            return Other(value)
        if "_meta" in params:
            # Only the 2026-07-28 era's calls carry one the fast path serves: the keys check
            # is cheap, and whatever else is in the params is left to the SDK.
            return Call(value, request_id, name, arguments, params["_meta"], params.keys() <= _ENVELOPED_KEYS)
        return Call(value, request_id, name, arguments)
    if method == "notifications/cancelled" and "id" not in value:
        # (With an id it is a request, which cancels nothing: the SDK answers it.)
        params = value.get("params")
        cancelled = params.get("requestId") if isinstance(params, dict) else None
        if isinstance(cancelled, str | int):
            return Cancel(value, cancelled)
    return Other(value)


def error_line(code: int, message: str, request_id: Any = None, data: Any = None) -> bytes:
    """One JSON-RPC error line (``id`` ``null`` unless given)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode() + b"\n"


def refusal(message: str, *, retry: bool) -> bytes:
    """The last line of a connection refused at its first line: ``data`` says it is a refusal
    (a shim must not take it for a crash and reconnect at once) and whether trying again later
    can succeed. A full daemon (``retry``) is ``-32001``; anything the client must fix first is
    ``-32600``."""
    code = SERVER_BUSY if retry else INVALID_REQUEST
    return error_line(code, message, data={"refused": True, "retry": retry})


def decode(line: bytes | OverlongLine) -> object:
    """The JSON value of ``line``, or the :class:`BadLine` it is. Never raises."""
    if isinstance(line, OverlongLine):
        message = f"Invalid Request: message longer than server.max_line_bytes = {line.limit} bytes"
        return BadLine(
            "too_long", error_line(INVALID_REQUEST, message, read_id_from_ends(line.head, line.tail))
        )
    try:
        # Strict UTF-8 first: json.loads of bytes would pass encoded surrogates and guess UTF-16.
        value = json.loads(line.decode())
    except UnicodeDecodeError as exc:
        return _unparsed(line, "not_utf8", PARSE_ERROR, f"Parse error: not valid UTF-8 (at byte {exc.start})")
    except json.JSONDecodeError as exc:
        return _unparsed(line, "not_json", PARSE_ERROR, f"Parse error: not valid JSON ({exc})")
    except RecursionError:
        return _unparsed(line, "too_deep", INVALID_REQUEST, TOO_DEEP)
    except ValueError:  # what is left: an integer with more digits than int() converts
        digits = sys.get_int_max_str_digits()
        message = f"Invalid Request: a number too long to read (more than {digits} digits)"
        return _unparsed(line, "number_too_long", INVALID_REQUEST, message)
    except Exception as exc:  # whatever else decoding raises (MemoryError …) costs this line only
        return _unparsed(line, "undecodable", PARSE_ERROR, f"Parse error: {type(exc).__name__}")
    # Both checks walk the value, so they run only when the raw line allows the problem: deeper
    # than MAX_DEPTH needs that many brackets, a lone surrogate a \ud escape.
    deep = line.count(b"[") + line.count(b"{") > MAX_DEPTH
    if deep or b"\\ud" in line or b"\\uD" in line:
        problem = shape_problem(value)
        if problem is not None:
            kind, message = problem
            return BadLine(kind, owed_reply(value, INVALID_REQUEST, message))
    return value


def shape_problem(value: object) -> tuple[str, str] | None:
    """``(kind, message)`` when ``value`` nests deeper than :data:`MAX_DEPTH` or holds a lone
    surrogate (in a key or a string), else ``None``. Iterative: it must not recurse itself."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return "lone_surrogate", LONE_SURROGATE
            continue
        if depth > MAX_DEPTH:
            return "too_deep", TOO_DEEP
        if isinstance(node, dict):
            pending.extend((key, depth) for key in node)
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        for child in children:
            if isinstance(child, str | list | dict):
                pending.append((child, depth + 1))
    return None


def to_message(value: object) -> SessionMessage | BadLine:
    """The SDK's message made of a value :func:`decode` returned, or the :class:`BadLine` it is."""
    if isinstance(value, dict) and "method" in value:
        request_id = value.get("id")
        # The SDK would take a request with a float or boolean id for a notification and never
        # answer it; its client would wait for ever. (A null id is the SDK's notification too.)
        if request_id is not None and not is_request_id(request_id):
            return BadLine("bad_id", error_line(INVALID_REQUEST, BAD_ID))
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_python(value, by_name=False))
    except Exception:  # ValidationError, or what pydantic raises on a hostile value: no message either way
        if isinstance(value, list):
            return BadLine("batch", error_line(INVALID_REQUEST, BATCH))
        return BadLine("not_jsonrpc", owed_reply(value, INVALID_REQUEST, NOT_JSONRPC))


def is_request_id(value: object) -> bool:
    """A JSON-RPC id MCP allows: a string or an integer (not a boolean, which is an int here)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def owed_reply(value: object, code: int, message: str) -> bytes | None:
    """The error line a parsed but bad message gets: under its id when it has one; none for a
    notification or a response (JSON-RPC answers neither); ``id: null`` for anything else."""
    if isinstance(value, dict):
        if "method" not in value and ("result" in value or "error" in value):
            return None  # a client's response to a request of the daemon's is never answered
        request_id = value.get("id")
        if request_id is None and "method" in value:
            return None
        if is_request_id(request_id):
            return error_line(code, message, request_id)
    return error_line(code, message)


def _unparsed(line: bytes, kind: str, code: int, message: str) -> BadLine:
    """A line ``json.loads`` refused: answered under the id read from its bytes, if any."""
    return BadLine(kind, error_line(code, message, read_id(line)))
