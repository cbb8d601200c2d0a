"""Secrets through daemon + shim + MCP client: what a refusal and a warning look like."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import call, connect, text_of
from tests.secret_corpus import NEAR_MISSES, SECRETS
from tests.support import DaemonProcess, running_daemon

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
