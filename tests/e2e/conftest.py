"""End-to-end fixtures: the real daemon, the real shim, the real MCP client."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.support import COORDINATORD, DaemonProcess, running_daemon, short_tmpdir

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = short_tmpdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def daemon(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    """A daemon per module and backend: its own embedded Valkey, or the machine's Redis."""
    env: dict[str, str] = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("real_redis")
    with running_daemon(env) as process:
        yield process


def shim_params(
    socket_path: Path, agent: str | None = "tester", project: Path | None = None
) -> StdioServerParameters:
    args = ["shim", "--socket", str(socket_path)]
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


def text_of(result: Any) -> str:
    assert len(result.content) >= 1
    return str(result.content[0].text)
