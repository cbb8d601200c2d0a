"""Tool groups per connection, and a shutdown that lets in-flight calls finish."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY

from tests.e2e.conftest import INITIALIZE, INITIALIZED, RawConnection, call, call_line, connect, frames
from tests.support import COORDINATORD, DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def shim_with_tools(socket_path: Path, project: Path, tools: str) -> StdioServerParameters:
    args = [
        "shim",
        "--socket",
        str(socket_path),
        "--no-autostart",
        "--agent",
        "budget",
        "--project",
        str(project),
        "--tools",
        tools,
    ]
    return StdioServerParameters(command=COORDINATORD, args=args)


async def test_tools_flag_limits_what_a_connection_sees_and_calls(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """--tools kv,locks lists only those groups' tools, and other tools are unknown to it."""
    async with Client(shim_with_tools(daemon.socket_path, workdir, "kv,locks"), mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {
            "redis_get", "redis_set", "redis_del", "redis_keys", "redis_exists", "redis_ttl",
            "redis_expire", "redis_ping", "lock_acquire", "lock_release", "lock_renew", "lock_list",
        }  # fmt: skip
        with pytest.raises(Exception, match="Unknown tool: task_get"):
            await client.call_tool("task_get", {"task_id": "t"})


async def test_full_serves_every_group_with_output_schemas(daemon: DaemonProcess, workdir: Path) -> None:
    """With tools.groups = ["full"] (the test daemons' setting) a connection sees every group, each
    tool with a one-line description and every structured tool with its output schema."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = (await client.list_tools()).tools
    prefixes = {tool.name.split("_")[0] for tool in tools}
    assert prefixes == {
        "redis",
        "session",
        "task",
        "agent",
        "lock",
        "ratelimit",
        "activity",
        "memory",
        "message",
        "files",
    }
    assert all(tool.description and "\n" not in tool.description for tool in tools)
    with_schema = {tool.name for tool in tools if tool.output_schema is not None}
    assert with_schema == {tool.name for tool in tools if not tool.name.startswith("redis_")}


async def test_the_default_profile_is_served_without_tools(workdir: Path) -> None:
    """tools.groups = ["default"] (the setting's default): a shim without --tools lists the seed's
    eight first and the default profile's tools, without output schemas; structured results still
    come (text and structuredContent)."""
    from coordinatord import tool_groups
    from coordinatord.tools import build_registry

    with running_daemon({"COORDINATORD_TOOLS__GROUPS": '["default"]'}) as daemon:
        async with connect(daemon.socket_path, project=workdir) as client:
            tools = (await client.list_tools()).tools
            ready = await call(client, "task_ready")
        names = [tool.name for tool in tools]
        expected = build_registry().listing(tool_groups.selection(["default"]))
        assert names == [t["name"] for t in expected]
        assert names[:8] == list(tool_groups.SEED_TOOLS)
        assert all(tool.output_schema is None for tool in tools)
        assert isinstance(ready, dict)


def test_unknown_group_is_refused_with_the_known_ones(daemon: DaemonProcess, workdir: Path) -> None:
    """A misspelt group in --tools: the shim says so on stderr, answers the client's initialize
    with the error under its id, and exits 2 without relaying anything."""
    command = [COORDINATORD, "shim", "--socket", str(daemon.socket_path), "--tools", "kv,lcoks"]
    stdin = frames(INITIALIZE, INITIALIZED)
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=30, check=False, cwd=workdir)
    assert done.returncode == 2
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [reply["id"] for reply in replies] == [INITIALIZE["id"]]
    message = replies[0]["error"]["message"]
    assert "unknown tool group(s) lcoks" in message
    assert "locks" in message and "kv" in message
    assert "unknown tool group(s) lcoks" in done.stderr.decode()


async def test_unknown_group_reaches_an_mcp_client(daemon: DaemonProcess, workdir: Path) -> None:
    """What an editor sees: the initialize fails with the message, not "Connection closed"."""
    params = shim_with_tools(daemon.socket_path, workdir, "kv,lcoks")
    refused = pytest.RaisesExc(MCPError, match=r"unknown tool group\(s\) lcoks")
    with anyio.fail_after(30), pytest.RaisesGroup(refused, flatten_subgroups=True):
        async with Client(params, mode="legacy"):
            pass


async def test_sigterm_lets_an_in_flight_call_finish(workdir: Path) -> None:
    """A call still running at SIGTERM completes and gets its reply before the daemon exits 0."""
    daemon = DaemonProcess(workdir, env={"COORDINATORD_LOGGING__LEVEL": "debug"})
    daemon.start()
    try:
        async with (
            connect(daemon.socket_path, agent="holder", project=workdir) as holder,
            connect(daemon.socket_path, agent="waiter", project=workdir) as waiter,
        ):
            # The client checks results against output schemas, fetching tools/list on first use:
            # fetch it now, so that nothing but the calls under test runs during the shutdown.
            await waiter.list_tools()
            await holder.list_tools()
            held = await holder.call_tool("lock_acquire", {"resource": "deploy", "ttl": 30})
            token = held.structured_content["token"]
            result: dict[str, object] = {}

            async def wait_for_lock() -> None:
                reply = await waiter.call_tool("lock_acquire", {"resource": "deploy", "wait_ms": 20_000})
                result.update(reply.structured_content or {})

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_lock)
                # The daemon logs the start of every call at debug level: wait for the waiter's.
                await daemon.wait_for_log("tool_call_started", agent="waiter")
                daemon.signal()  # SIGTERM while the waiter's call is still running
                released = await holder.call_tool("lock_release", {"resource": "deploy", "token": token})
                assert released.structured_content["released"] is True
            assert result["acquired"] is True
        assert daemon.wait() == 0  # the SIGTERM above, and nothing else, ends it
    finally:
        daemon.stop()
    assert '"event":"daemon_stopping"' in daemon.log_text()


MODERN = {
    PROTOCOL_VERSION_META_KEY: "2026-07-28",
    CLIENT_INFO_META_KEY: {"name": "raw", "version": "0"},
    CLIENT_CAPABILITIES_META_KEY: {},
}


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("cause", ["sigterm", "client_eof"])
async def test_a_call_given_up_is_answered_with_why(workdir: Path, era: str, cause: str) -> None:
    """A call still running past the drain (SIGTERM, or the client's end of input) gets an error
    under its own id saying why and that it may or may not have taken effect, not the SDK's
    bare "Connection closed" nor silence: on the fast path (handshake era) and through the SDK
    (2026-07-28 era)."""
    daemon = DaemonProcess(
        workdir, env={"COORDINATORD_LOGGING__LEVEL": "debug", "COORDINATORD_SERVER__DRAIN_TIMEOUT_S": "0.2"}
    )
    daemon.start()
    try:
        async with connect(daemon.socket_path, agent="holder", project=workdir) as holder:
            await holder.call_tool("lock_acquire", {"resource": "r", "ttl": 60})
            waiter = RawConnection(daemon.socket_path)
            try:
                identity = {
                    "type": "coordinatord-preamble",
                    "v": 1,
                    "agent": "waiter",
                    "project": str(workdir),
                }
                waiter.send(frames(identity))
                call = call_line(7, "lock_acquire", {"resource": "r", "wait_ms": 20_000})
                if era == "legacy":
                    waiter.initialize("waiter")
                else:
                    call["params"]["_meta"] = MODERN  # type: ignore[index]
                waiter.send(frames(call))
                await daemon.wait_for_log("tool_call_started", agent="waiter", tool="lock_acquire")
                if cause == "sigterm":
                    daemon.signal()
                else:
                    waiter.sock.shutdown(socket.SHUT_WR)
                reply = await anyio.to_thread.run_sync(waiter.reply)
            finally:
                waiter.close()
        assert reply["id"] == 7, reply
        error = reply["error"]
        assert isinstance(error, dict) and error["code"] == -32002
        why = "daemon is stopping" if cause == "sigterm" else "the client closed its end"
        assert why in error["message"] and "may or may not have taken effect" in error["message"]
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("profile", ["minimal", "default", "full"])
def test_a_profile_through_a_shim_lists_its_tools_in_the_measured_bytes(
    daemon: DaemonProcess, workdir: Path, profile: str
) -> None:
    """--tools <profile> lists the profile's tools, and the tools array on the wire is exactly the
    size the unit budget test computes from the registry (so README's figures are true)."""
    from coordinatord import tool_groups
    from coordinatord.tools import build_registry
    from tests.unit.test_tool_profiles import tools_list_bytes

    command = [COORDINATORD, "shim", "--socket", str(daemon.socket_path), "--no-autostart"]
    command += ["--project", str(workdir), "--tools", profile]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    stdin = frames(INITIALIZE, INITIALIZED, listing)
    # At end of input the shim still delivers the replies of the requests in flight, then exits.
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=30, check=False, cwd=workdir)
    assert done.returncode == 0, done.stderr
    [line] = [raw for raw in done.stdout.splitlines() if json.loads(raw).get("id") == 2]
    tools = json.loads(line)["result"]["tools"]
    expected = build_registry().listing(tool_groups.selection([profile]))
    assert [tool["name"] for tool in tools] == [t["name"] for t in expected]
    wire = len(json.dumps(tools, ensure_ascii=False, separators=(",", ":")).encode())
    assert wire == tools_list_bytes(build_registry(), [profile])
