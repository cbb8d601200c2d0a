"""What the shim reads of each line: requests and their ids, cancellations, replies, refusals."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from coordinatord.shim import lines

ids = st.integers(min_value=-(2**53), max_value=2**53) | st.text()


def encode(message: object, **dump: object) -> bytes:
    return json.dumps(message, **dump).encode()  # type: ignore[arg-type]


@given(request_id=ids, method=st.text(min_size=1))
def test_a_request_is_read_with_its_id_and_method(request_id: int | str, method: str) -> None:
    """Any request keeps its id and method, whatever the spacing."""
    for spacing in ({}, {"separators": (",", ":")}, {"indent": 1}):
        parsed = lines.client_line(encode({"jsonrpc": "2.0", "id": request_id, "method": method}, **spacing))
        assert (parsed.kind, parsed.request_id, parsed.method) == (lines.REQUEST, request_id, method)


def test_notifications_responses_and_junk() -> None:
    """Notifications carry what they cancel; responses and unreadable lines are told apart."""
    cancel = lines.client_line(
        encode({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
    )
    assert (cancel.kind, cancel.cancels) == (lines.NOTIFICATION, 7)
    initialized = lines.client_line(encode({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    assert (initialized.kind, initialized.method, initialized.cancels) == (
        lines.NOTIFICATION,
        "notifications/initialized",
        None,
    )
    response = lines.client_line(encode({"jsonrpc": "2.0", "id": 3, "result": {}}))
    assert (response.kind, response.request_id) == (lines.RESPONSE, 3)
    assert lines.client_line(b"\xff not json").kind == lines.UNREADABLE
    assert lines.client_line(b"[1, 2]").kind == lines.UNREADABLE
    assert lines.client_line(encode({"id": True, "method": "x"})).kind == lines.UNREADABLE


def test_a_deep_or_large_request_keeps_its_id() -> None:
    """Too deep for json, or larger than the parse limit: still a request, under its id."""
    for depth in (5_000, 50_000):
        deep = b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":' + b"[" * depth + b"]" * depth + b"}"
        parsed = lines.client_line(deep)
        assert (parsed.kind, parsed.request_id) == (lines.REQUEST, 5)
    assert lines.client_line(b'{"id": 6, "result": ' + b"[" * 5_000).kind == lines.UNREADABLE
    big = encode({"jsonrpc": "2.0", "id": "big", "method": "tools/call", "params": {"v": "x" * 100_000}})
    parsed = lines.client_line(big)
    assert (parsed.kind, parsed.request_id) == (lines.REQUEST, "big")


@given(request_id=ids, error=st.booleans())
def test_replies_are_read_from_their_first_bytes(request_id: int | str, error: bool) -> None:
    """The daemon's replies, in the SDK's and the fast path's spellings, give their id."""
    body = {"error": {"code": 1, "message": "m"}} if error else {"result": {"content": ["x" * 10]}}
    for spacing in ({}, {"separators": (",", ":")}):
        parsed = lines.daemon_line(encode({"jsonrpc": "2.0", "id": request_id, **body}, **spacing))
        assert (parsed.request_id, parsed.is_error, parsed.refusal) == (request_id, error, None)


def test_requests_of_the_daemon_are_not_replies() -> None:
    """A request the daemon sends the editor (same id space as nothing of ours) is passed on."""
    assert lines.daemon_line(encode({"jsonrpc": "2.0", "id": 1, "method": "ping"})).request_id is None
    assert lines.daemon_line(encode({"jsonrpc": "2.0", "method": "notifications/message"})).request_id is None


def test_refusals_say_whether_to_retry() -> None:
    """An id-less error with data.refused is a refusal; retry only when it says so."""
    busy = {"code": -32001, "message": "too many", "data": {"refused": True, "retry": True}}
    parsed = lines.daemon_line(encode({"jsonrpc": "2.0", "id": None, "error": busy}))
    assert parsed.refusal is not None and (parsed.refusal.message, parsed.refusal.retry) == ("too many", True)
    bad = {"code": -32600, "message": "bad preamble", "data": {"refused": True}}
    parsed = lines.daemon_line(encode({"jsonrpc": "2.0", "id": None, "error": bad}))
    assert parsed.refusal is not None and parsed.refusal.retry is False
    plain = {"code": -32700, "message": "Parse error"}
    assert lines.daemon_line(encode({"jsonrpc": "2.0", "id": None, "error": plain})).refusal is None


def test_error_reply_is_one_json_rpc_line() -> None:
    """The shim's own errors are well-formed JSON-RPC, one per line."""
    line = lines.error_reply("a", -32000, "no daemon")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32000, "message": "no daemon"},
    }
