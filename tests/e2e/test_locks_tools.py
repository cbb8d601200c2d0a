"""Lock tools through daemon + shim + MCP client: structured results, contention between agents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
ALSO_ON_CLUSTER_AND_SENTINEL = True  # these tools are the coordination core: every topology


async def test_every_lock_tool_round_trips(daemon: DaemonProcess, workdir: Path) -> None:
    """acquire, list, renew, release answer with structured content equal to their JSON text."""
    async with connect(daemon.socket_path, agent="kilocode", project=workdir) as client:
        got = await call(client, "lock_acquire", {"resource": "src/app.py", "ttl": 30})
        assert got["acquired"] is True and got["held_by"] == "kilocode" and got["reentered"] is False
        assert isinstance(got["token"], str) and isinstance(got["fencing"], int)
        assert got["expires_in"] == 30
        again = await call(client, "lock_acquire", {"resource": "src/app.py"})
        assert again["reentered"] is True and again["token"] == got["token"]
        assert again["fencing"] == got["fencing"] and again["expires_in"] == 60
        listed = await call(client, "lock_list", {})
        [entry] = listed["locks"]
        assert entry["resource"] == "src/app.py" and entry["held_by"] == "kilocode"
        assert entry["fencing"] == got["fencing"] and 0 < entry["expires_in"] <= 60
        assert listed["truncated"] is False
        renewed = await call(
            client, "lock_renew", {"resource": "src/app.py", "token": got["token"], "ttl": 120}
        )
        assert renewed == {
            "resource": "src/app.py",
            "renewed": True,
            "reason": "renewed",
            "held_by": "kilocode",
            "fencing": got["fencing"],
            "expires_in": 120,
        }
        released = await call(client, "lock_release", {"resource": "src/app.py", "token": got["token"]})
        assert released == {"resource": "src/app.py", "released": True, "reason": "released", "held_by": None}
        assert (await call(client, "lock_list", {}))["locks"] == []
        twice = await call(client, "lock_release", {"resource": "src/app.py", "token": got["token"]})
        assert (twice["released"], twice["reason"]) == (False, "not_held")
        # The lock document is what the raw tool shows under the seed's pattern.
        await call(client, "lock_acquire", {"resource": "docs"})
        raw = json.loads(text_of(await client.call_tool("redis_get", {"key": "lock:docs"})))
        assert raw["agent"] == "kilocode"


async def test_two_agents_contend_for_one_lock(daemon: DaemonProcess, workdir: Path) -> None:
    """Two shims with different --agent names: one holds, the other is refused until a release or lapse."""
    async with (
        connect(daemon.socket_path, agent="alice", project=workdir) as alice,
        connect(daemon.socket_path, agent="bob", project=workdir) as bob,
    ):
        held = await call(alice, "lock_acquire", {"resource": "db:migrations", "ttl": 60})
        assert held["acquired"] is True
        refused = await call(bob, "lock_acquire", {"resource": "db:migrations"})
        assert refused == {
            "acquired": False,
            "token": None,
            "fencing": None,
            "held_by": "alice",
            "expires_in": refused["expires_in"],
            "reentered": False,
        }
        assert 0 < refused["expires_in"] <= 60
        stolen = await call(bob, "lock_release", {"resource": "db:migrations", "token": "0" * 32})
        assert (stolen["released"], stolen["reason"], stolen["held_by"]) == (False, "token_mismatch", "alice")
        kept = await call(bob, "lock_renew", {"resource": "db:migrations", "token": "0" * 32, "ttl": 5})
        assert (kept["renewed"], kept["held_by"]) == (False, "alice")
        await call(alice, "lock_release", {"resource": "db:migrations", "token": held["token"]})
        taken = await call(bob, "lock_acquire", {"resource": "db:migrations"})
        assert taken["acquired"] is True and taken["held_by"] == "bob"
        assert taken["fencing"] > held["fencing"]
        # Bob then goes quiet with a 1 s lease left; alice waits it out and takes over.
        short = {"resource": "db:migrations", "token": taken["token"], "ttl": 1}
        assert (await call(bob, "lock_renew", short))["renewed"] is True
        won = await call(alice, "lock_acquire", {"resource": "db:migrations", "wait_ms": 5_000})
        assert won["acquired"] is True and won["held_by"] == "alice" and won["fencing"] > taken["fencing"]


async def test_lock_tools_refuse_bad_arguments(daemon: DaemonProcess, workdir: Path) -> None:
    """Out-of-range arguments come back as tool errors that name the argument or setting."""
    async with connect(daemon.socket_path, project=workdir) as client:
        long_wait = await client.call_tool("lock_acquire", {"resource": "r", "wait_ms": 30_001})
        assert long_wait.is_error and "locks.max_wait_ms = 30000" in text_of(long_wait)
        long_lease = await client.call_tool("lock_acquire", {"resource": "r", "ttl": 3_601})
        assert long_lease.is_error and "locks.max_ttl_s" in text_of(long_lease)
        zero = await client.call_tool("lock_renew", {"resource": "r", "token": "t", "ttl": 0})
        assert zero.is_error and "'ttl' must be at least 1" in text_of(zero)
        blank = await client.call_tool("lock_acquire", {"resource": "a\nb"})
        assert blank.is_error and "'resource' must be printable" in text_of(blank)
        missing = await client.call_tool("lock_release", {"resource": "r"})
        assert missing.is_error and "argument 'token' is required" in text_of(missing)


async def test_lock_tools_describe_themselves_truthfully(daemon: DaemonProcess, workdir: Path) -> None:
    """lock_list is read-only; nothing in the group is destructive; every tool has an output schema."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools if t.name.startswith("lock_")}
    assert set(tools) == {"lock_acquire", "lock_release", "lock_renew", "lock_list"}
    for name, tool in tools.items():
        assert hints(tool) is not None and tool.output_schema is not None
        assert hints(tool).read_only_hint is (name == "lock_list")
        assert hints(tool).destructive_hint is False
        assert tool.description is not None and "\n" not in tool.description
