"""End-to-end fixtures: the real daemon, the real shim, the real MCP client."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.support import (
    COORDINATORD,
    DaemonProcess,
    ValkeyProcess,
    free_tcp_port,
    running_daemon,
    valkey_server,
)
from tests.support_cluster import ValkeyCluster, ValkeySentinel

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir(short_tmp: Path) -> Path:
    return short_tmp


PROTECTED_PASSWORD = "e2e-requirepass"


@pytest.fixture(scope="module")
def protected() -> Iterator[ValkeyProcess]:
    """The seed's WSL2 story: a Redis with requirepass (PROTECTED_PASSWORD) on a TCP port."""
    with valkey_server(password=PROTECTED_PASSWORD, tcp_port=free_tcp_port()) as server:
        yield server


DAEMON_BACKENDS = ["embedded", "redis"]
TOPOLOGIES = ["cluster", "sentinel"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The ``daemon`` fixture's backends: every module gets the embedded Valkey and the machine's
    Redis; a module that sets ``ALSO_ON_CLUSTER_AND_SENTINEL = True`` (the coordination tools'
    modules) runs on a Valkey Cluster and a Sentinel set-up too. Not every module: each backend
    costs a daemon per module and the suite's time."""
    # A module with a `daemon` fixture of its own (its own params) is left to it.
    if "daemon" in metafunc.fixturenames and not hasattr(metafunc.module, "daemon"):
        extra = TOPOLOGIES if getattr(metafunc.module, "ALSO_ON_CLUSTER_AND_SENTINEL", False) else []
        metafunc.parametrize("daemon", [*DAEMON_BACKENDS, *extra], indirect=True, scope="module")


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    """A daemon per module and backend: its own embedded Valkey, the machine's Redis, or (for
    some modules) the session's Valkey Cluster or Sentinel set-up."""
    env: dict[str, str] = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("daemon_redis_url")
    elif request.param == "cluster":
        cluster: ValkeyCluster = request.getfixturevalue("cluster")
        env["COORDINATORD_BACKEND__MODE"] = "cluster"
        env["COORDINATORD_BACKEND__URL"] = cluster.url
    elif request.param == "sentinel":
        setup: ValkeySentinel = request.getfixturevalue("sentinel_setup")
        env["COORDINATORD_BACKEND__MODE"] = "sentinel"
        env["COORDINATORD_BACKEND__SENTINELS"] = ",".join(setup.sentinel_addresses)
        env["COORDINATORD_BACKEND__SENTINEL_MASTER"] = setup.master_name
    with running_daemon(env) as process:
        yield process


def shim_params(
    socket_path: Path, agent: str | None = "tester", project: Path | None = None
) -> StdioServerParameters:
    args = ["shim", "--socket", str(socket_path), "--no-autostart"]  # never in the user's state dir
    if agent is not None:
        args += ["--agent", agent]
    if project is not None:
        args += ["--project", str(project)]
    return StdioServerParameters(command=COORDINATORD, args=args)


@asynccontextmanager
async def connect(
    socket_path: Path, *, agent: str | None = "tester", project: Path | None = None, mode: Any = "legacy"
) -> AsyncIterator[Client]:
    """An MCP client speaking to the daemon through a real shim process."""
    async with Client(shim_params(socket_path, agent, project), mode=mode) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """A successful call's structured content, checked to equal its JSON text."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, text_of(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    assert json.loads(text_of(result)) == content
    return content


def text_of(result: Any) -> str:
    assert len(result.content) >= 1
    return str(result.content[0].text)


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
INITIALIZED: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call_line(request_id: int, tool: str, arguments: Mapping[str, object]) -> dict[str, object]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def frames(*messages: Mapping[str, object]) -> bytes:
    return b"".join(json.dumps(message).encode() + b"\n" for message in messages)


class RawConnection:
    """A bare socket client: no shim, no SDK, so it can send anything at all."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, Any]:
        line = self.reader.readline()
        assert line, "connection closed without a reply"
        return dict(json.loads(line))

    def reply_to(self, request_id: int) -> dict[str, Any]:
        """The next reply, which must be the one to ``request_id``."""
        reply = self.reply()
        assert reply.get("id") == request_id, reply
        return reply

    def initialize(self, client_name: str) -> None:
        """The handshake, as ``client_name`` (with no preamble, the agent's name)."""
        client_info = {"name": client_name, "version": "0"}
        hello = {**INITIALIZE, "params": {**INITIALIZE["params"], "clientInfo": client_info}}
        self.send(frames(hello))
        assert "result" in self.reply_to(1)
        self.send(frames(INITIALIZED))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def hints(tool: Any) -> Any:
    """A listed tool's annotations as a client reads them: the daemon lists only hints that
    differ from MCP's defaults (readOnlyHint false, destructiveHint true, idempotentHint false,
    openWorldHint true), and for a read-only tool destructiveHint and idempotentHint mean nothing
    (the spec), so it counts as neither destructive nor repeatable-with-effect."""
    from mcp_types import ToolAnnotations

    given = tool.annotations or ToolAnnotations()
    read_only = bool(given.read_only_hint)
    return ToolAnnotations(
        title=given.title,
        read_only_hint=read_only,
        destructive_hint=False if read_only else given.destructive_hint is not False,
        idempotent_hint=True if read_only else bool(given.idempotent_hint),
        open_world_hint=given.open_world_hint is not False,
    )
