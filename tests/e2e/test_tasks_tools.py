"""The task tools through daemon + shim + MCP client."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
ALSO_ON_CLUSTER_AND_SENTINEL = True  # these tools are the coordination core: every topology

TASK_TOOLS = ("task_create", "task_advance", "task_update", "task_get", "task_list")


async def test_task_tools_are_listed_with_schemas_and_true_annotations(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Every task tool has an output schema; readers say read-only, create says destructive."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in TASK_TOOLS:
        assert tools[name].output_schema is not None, name
        assert tools[name].description
    annotations = {name: hints(tools[name]) for name in TASK_TOOLS}
    assert all(a is not None for a in annotations.values())
    assert [name for name, a in annotations.items() if a and a.read_only_hint] == ["task_get", "task_list"]
    assert annotations["task_create"] is not None and annotations["task_create"].destructive_hint is True
    assert annotations["task_advance"] is not None and annotations["task_advance"].idempotent_hint is False
    assert tools["task_update"].input_schema["properties"]["status"]["enum"] == [
        "pending",
        "in_progress",
        "blocked",
        "completed",
        "failed",
    ]


async def test_task_life_cycle_through_every_tool(daemon: DaemonProcess, workdir: Path) -> None:
    """create, advance, update, get and list work end to end, and redis_get shows the document."""
    async with connect(daemon.socket_path, project=workdir) as client:
        created = await call(
            client, "task_create", {"task_id": "docs", "steps": ["gather", "write", "review"]}
        )
        assert (created["taskId"], created["status"], created["version"]) == ("docs", "pending", 1)
        assert created["steps"] == [{"name": n, "status": "pending"} for n in ("gather", "write", "review")]

        advanced = await call(client, "task_advance", {"task_id": "docs"})
        assert (advanced["currentStep"], advanced["percentComplete"]) == ("write", 33)
        updated = await call(
            client, "task_update", {"task_id": "docs", "step": "review", "status": "blocked"}
        )
        assert updated["status"] == "blocked"
        by_index = await call(client, "task_update", {"task_id": "docs", "step": 1, "status": "completed"})
        assert (by_index["completedSteps"], by_index["currentStep"]) == (2, "review")

        got = await call(client, "task_get", {"task_id": "docs"})
        assert {k: got[k] for k in ("taskId", "status", "percentComplete", "currentStep")} == {
            "taskId": "docs",
            "status": "blocked",
            "percentComplete": 67,
            "currentStep": "review",
        }
        assert (got["totalSteps"], got["completedSteps"], got["version"]) == (3, 2, 4)

        raw = json.loads(text_of(await client.call_tool("redis_get", {"key": "task:progress:docs"})))
        assert raw["version"] == 4 and raw["steps"] == got["steps"] and raw["currentStepIndex"] == 2
        ttl = int(text_of(await client.call_tool("redis_ttl", {"key": "task:progress:docs"})))
        assert 172_790 < ttl <= 172_800

        await call(client, "task_create", {"task_id": "other", "steps": ["only"]})
        listed = await call(client, "task_list", {})
        assert [t["taskId"] for t in listed["tasks"]] == ["other", "docs"]
        blocked = await call(client, "task_list", {"status": "blocked"})
        assert [t["taskId"] for t in blocked["tasks"]] == ["docs"]

        replaced = await call(client, "task_create", {"task_id": "docs", "steps": ["a"], "replace": True})
        assert (replaced["version"], replaced["totalSteps"]) == (5, 1)


async def test_task_refusals_are_readable(daemon: DaemonProcess, workdir: Path) -> None:
    """Unknown ids, duplicates, bad statuses and finished tasks give tool errors that say why."""
    async with connect(daemon.socket_path, project=workdir) as client:
        missing = await client.call_tool("task_get", {"task_id": "nope"})
        assert missing.is_error and "task 'nope' not found" in text_of(missing)
        await call(client, "task_create", {"task_id": "t", "steps": ["a"]})
        again = await client.call_tool("task_create", {"task_id": "t", "steps": ["a"]})
        assert again.is_error and "already exists; pass replace=true" in text_of(again)
        bad = await client.call_tool("task_update", {"task_id": "t", "step": "a", "status": "done"})
        assert bad.is_error and "argument 'status' must be one of" in text_of(bad)
        step = await client.call_tool("task_update", {"task_id": "t", "step": "zz", "status": "failed"})
        assert step.is_error and "no step named 'zz'" in text_of(step)
        await call(client, "task_advance", {"task_id": "t"})
        done = await client.call_tool("task_advance", {"task_id": "t"})
        assert done.is_error and "already completed" in text_of(done)
        bad_id = await client.call_tool("task_create", {"task_id": "a/b", "steps": ["x"]})
        assert bad_id.is_error and "'task_id'" in text_of(bad_id)


async def test_eight_clients_advance_one_task(daemon: DaemonProcess, workdir: Path) -> None:
    """8 shims advancing one 24-step task together complete each step exactly once."""
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "task_create", {"task_id": "race", "steps": [f"s{i}" for i in range(24)]})
    completed: list[int] = []

    async def agent(index: int) -> None:
        async with connect(daemon.socket_path, agent=f"agent-{index}", project=workdir) as client:
            while True:
                result = await client.call_tool("task_advance", {"task_id": "race"})
                if result.is_error:
                    assert "already completed" in text_of(result)
                    return
                assert result.structured_content is not None
                completed.append(result.structured_content["completedSteps"])

    async with anyio.create_task_group() as tg:
        for index in range(8):
            tg.start_soon(agent, index)
    assert sorted(completed) == list(range(1, 25))
