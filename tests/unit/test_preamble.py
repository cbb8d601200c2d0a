"""The shim's identity preamble."""

from __future__ import annotations

import json

import pytest

from coordinatord import preamble
from coordinatord.control import wire


def test_round_trip() -> None:
    """What the shim encodes, the daemon parses back."""
    line = preamble.Preamble(agent="kilocode", project="/home/me/app", pid=42).encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = preamble.parse(json.loads(line))
    assert parsed is not None
    assert (parsed.agent, parsed.project, parsed.pid) == ("kilocode", "/home/me/app", 42)


@pytest.mark.parametrize(
    "value", [{"jsonrpc": "2.0", "id": 1, "method": "initialize"}, "garbage", [1], None, 7]
)
def test_other_lines_are_not_preambles(value: object) -> None:
    """MCP traffic or any other JSON as a first line means: no preamble (served anonymously)."""
    assert preamble.parse(value) is None
    assert wire.parse_control(value) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"type":"coordinatord-preamble","v":0}', "version"),
        ('{"type":"coordinatord-preamble","v":1,"agent":""}', "agent"),
        ('{"type":"coordinatord-preamble","v":1,"project":"relative/dir"}', "absolute path"),
        ('{"type":"coordinatord-preamble","v":1,"pid":-3}', "pid"),
    ],
)
def test_malformed_preambles_are_refused(body: str, message: str) -> None:
    """A line that claims to be a preamble but is malformed is refused with a reason."""
    with pytest.raises(ValueError, match=message):
        preamble.parse(json.loads(body))


def test_control_requests_round_trip_and_malformed_ones_are_flagged() -> None:
    """A control line parses back to its command; one with a bad shape is flagged for an error."""
    assert wire.parse_control(json.loads(wire.control_request("status", {"a": 1}))) == (
        "status",
        {"a": 1},
    )
    assert wire.parse_control({"type": wire.CONTROL_MARKER, "command": 5}) == ("", {})
