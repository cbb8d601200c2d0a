"""The session tools through daemon + shim + MCP client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
ALSO_ON_CLUSTER_AND_SENTINEL = True  # these tools are the coordination core: every topology

SESSION_TOOLS = (
    "session_save", "session_load", "session_append", "session_history",
    "session_list", "session_end", "session_restore",
)  # fmt: skip


async def refused(client: Client, name: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(name, args)
    assert result.is_error
    return text_of(result)


def archive_of(project: Path, session_id: str) -> Path:
    return project.resolve() / ".kilocode" / "sessions" / f"{session_id}.json"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


async def test_session_tools_are_listed_with_schemas_and_true_annotations(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Every session tool has an output schema and a description; readers are read-only, end and
    restore say destructive.
    """
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in SESSION_TOOLS:
        assert tools[name].output_schema is not None, name
        assert tools[name].description
        assert hints(tools[name]) is not None
    seen = {name: hints(tools[name]) for name in SESSION_TOOLS}
    read_only = [name for name, a in seen.items() if a and a.read_only_hint]
    assert read_only == ["session_load", "session_history", "session_list"]
    destructive = [name for name, a in seen.items() if a and a.destructive_hint]
    assert destructive == ["session_end", "session_restore"]
    roles = tools["session_append"].input_schema["properties"]["role"]["enum"]
    assert roles == ["user", "assistant", "system", "tool"]


async def test_session_life_cycle_through_every_tool(daemon: DaemonProcess, workdir: Path) -> None:
    """save, load, append, history, list, end and restore work end to end; the archive lands in
    the shim's project folder and redis_get shows the document.
    """
    async with connect(daemon.socket_path, agent="kilo", project=workdir) as client:
        saved = await call(
            client,
            "session_save",
            {"session_id": "s-1", "context": {"lastTask": "docs", "pending": [], "n": 2**64}, "ttl": 3600},
        )
        assert saved == {"session_id": "s-1", "version": 1, "expires_in": 3600}
        saved = await call(
            client, "session_save", {"session_id": "s-1", "context": {"pending": None, "step": 2}}
        )
        assert saved["version"] == 2 and saved["expires_in"] == 3600
        for index, role in enumerate(["user", "assistant", "tool"]):
            appended = await call(
                client, "session_append", {"session_id": "s-1", "role": role, "message": f"turn {index}"}
            )
            assert appended["history_length"] == index + 1 and appended["expires_in"] == 3600
        loaded = await call(client, "session_load", {"session_id": "s-1"})
        assert loaded["found"] is True and loaded["version"] == 2 and loaded["history_length"] == 3
        assert loaded["context"] == {"lastTask": "docs", "n": 2**64, "step": 2}
        raw = json.loads(text_of(await client.call_tool("redis_get", {"key": "agent:context:s-1"})))
        assert (
            raw["sessionId"] == "s-1" and raw["context"] == loaded["context"] and raw["lastAgent"] == "kilo"
        )
        history = await call(client, "session_history", {"session_id": "s-1", "last": 2})
        assert [(t["role"], t["message"], t["agent"]) for t in history["turns"]] == [
            ("assistant", "turn 1", "kilo"),
            ("tool", "turn 2", "kilo"),
        ]
        listed = await call(client, "session_list", {})
        assert [(s["session_id"], s["version"], s["history_length"]) for s in listed["sessions"]] == [
            ("s-1", 2, 3)
        ]

        ended = await call(client, "session_end", {"session_id": "s-1"})
        archive = archive_of(workdir, "s-1")
        assert ended["archived_to"] == str(archive)
        data = read_json(archive)
        assert data["format"] == "coordinatord.session/1" and data["archived_by"] == "kilo"
        assert data["context"] == loaded["context"] and len(data["history"]) == 3
        assert (await call(client, "session_load", {"session_id": "s-1"}))["found"] is False
        assert (await call(client, "session_list", {}))["sessions"] == []

        restored = await call(client, "session_restore", {"session_id": "s-1"})
        assert restored == {
            "session_id": "s-1", "version": 2, "history_length": 3,
            "restored_from": str(archive), "expires_in": 3600,
        }  # fmt: skip
        again = await call(client, "session_load", {"session_id": "s-1"})
        assert again == {**loaded, "expires_in": again["expires_in"]}
        assert (await call(client, "session_history", {"session_id": "s-1", "last": 2})) == history
        forced = await call(client, "session_restore", {"session_id": "s-1", "force": True})
        assert forced["history_length"] == 3


async def test_session_refusals_are_readable(daemon: DaemonProcess, workdir: Path) -> None:
    """Unknown ids, bad arguments and a live restore come back as tool errors naming the problem."""
    async with connect(daemon.socket_path, project=workdir) as client:
        missing = await call(client, "session_load", {"session_id": "nope"})
        assert missing["found"] is False and missing["context"] == {}
        assert "'nope' not found" in await refused(client, "session_history", {"session_id": "nope"})
        assert "'nope' not found" in await refused(client, "session_end", {"session_id": "nope"})
        assert "no session archive at" in await refused(client, "session_restore", {"session_id": "nope"})
        text = await refused(client, "session_append", {"session_id": "s", "role": "robot", "message": "x"})
        assert "argument 'role' must be one of" in text
        assert "'session_id'" in await refused(client, "session_save", {"session_id": "../x", "context": {}})
        assert "'context' must be an object" in await refused(
            client, "session_save", {"session_id": "s", "context": [1]}
        )
        await call(client, "session_save", {"session_id": "live", "context": {}})
        await call(client, "session_end", {"session_id": "live"})
        await call(client, "session_save", {"session_id": "live", "context": {"new": True}})
        assert "force=true" in await refused(client, "session_restore", {"session_id": "live"})
