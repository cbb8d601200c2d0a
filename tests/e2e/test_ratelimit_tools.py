"""Rate-limit tools through daemon + shim + MCP client: structured results shared by all agents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_hit_status_and_reset_share_one_budget(daemon: DaemonProcess, workdir: Path) -> None:
    """Two agents draw on one budget: hits count for both, status consumes nothing, reset clears it."""
    daily = {"service": "firecrawl", "limit": 3, "window_s": 86_400}
    async with (
        connect(daemon.socket_path, agent="alice", project=workdir) as alice,
        connect(daemon.socket_path, agent="bob", project=workdir) as bob,
    ):
        first = await call(alice, "ratelimit_hit", daily)
        assert (first["allowed"], first["used"], first["remaining"]) == (True, 1, 2)
        assert 86_399 < first["reset_in_s"] <= 86_400
        second = await call(bob, "ratelimit_hit", {**daily, "cost": 2})
        assert (second["allowed"], second["used"], second["remaining"]) == (True, 3, 0)
        refused = await call(alice, "ratelimit_hit", daily)
        assert (refused["allowed"], refused["used"], refused["remaining"]) == (False, 3, 0)
        assert 0 < refused["reset_in_s"] <= 86_400
        for _ in range(2):  # reading twice changes nothing
            status = await call(bob, "ratelimit_status", daily)
            assert (status["allowed"], status["used"], status["remaining"]) == (False, 3, 0)
            assert 0 < status["reset_in_s"] <= refused["reset_in_s"]
        other_window = await call(alice, "ratelimit_hit", {**daily, "window_s": 60})
        assert other_window["allowed"] is True and other_window["used"] == 1
        assert await call(alice, "ratelimit_reset", {"service": "firecrawl"}) == {
            "service": "firecrawl",
            "windows_cleared": 2,
        }
        after = await call(bob, "ratelimit_status", daily)
        assert (after["allowed"], after["used"], after["remaining"], after["reset_in_s"]) == (True, 0, 3, 0)


async def test_ratelimit_tools_refuse_bad_arguments(daemon: DaemonProcess, workdir: Path) -> None:
    """Bad services, limits, windows and costs come back as tool errors naming the argument or setting."""
    async with connect(daemon.socket_path, project=workdir) as client:
        colon = await client.call_tool("ratelimit_hit", {"service": "a:b", "limit": 1, "window_s": 1})
        assert colon.is_error and "'service' must be 1-64 characters" in text_of(colon)
        big = await client.call_tool("ratelimit_status", {"service": "s", "limit": 10**6, "window_s": 1})
        assert big.is_error and "ratelimits.max_limit" in text_of(big)
        cost = await client.call_tool("ratelimit_hit", {"service": "s", "limit": 2, "window_s": 1, "cost": 3})
        assert cost.is_error and "'cost' is 3, above 'limit' 2" in text_of(cost)
        zero = await client.call_tool("ratelimit_hit", {"service": "s", "limit": 2, "window_s": 0})
        assert zero.is_error and "'window_s' must be at least 1" in text_of(zero)


async def test_ratelimit_tools_describe_themselves_truthfully(daemon: DaemonProcess, workdir: Path) -> None:
    """status is read-only, reset is destructive, hit is neither; each has an output schema."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools if t.name.startswith("ratelimit_")}
    assert set(tools) == {"ratelimit_hit", "ratelimit_status", "ratelimit_reset"}
    seen = {name: (hints(tool).read_only_hint, hints(tool).destructive_hint) for name, tool in tools.items()}
    assert seen == {
        "ratelimit_hit": (False, False),
        "ratelimit_status": (True, False),
        "ratelimit_reset": (False, True),
    }
    assert all(tool.output_schema is not None for tool in tools.values())
