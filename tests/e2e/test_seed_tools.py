"""The seed's eight tools through daemon + shim + MCP client, with the seed's exact replies."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import connect, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_eight_tools_reply_as_the_seed_says(daemon: DaemonProcess, workdir: Path, mode: str) -> None:
    """Every tool answers with the seed's reply text, in both protocol eras."""
    async with connect(daemon.socket_path, project=workdir, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools if tool.name.startswith("redis_")]
        assert names == [
            "redis_get", "redis_set", "redis_del", "redis_keys",
            "redis_exists", "redis_ttl", "redis_expire", "redis_ping",
        ]  # fmt: skip
        value = '{"lastTask":"implement-feature","progress":75}'
        call = client.call_tool
        assert text_of(await call("redis_set", {"key": "agent:context:session123", "value": value})) == "OK"
        assert text_of(await call("redis_get", {"key": "agent:context:session123"})) == value
        assert text_of(await call("redis_get", {"key": "agent:context:nothing"})) == ""
        set_456 = {"key": "agent:context:session456", "value": "{}", "ttl": 3600}
        assert text_of(await call("redis_set", set_456)) == "OK"
        assert 3590 <= int(text_of(await call("redis_ttl", {"key": "agent:context:session456"}))) <= 3600
        assert 86_390 <= int(text_of(await call("redis_ttl", {"key": "agent:context:session123"}))) <= 86_400
        assert text_of(await call("redis_ttl", {"key": "missing"})) == "-2"
        keys = text_of(await call("redis_keys", {"pattern": "agent:context:*"}))
        assert keys == '["agent:context:session123","agent:context:session456"]'
        both = ["agent:context:session123", "agent:context:session456"]
        assert text_of(await call("redis_exists", {"keys": [*both, "agent:config:main"]})) == "2"
        assert (
            text_of(await call("redis_expire", {"key": "agent:context:session123", "seconds": 7200})) == "OK"
        )
        assert 7190 <= int(text_of(await call("redis_ttl", {"key": "agent:context:session123"}))) <= 7200
        assert text_of(await call("redis_expire", {"key": "missing", "seconds": 10})) == "Failed"
        assert text_of(await call("redis_del", {"keys": [*both, "agent:temp:data"]})) == "Deleted 2 key(s)"
        assert text_of(await call("redis_exists", {"keys": both})) == "0"
        assert text_of(await call("redis_ping", {})) == "PONG"


async def test_tools_carry_true_annotations(daemon: DaemonProcess, workdir: Path) -> None:
    """Clients see read-only hints on the readers, redis_del destructive (MCP's default), redis_set
    not, and no tool open-world."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    hints = {name: tool.annotations for name, tool in tools.items()}
    for name in ("redis_get", "redis_keys", "redis_exists", "redis_ttl", "redis_ping"):
        hint = hints[name]
        assert hint is not None and hint.read_only_hint is True
    # Hints equal to MCP's defaults are left out (readOnlyHint false, destructiveHint true): an
    # absent one reads as its default, as a client reads it.
    deleting = hints["redis_del"]
    assert deleting is not None and deleting.read_only_hint in (None, False)
    assert deleting.destructive_hint in (None, True)
    setting = tools["redis_set"].annotations
    assert (
        setting is not None and setting.read_only_hint in (None, False) and setting.destructive_hint is False
    )
    assert all(hint is not None and hint.open_world_hint is False for hint in hints.values())


async def test_errors_name_the_argument_and_limit(daemon: DaemonProcess, workdir: Path) -> None:
    """Wrong types, bad TTLs and oversized input come back as readable tool errors."""
    async with connect(daemon.socket_path, project=workdir) as client:
        wrong = await client.call_tool("redis_set", {"key": "k", "value": 5})
        assert wrong.is_error and "argument 'value' must be a string" in text_of(wrong)
        zero = await client.call_tool("redis_set", {"key": "k", "value": "v", "ttl": 0})
        assert zero.is_error and "'ttl' must be a positive" in text_of(zero)
        huge = await client.call_tool("redis_set", {"key": "k", "value": "v" * (1024 * 1024 + 1)})
        assert huge.is_error and "limits.max_value_bytes" in text_of(huge)
        nul = await client.call_tool("redis_get", {"key": "a\u0000b"})
        assert nul.is_error and "control characters" in text_of(nul)
        long_key = await client.call_tool("redis_get", {"key": "k" * 5000})
        assert long_key.is_error and "limits.max_key_bytes" in text_of(long_key)
        assert text_of(await client.call_tool("redis_exists", {"keys": ["k"]})) == "0"


async def test_two_projects_cannot_see_or_delete_each_others_keys(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Shims for two project roots share key names but never data."""
    alpha, beta = workdir / "alpha", workdir / "beta"
    alpha.mkdir()
    beta.mkdir()
    async with (
        connect(daemon.socket_path, project=alpha) as a,
        connect(daemon.socket_path, project=beta) as b,
    ):
        await a.call_tool("redis_set", {"key": "plan", "value": "alpha's"})
        await b.call_tool("redis_set", {"key": "plan", "value": "beta's"})
        for pattern in ("*", "*}*", "coord:*", "../*", "{*"):
            listed = json.loads(text_of(await b.call_tool("redis_keys", {"pattern": pattern})))
            # beta's own keys only; its activity stream is there once the daemon has flushed
            # the connection's first events, and its connection's presence record once written.
            own = {"plan", "_activity", "_idx:presence", "_idx:presence_of:tester"}
            assert set(listed) <= own, listed
        assert (
            text_of(await b.call_tool("redis_del", {"keys": ["plan", "../plan", "*"]})) == "Deleted 1 key(s)"
        )
        assert text_of(await a.call_tool("redis_get", {"key": "plan"})) == "alpha's"
        assert text_of(await b.call_tool("redis_get", {"key": "plan"})) == ""


async def test_sixteen_clients_two_hundred_calls_each(daemon: DaemonProcess, workdir: Path) -> None:
    """16 shims calling concurrently get 3,200 correct answers and no error."""
    failures: list[str] = []

    async def agent(index: int) -> None:
        async with connect(daemon.socket_path, agent=f"agent-{index}", project=workdir) as client:
            for call in range(100):
                key = f"load:{index}:{call}"
                result = await client.call_tool("redis_set", {"key": key, "value": str(call), "ttl": 60})
                if result.is_error or text_of(result) != "OK":
                    failures.append(f"set {key}: {text_of(result)}")
                result = await client.call_tool("redis_get", {"key": key})
                if result.is_error or text_of(result) != str(call):
                    failures.append(f"get {key}: {text_of(result)}")

    async with anyio.create_task_group() as tg:
        for index in range(16):
            tg.start_soon(agent, index)
    assert failures == []


async def test_raw_tools_read_but_never_change_the_services_own_keys(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """redis_set, redis_expire and redis_del refuse _idx:, _seq: and _activity keys and change
    nothing; the reads still answer, and the lock those keys index stays held and listed."""
    async with connect(daemon.socket_path, project=workdir) as client:
        acquired = await client.call_tool("lock_acquire", {"resource": "docs"})
        assert not acquired.is_error and acquired.structured_content is not None
        fencing = acquired.structured_content["fencing"]
        refused = await client.call_tool("redis_del", {"keys": ["lock:docs", "_idx:locks"]})
        assert refused.is_error
        assert text_of(refused) == (
            "redis_del: argument 'keys[1]' names '_idx:locks', one of coordinatord's own index keys "
            "(_idx:*, _seq:*, _once:*, _activity), managed by the coordination tools; the raw tools may read "
            "it but not write, expire or delete it"
        )
        for tool, args in (
            ("redis_set", {"key": "_seq:fencing", "value": "0"}),
            ("redis_set", {"key": "_activity", "value": "not a stream"}),
            ("redis_expire", {"key": "_idx:locks", "seconds": 1}),
        ):
            result = await client.call_tool(tool, args)
            assert result.is_error and text_of(result).startswith(
                f"{tool}: argument 'key' names '{args['key']}'"
            )
        assert text_of(await client.call_tool("redis_get", {"key": "_seq:fencing"})) == str(fencing)
        held = ["lock:docs", "_idx:locks", "_seq:fencing"]
        assert text_of(await client.call_tool("redis_exists", {"keys": held})) == "3"
        assert int(text_of(await client.call_tool("redis_ttl", {"key": "_idx:locks"}))) > 1
        listed = await client.call_tool("lock_list", {})
        assert listed.structured_content is not None
        assert [lock["resource"] for lock in listed.structured_content["locks"]] == ["docs"]
