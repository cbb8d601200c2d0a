"""The agent tools through daemon + shim + MCP client, with two agents on two connections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

AGENT_TOOLS = ("agent_register", "agent_heartbeat", "agent_unregister", "agent_list")


async def listed(client: Client, include_inactive: bool = False) -> dict[str, dict[str, Any]]:
    reply = await call(client, "agent_list", {"include_inactive": include_inactive})
    return {entry["agent"]: entry for entry in reply["agents"]}


async def test_agent_tools_take_no_agent_name_and_carry_true_annotations(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """No agent tool lets a caller name another agent; only agent_list is read-only."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in AGENT_TOOLS:
        assert "agent" not in tools[name].input_schema["properties"], name
        assert tools[name].output_schema is not None
    read_only = [name for name in AGENT_TOOLS if (a := hints(tools[name])) and a.read_only_hint]
    assert read_only == ["agent_list"]
    unregister = hints(tools["agent_unregister"])
    assert unregister is not None and unregister.destructive_hint is True


async def test_register_heartbeat_list_unregister_across_two_agents(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Each shim acts as its own --agent; the other sees its status, task and open files."""
    async with (
        connect(daemon.socket_path, agent="kilocode", project=workdir) as kilo,
        connect(daemon.socket_path, agent="cline", project=workdir) as cline,
    ):
        registered = await call(kilo, "agent_register", {"capabilities": ["python"], "mode": "architect"})
        assert (registered["agent"], registered["status"], registered["connected"]) == (
            "kilocode",
            "active",
            True,
        )
        beat = await call(
            kilo, "agent_heartbeat", {"current_task": "plan-redis", "files_open": ["redis-integration.md"]}
        )
        assert (beat["current_task"], beat["files_open"], beat["mode"]) == (
            "plan-redis",
            ["redis-integration.md"],
            "architect",
        )
        seen = await listed(cline)
        assert set(seen) == {"kilocode", "cline"}  # cline is present by its connection alone
        assert (seen["cline"]["registered"], seen["cline"]["status"]) == (False, "active")
        assert {k: seen["kilocode"][k] for k in ("status", "current_task", "files_open", "capabilities")} == {
            "status": "active",
            "current_task": "plan-redis",
            "files_open": ["redis-integration.md"],
            "capabilities": ["python"],
        }
        raw = json.loads(text_of(await cline.call_tool("redis_get", {"key": "agent:status:kilocode"})))
        assert (raw["agent"], raw["currentTask"], raw["filesOpen"]) == (
            "kilocode",
            "plan-redis",
            ["redis-integration.md"],
        )
        gone = await call(kilo, "agent_unregister")
        assert (gone["agent"], gone["registered"], gone["connected"]) == ("kilocode", False, True)
        assert (await listed(cline))["kilocode"]["registered"] is False


async def test_presence_follows_the_connection(daemon: DaemonProcess, workdir: Path) -> None:
    """An agent that never heartbeats is active while connected, and not once it disconnects."""
    async with connect(daemon.socket_path, agent="watcher", project=workdir) as watcher:
        async with connect(daemon.socket_path, agent="silent", project=workdir) as silent:
            await silent.list_tools()  # the connection is up; the agent never calls an agent tool
            entry = (await listed(watcher))["silent"]
            assert (entry["status"], entry["connected"], entry["registered"]) == ("active", True, False)
        # The daemon notices the closed connection asynchronously: ask until it has, bounded.
        with anyio.fail_after(10):
            while "silent" in await listed(watcher, include_inactive=True):
                pass


async def test_a_heartbeat_keeps_an_agent_listed_after_it_disconnects(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A disconnected agent with a recent heartbeat stays active, now without a connection."""
    async with connect(daemon.socket_path, agent="watcher", project=workdir) as watcher:
        async with connect(daemon.socket_path, agent="brief", project=workdir) as brief:
            await call(brief, "agent_heartbeat", {"current_task": "quick-fix"})
        with anyio.fail_after(10):
            while (await listed(watcher))["brief"]["connected"]:
                pass
        entry = (await listed(watcher))["brief"]
        assert (entry["status"], entry["registered"], entry["current_task"]) == ("active", True, "quick-fix")


async def test_projects_do_not_see_each_others_agents(daemon: DaemonProcess, workdir: Path) -> None:
    """Agents of another project root are neither listed by registration nor by connection."""
    alpha, beta = workdir / "alpha", workdir / "beta"
    alpha.mkdir()
    beta.mkdir()
    async with (
        connect(daemon.socket_path, agent="a", project=alpha) as a,
        connect(daemon.socket_path, agent="b", project=beta) as b,
    ):
        await call(a, "agent_register")
        assert set(await listed(b, include_inactive=True)) == {"b"}
        assert set(await listed(a, include_inactive=True)) == {"a"}


async def test_agent_tool_refusals_are_readable(daemon: DaemonProcess, workdir: Path) -> None:
    """Bad arguments come back as tool errors naming the argument."""
    async with connect(daemon.socket_path, agent="x", project=workdir) as client:
        extra = await client.call_tool("agent_heartbeat", {"agent": "someone-else"})
        assert extra.is_error and "unknown argument 'agent'" in text_of(extra)
        bad = await client.call_tool("agent_heartbeat", {"files_open": ["ok.py", ""]})
        assert bad.is_error and "'files_open[1]' must not be empty" in text_of(bad)
        wrong = await client.call_tool("agent_register", {"capabilities": "python"})
        assert wrong.is_error and "'capabilities' must be an array of strings" in text_of(wrong)
