"""Secrets through daemon + shim + MCP client: what a refusal and a warning look like, for
values and for identifiers (every identifier argument of every tool, from the registry), with
the daemon's own log file and its embedded Valkey's AOF searched for what must not be there."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import INITIALIZE, RawConnection, call, call_line, connect, frames, text_of
from tests.secret_checks import aof_bytes, leaked
from tests.secret_corpus import NEAR_MISSES, SECRETS
from tests.support import DaemonProcess, ShimProcess, running_daemon, shim_command
from tests.tool_calls import identifier_cases, specs, with_text

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TOKEN = SECRETS[10][1]  # a generated GitHub-format token


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One daemon (embedded Valkey, default policy: refuse) for this module."""
    with running_daemon() as process:
        yield process


async def test_refusal_through_the_shim(daemon: DaemonProcess, workdir: Path) -> None:
    """redis_set and session_save of a secret answer an error naming kind, field and offset,
    never the value, and write nothing; a near-miss gets the seed's "OK"."""
    async with connect(daemon.socket_path, project=workdir) as client:
        result = await client.call_tool("redis_set", {"key": "temp:x:1", "value": f"use {TOKEN}"})
        assert result.is_error
        text = text_of(result)
        assert "github_token in 'value' at character 4" in text and "nothing was written" in text
        assert TOKEN not in text and TOKEN[4:] not in text
        assert text_of(await client.call_tool("redis_get", {"key": "temp:x:1"})) == ""
        saved = await client.call_tool(
            "session_save", {"session_id": "s1", "context": {"db": {"url": TOKEN}}}
        )
        assert saved.is_error and "'context.db.url'" in text_of(saved) and TOKEN not in text_of(saved)
        for index, miss in enumerate(NEAR_MISSES[:12]):
            ok = await client.call_tool("redis_set", {"key": f"temp:n:{index}", "value": miss})
            assert [c.text for c in ok.content] == ["OK"]  # type: ignore[union-attr]
        assert (await call(client, "session_load", {"session_id": "s1"}))["found"] is False


async def test_warn_policy_stores_and_warns(workdir: Path) -> None:
    """secrets.policy = "warn": stored as given; the reply's second block is the warning."""
    with running_daemon({"COORDINATORD_SECRETS__POLICY": "warn"}) as process:
        async with connect(process.socket_path, project=workdir) as client:
            result = await client.call_tool("redis_set", {"key": "temp:w:1", "value": TOKEN})
            texts = [c.text for c in result.content]  # type: ignore[union-attr]
            assert not result.is_error and texts[0] == "OK"
            assert len(texts) == 2 and "github_token" in texts[1] and TOKEN not in texts[1]
            assert text_of(await client.call_tool("redis_get", {"key": "temp:w:1"})) == TOKEN


SPECS = {spec.name: spec for spec in specs()}


def identifier_calls() -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(tool, argument, kind, arguments)``: a corpus secret in each identifier argument of
    each tool, the secrets taken in turn so that every kind is used."""
    out = []
    for index, (tool, argument) in enumerate(identifier_cases()):
        kind, secret = SECRETS[index % len(SECRETS)]
        out.append((tool, argument, kind, with_text(SPECS[tool], argument, secret)))
    return out


@pytest.mark.parametrize("policy", ["refuse", "redact"])
async def test_identifiers_with_secrets_are_refused_and_reach_no_log_and_no_aof(
    workdir: Path, policy: str
) -> None:
    """Through a real shim (the fast path), a secret in any identifier argument of any tool is
    refused, naming the argument and the kind; afterwards the daemon's log file (at debug
    level), the activity stream, the project's keys and the embedded Valkey's AOF hold no part
    of any secret used, while a near-miss key was stored and is in the AOF."""
    env = {"COORDINATORD_SECRETS__POLICY": policy, "COORDINATORD_LOGGING__LEVEL": "debug"}
    calls = identifier_calls()
    used = [text for _, text in SECRETS]
    assert {kind for _, _, kind, _ in calls} == {kind for kind, _ in SECRETS}
    near_miss_key = f"temp:{uuid.uuid4()}"
    with running_daemon(env) as process:
        async with connect(process.socket_path, project=workdir) as client:
            for tool, argument, kind, arguments in calls:
                result = await client.call_tool(tool, arguments)
                text = text_of(result)
                assert result.is_error and text.startswith(f"{tool}: refused: an identifier holds a secret")
                assert f"{kind} in '{argument}" in text and not leaked(text, used), text
            ok = await client.call_tool("redis_set", {"key": near_miss_key, "value": NEAR_MISSES[0]})
            assert text_of(ok) == "OK"
            events = (await call(client, "activity_recent", {"limit": 1000}))["events"]
            keys = text_of(await client.call_tool("redis_keys", {"pattern": "*"}))
        refused = [e for e in events if e["outcome"] == "refused"]
        assert len(refused) == len(calls) and all(e["key"] in (None, "") for e in refused)
        assert not leaked(json.dumps(events), used) and not leaked(keys, used)
        await process.wait_for_log("tool_call", tool="redis_keys")
        log = process.log_text()
        assert '"event":"secret_refused"' in log and '"event":"tool_call_started"' in log
        assert not leaked(log, used)
        aof = aof_bytes(process.state_dir / "valkey")
        assert near_miss_key.encode() in aof and not leaked(aof, used)


async def test_the_sdk_path_refuses_identifiers_as_the_fast_path_does() -> None:
    """A handshake-era call with a progress token goes to the SDK's handler, one without to the
    fast path: both run invoke(), so a secret in an identifier gets the same refusal."""
    token = SECRETS[10][1]
    with running_daemon() as process:
        conn = RawConnection(process.socket_path)
        try:
            conn.initialize("raw")
            fast = call_line(2, "lock_acquire", {"resource": f"deploy/{token}"})
            sdk = call_line(3, "lock_acquire", {"resource": f"deploy/{token}"})
            sdk["params"] = {**sdk["params"], "_meta": {"progressToken": "p1"}}  # type: ignore[dict-item]
            conn.send(frames(fast))
            fast_result = conn.reply_to(2)["result"]
            conn.send(frames(sdk))
            sdk_result = conn.reply_to(3)["result"]
        finally:
            conn.close()
        assert fast_result["isError"] and fast_result["content"] == sdk_result["content"]
        text = fast_result["content"][0]["text"]
        assert text.startswith(
            "lock_acquire: refused: an identifier holds a secret (github_token in 'resource'"
        )
        assert token not in text
        await process.wait_for_log("tool_call", tool="lock_acquire")
        assert token not in process.log_text()


async def test_warn_runs_with_the_identifier_and_logs_it_redacted(workdir: Path) -> None:
    """secrets.policy = "warn": a key holding a secret is used as given (the value is read back
    under it), the reply's last block warns; the log file and the activity stream show the key
    redacted."""
    key = f"cache:{TOKEN}"
    with running_daemon({"COORDINATORD_SECRETS__POLICY": "warn"}) as process:
        async with connect(process.socket_path, project=workdir) as client:
            stored = await client.call_tool("redis_set", {"key": key, "value": "v"})
            texts = [c.text for c in stored.content]  # type: ignore[union-attr]
            assert texts[0] == "OK" and "github_token in 'key' at character 6" in texts[1]
            assert TOKEN not in texts[1]
            assert text_of(await client.call_tool("redis_get", {"key": key})) == "v"
            events = (await call(client, "activity_recent", {}))["events"]
        assert "cache:[REDACTED:github_token]" in [e["key"] for e in events]
        assert TOKEN not in json.dumps(events)
        await process.wait_for_log("tool_call", tool="activity_recent")
        log = process.log_text()
        assert '"key":"cache:[REDACTED:github_token]"' in log and TOKEN not in log


def test_an_agent_name_holding_a_secret_is_refused_at_the_door(daemon: DaemonProcess, workdir: Path) -> None:
    """A shim whose --agent holds a secret is refused before the daemon logs or records the
    connection: the editor gets the reason (naming no secret), the shim exits 2, the daemon's
    log never holds it."""
    agent = f"bot-{TOKEN}"
    with ShimProcess(shim_command(daemon.socket_path, agent=agent, project=workdir)) as shim:
        shim.send(INITIALIZE)
        error = shim.reply()["error"]
        assert (
            "the agent name holds a secret (github_token in 'agent name' at character 4)" in error["message"]
        )
        assert TOKEN not in error["message"]
        assert shim.process.wait(timeout=30) == 2
    assert TOKEN not in daemon.log_text()
    assert '"event":"connection_refused_secret_agent"' in daemon.log_text()
