"""framing: one parse per line, every failure a reply under the request's id, and the same
messages accepted as the SDK's own parser (pydantic's validate_json) accepted."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCRequest, jsonrpc_message_adapter

from coordinatord.request_id import HEAD_BYTES
from coordinatord.server import framing
from coordinatord.server.framing import MAX_DEPTH, BadLine, decode, to_message
from coordinatord.server.line_reader import OverlongLine


def reply_of(result: object) -> dict[str, Any] | None:
    assert isinstance(result, BadLine), result
    return None if result.reply is None else dict(json.loads(result.reply))


def served(line: bytes) -> SessionMessage | BadLine:
    """What the daemon makes of a line that goes to the SDK."""
    value = decode(line)
    return value if isinstance(value, BadLine) else to_message(value)


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def request(params: str, request_id: str = "7") -> bytes:
    return f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{params}}}'.encode()


def test_a_line_is_parsed_to_its_value() -> None:
    """A good line comes back as its JSON value, ready for the fast path or the SDK."""
    line = request('{"name":"redis_get","arguments":{"key":"k"}}')
    assert decode(line) == json.loads(line)
    message = served(line)
    assert isinstance(message, SessionMessage) and isinstance(message.message, JSONRPCRequest)


@pytest.mark.parametrize(
    ("line", "code", "request_id", "words"),
    [
        (b"\xff\xfe not json at all", -32700, None, "Parse error: not valid UTF-8"),
        (b'{"jsonrpc":"2.0","id":5,"method":"x","params":{"a":"\xff"}}', -32700, 5, "not valid UTF-8"),
        (
            b'{"jsonrpc":"2.0","id":"r1","method":"x","params":{"a":',
            -32700,
            "r1",
            "Parse error: not valid JSON",
        ),
        (b"\xef\xbb\xbf" + request("{}"), -32700, None, "Parse error"),  # a BOM, as pydantic refuses it
        (request("{}").replace(b"{}", b'{"a":"\xed\xa0\x80"}'), -32700, 7, "not valid UTF-8"),  # a surrogate
        (request(nested(100_000)), -32600, 7, "nested too deeply"),
        (request('{"a":' + nested(MAX_DEPTH) + "}"), -32600, 7, "nested too deeply"),
        (request('{"a":"\\ud800"}'), -32600, 7, "lone surrogate"),
        (request('{"\\udfff":1}', '"x"'), -32600, "x", "lone surrogate"),
        (request('{"n":' + "9" * 5000 + "}"), -32600, 7, "number too long"),
        (request("{}", "9" * 5000), -32600, None, "number too long"),
        (nested(10_000).encode(), -32600, None, "nested too deeply"),
    ],
)
def test_lines_that_cannot_be_served_are_answered_under_their_id(
    line: bytes, code: int, request_id: object, words: str
) -> None:
    """Each way a line fails gets its code and message, with the id when it can be read."""
    reply = reply_of(served(line))
    assert reply is not None
    assert reply["id"] == request_id
    assert reply["error"]["code"] == code
    assert words in reply["error"]["message"]


@pytest.mark.parametrize(
    ("value", "request_id", "words"),
    [
        ({"id": 9, "no": "method"}, 9, "not a JSON-RPC 2.0 message"),
        ({"jsonrpc": "2.0", "id": "a", "method": 5}, "a", "not a JSON-RPC"),
        ({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": [1]}, 3, "not a JSON-RPC"),
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, 3, "not a JSON-RPC"),
        ({}, None, "not a JSON-RPC"),
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], None, "batch"),
        ([], None, "batch"),
        ("text", None, "not a JSON-RPC"),
        (None, None, "not a JSON-RPC"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None, "id must be a string or an integer"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None, "id must be"),
    ],
)
def test_json_that_is_no_message_gets_invalid_request(value: object, request_id: object, words: str) -> None:
    """JSON that is not JSON-RPC is -32600, under its id when it has a usable one."""
    reply = reply_of(to_message(value))
    assert reply is not None
    assert (reply["id"], reply["error"]["code"]) == (request_id, -32600)
    assert words in reply["error"]["message"]


@pytest.mark.parametrize(
    "value",
    [
        {"jsonrpc": "2.0", "method": "notifications/x", "params": 5},
        {"jsonrpc": "1.0", "method": "notifications/x"},
        {"jsonrpc": "2.0", "id": 4, "result": 5},
        {"jsonrpc": "2.0", "id": None, "error": {"code": "x"}},
    ],
)
def test_bad_notifications_and_responses_get_nothing(value: object) -> None:
    """JSON-RPC answers neither a notification nor a response, bad or not."""
    assert reply_of(to_message(value)) is None


def test_a_notification_too_deep_is_not_answered_once_parsed() -> None:
    """Parsed, a notification is known to be one; one too deep to parse at all is answered."""
    parsed = f'{{"jsonrpc":"2.0","method":"x","params":{{"a":{nested(MAX_DEPTH)}}}}}'.encode()
    assert reply_of(decode(parsed)) is None
    unparsed = f'{{"jsonrpc":"2.0","method":"x","params":{{"a":{nested(50_000)}}}}}'.encode()
    assert reply_of(decode(unparsed)) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": framing.TOO_DEEP},
    }


def test_max_depth_is_where_pydantic_stops() -> None:
    """MAX_DEPTH is pydantic's own limit, so both paths refuse the same lines."""
    pydantic_core.from_json(nested(MAX_DEPTH))
    with pytest.raises(ValueError, match="recursion limit"):
        pydantic_core.from_json(nested(MAX_DEPTH + 1))
    assert not isinstance(decode(nested(MAX_DEPTH).encode()), BadLine)
    assert isinstance(decode(nested(MAX_DEPTH + 1).encode()), BadLine)
    mixed = ('{"a":' * (MAX_DEPTH // 2) + "[" * (MAX_DEPTH - MAX_DEPTH // 2)).encode()
    closed = mixed + b"]" * (MAX_DEPTH - MAX_DEPTH // 2) + b"}" * (MAX_DEPTH // 2)
    pydantic_core.from_json(closed)
    assert not isinstance(decode(closed), BadLine)


def test_shape_check_does_not_recurse() -> None:
    """A value deeper than any stack is checked without recursion."""
    value: list[Any] = []
    for _ in range(200_000):
        value = [value]
    assert framing.shape_problem(value) == ("too_deep", framing.TOO_DEEP)
    assert framing.shape_problem({"k": ["ok", {"x": 1.5}], "s": "\U0001f600"}) is None


def test_an_overlong_line_is_answered_under_the_id_at_either_end() -> None:
    """The id is read from the kept head, or from the tail when it comes last."""
    head = b'{"jsonrpc":"2.0","id":"first","method":"tools/call","params":{"v":"' + b"x" * HEAD_BYTES
    reply = reply_of(decode(OverlongLine(head, b'xxxx"}}', 10_000_000, 4096)))
    assert reply == {
        "jsonrpc": "2.0",
        "id": "first",
        "error": {
            "code": -32600,
            "message": "Invalid Request: message longer than server.max_line_bytes = 4096 bytes",
        },
    }
    tail = b'xxxx"}, "id": 12}'
    assert reply_of(decode(OverlongLine(b'{"params":{"v":"xxxx', tail, 10_000_000, 4096)))["id"] == 12  # type: ignore[index]
    assert reply_of(decode(OverlongLine(b"[[[[", b"]]]]", 10_000_000, 4096)))["id"] is None  # type: ignore[index]


def test_refusals_say_so_and_whether_to_retry() -> None:
    """A refusal carries data.refused, and data.retry only for a full daemon."""
    busy = json.loads(framing.refusal("too many connections", retry=True))
    assert busy["error"] == {
        "code": -32001,
        "message": "too many connections",
        "data": {"refused": True, "retry": True},
    }
    bad = json.loads(framing.refusal("bad coordinatord preamble: x", retry=False))
    assert (bad["id"], bad["error"]["code"], bad["error"]["data"]) == (
        None,
        -32600,
        {"refused": True, "retry": False},
    )


# --- the same messages as validate_json ---------------------------------------------------------

ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["\ud800", "\udc00x", "\U0001f600", "\x00"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
members = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": ids,
        "method": st.sampled_from(["tools/call", "ping", "notifications/cancelled", "initialize"])
        | json_leaves,
        "params": st.dictionaries(st.text(max_size=4), json_values, max_size=3) | json_values,
        "result": st.dictionaries(st.text(max_size=4), json_values, max_size=2) | json_values,
        "error": st.fixed_dictionaries({"code": st.integers() | json_leaves, "message": st.text(max_size=5)}),
    },
)


def mutated(data: st.DataObject, line: bytes) -> bytes:
    """The line, or the line broken in one of the ways clients and fuzzers break lines."""
    how = data.draw(st.sampled_from(["as is", "truncated", "byte", "deep", "bom", "spaces"]))
    if how == "truncated":
        return line[: data.draw(st.integers(0, max(0, len(line) - 1)))]
    if how == "byte":
        at = data.draw(st.integers(0, len(line)))
        return line[:at] + bytes([data.draw(st.integers(0, 255))]) + line[at:]
    if how == "deep":
        depth = data.draw(st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 5, 1500]))
        return line.replace(b'"params":', b'"params":' + b"[" * depth, 1) + b"]" * depth
    if how == "bom":
        return b"\xef\xbb\xbf" + line
    if how == "spaces":
        return b" \t" + line + b" \r"
    return line


@settings(max_examples=600, derandomize=True, deadline=None)
@given(message=members, data=st.data())
@example(message={"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"a": "\ud800"}}, data=None)
def test_accepts_exactly_what_validate_json_accepted(
    message: dict[str, Any], data: st.DataObject | None
) -> None:
    """decode then to_message builds a message exactly when validate_json did, and the same one."""
    line = json.dumps(message).encode() if data is None else mutated(data, json.dumps(message).encode())
    try:
        expected: object = jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError:
        expected = None
    got = served(line)
    if expected is None:
        assert isinstance(got, BadLine), line
    else:
        # A float or boolean id: the SDK took the request for a notification; it is refused here.
        if isinstance(message.get("id"), bool | float) and "method" in message and isinstance(got, BadLine):
            assert got.kind == "bad_id"
            return
        assert isinstance(got, SessionMessage), (line, got)
        assert got.message == expected


@settings(max_examples=400, derandomize=True, deadline=None)
@given(line=st.binary(max_size=300))
def test_decode_never_raises(line: bytes) -> None:
    """Any bytes at all: a value, or a BadLine whose error line (if one is owed) is valid JSON."""
    result = decode(line)
    if isinstance(result, BadLine):
        assert result.reply is None or json.loads(result.reply)["error"]["code"] in (-32700, -32600)
    else:
        assert isinstance(to_message(result), SessionMessage | BadLine)
