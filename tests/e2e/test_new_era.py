"""The 2026-07-28 era (``server/discover``, an envelope in every request's ``_meta``) next to the
handshake era: the same replies through the real shim, and, line for line, the same answers
from the fast path as from the SDK (a daemon with ``server.fast_path = false``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from coordinatord.preamble import Preamble
from tests.e2e.conftest import RawConnection, connect, frames
from tests.support import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
INFO_KEY = "io.modelcontextprotocol/clientInfo"
CAPS_KEY = "io.modelcontextprotocol/clientCapabilities"
META: dict[str, Any] = {
    VERSION_KEY: "2026-07-28",
    INFO_KEY: {"name": "raw-new", "version": "0"},
    CAPS_KEY: {},
}

# One call per tool group whose reply depends on nothing the other era's call changes.
PER_GROUP: list[tuple[str, dict[str, Any]]] = [
    ("redis_get", {"key": "new-era:absent"}),
    ("session_load", {"session_id": "new-era-absent"}),
    ("task_get", {"task_id": "new-era-absent"}),
    ("agent_list", {"limit": "not a number"}),
    ("lock_list", {"prefix": "new-era-absent:"}),
    ("ratelimit_status", {"key": "new-era-absent"}),
    ("activity_recent", {"limit": -1}),
    ("memory_bank_get", {"name": "../outside.md"}),
    ("message_thread", {"message_id": "new-era-absent"}),
    ("files_check", {"paths": ["new-era/absent.py"]}),
]


@pytest.fixture(scope="module")
def sdk_daemon() -> Iterator[DaemonProcess]:
    """A daemon answering everything through the SDK: the reference the fast path must match."""
    with running_daemon({"COORDINATORD_SERVER__FAST_PATH": "false"}) as process:
        yield process


def request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def new_era_call(request_id: int, tool: str, arguments: dict[str, Any], meta: Any = None) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments, "_meta": META if meta is None else meta}
    return request(request_id, "tools/call", params)


def exchange(daemon: DaemonProcess, lines: list[dict[str, Any]]) -> list[bytes]:
    """Each line's reply, on one raw connection that opens the new era with ``server/discover``."""
    conn = RawConnection(daemon.socket_path)
    try:
        conn.send(frames(request(0, "server/discover", {"_meta": META})))
        assert "result" in conn.reply_to(0)
        replies = []
        for line in lines:
            conn.send(frames(line))
            replies.append(conn.reader.readline())
        return replies
    finally:
        conn.close()


def dumped(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    data.pop("_meta", None)  # the new era's serverInfo stamp: the handshake era has none
    data.pop("resultType", None)
    return data


async def replies_of(client: Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tools = [dumped(tool) for tool in (await client.list_tools()).tools]
    calls = [dumped(await client.call_tool(tool, arguments)) for tool, arguments in PER_GROUP]
    return tools, calls


async def test_both_eras_get_the_same_replies_for_every_group(daemon: DaemonProcess) -> None:
    """Through the real shim, mcp.Client in legacy mode (initialize) and in auto mode (which
    picks 2026-07-28) lists the same tools and gets the same reply from a tool of every group."""
    results = {}
    for mode in ("legacy", "auto"):
        async with connect(daemon.socket_path, mode=mode) as client:
            results[mode] = (await replies_of(client), client.protocol_version)
    (legacy, legacy_version), (auto, auto_version) = results["legacy"], results["auto"]
    assert (legacy_version, auto_version) == ("2025-11-25", "2026-07-28")
    assert legacy == auto
    assert len(legacy[0]) > 30  # full: every group's tools


def test_fast_path_answers_new_era_calls_as_the_sdk_does(
    daemon: DaemonProcess, sdk_daemon: DaemonProcess
) -> None:
    """The same raw new-era lines to a daemon with the fast path and to one without: errors
    byte for byte (an unsupported version, a malformed envelope, an unknown tool), results
    field for field (JSON key order is the only freedom)."""
    unsupported = {**META, VERSION_KEY: "1999-01-01"}
    lines = [
        new_era_call(1, "redis_get", {"key": "new-era:absent"}),
        new_era_call(2, "no_such_tool", {}),
        new_era_call(3, "redis_get", {"key": "x"}, unsupported),
        new_era_call(4, "redis_get", {"key": "x"}, {**META, VERSION_KEY: 20260728}),
        new_era_call(5, "redis_get", {"key": "x"}, {VERSION_KEY: "2026-07-28"}),
        new_era_call(6, "redis_get", {"key": "x"}, {**META, INFO_KEY: {"name": 3}}),
        new_era_call(7, "redis_get", {"key": "x"}, {**META, CAPS_KEY: []}),
        new_era_call(8, "redis_get", {"key": "x"}, "not an object"),
        new_era_call(9, "redis_get", {"key": "x"}, {**META, "progressToken": "p"}),
        new_era_call(10, "redis_get", {"key": 5}),
        request(11, "tools/call", {"name": "redis_get", "arguments": {"key": "x"}}),  # no envelope
        new_era_call(12, "redis_ping", {}),
    ]
    fast, sdk = exchange(daemon, lines), exchange(sdk_daemon, lines)
    for line, mine, reference in zip(lines, fast, sdk, strict=True):
        if b'"error"' in reference:
            assert mine == reference, line
        else:
            assert json.loads(mine) == json.loads(reference), line
    codes = [json.loads(reply).get("error", {}).get("code") for reply in sdk]
    assert codes == [None, -32602, -32022, -32602, -32602, -32602, -32602, -32602, None, None, -32602, None]


def test_a_new_era_call_outside_the_selection_is_an_unknown_tool(daemon: DaemonProcess) -> None:
    """A connection whose preamble selects kv only: a tasks tool is unknown in the new era too."""
    conn = RawConnection(daemon.socket_path)
    try:
        preamble = Preamble(agent="kv-only", project=None, pid=None, tools=["kv"])
        conn.send(preamble.encode())
        conn.send(frames(request(0, "server/discover", {"_meta": META})))
        assert "result" in conn.reply_to(0)
        conn.send(frames(new_era_call(1, "task_list", {}), new_era_call(2, "redis_ping", {})))
        error = conn.reply_to(1)["error"]
        assert error == {"code": -32602, "message": "Unknown tool: task_list"}
        assert not conn.reply_to(2)["result"].get("isError")
    finally:
        conn.close()


def test_the_agent_of_a_new_era_call_is_the_envelope_client(
    daemon: DaemonProcess, sdk_daemon: DaemonProcess
) -> None:
    """Without --agent, a new-era call's agent is the envelope's client name on both paths (and
    the default one when the client info is unusable), as activity_recent records it."""
    named = {**META, INFO_KEY: {"name": "envelope-agent", "version": "1"}}
    agents = []
    for process in (daemon, sdk_daemon):
        lines = [new_era_call(1, "redis_get", {"key": "new-era:agent"}, named)]
        lines.append(new_era_call(2, "activity_recent", {"limit": 1}, named))
        reply = json.loads(exchange(process, lines)[1])
        agents.append(reply["result"]["structuredContent"])
    assert agents[0]["events"][0]["agent"] == "envelope-agent"
    assert [a["events"][0]["agent"] for a in agents] == ["envelope-agent"] * 2
