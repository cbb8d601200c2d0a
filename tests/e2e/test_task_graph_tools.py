"""The task graph through daemon + shim + MCP client: many agents claiming, dependency order,
and a gone agent's claims going back to ready (the heartbeat sweep of a daemon with short
settings)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SETTINGS = {
    # An agent is inactive 1 s and gone 2 s after its last heartbeat (or claim) once it has no
    # connection; the sweep runs every 0.3 s. Connected agents are present, so never swept.
    "COORDINATORD_AGENTS__HEARTBEAT_WINDOW_S": "1",
    "COORDINATORD_AGENTS__FORGET_AFTER_S": "2",
    "COORDINATORD_JOBS__HEARTBEAT_SWEEP_S": "0.3",
}
AGENTS = 16
DEADLINE_S = 60


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One daemon (embedded Valkey) for the module, with the short sweep settings above."""
    with running_daemon(dict(SETTINGS)) as process:
        yield process


async def ready_ids(client: Client, **arguments: Any) -> list[str]:
    return [task["taskId"] for task in (await call(client, "task_ready", arguments))["tasks"]]


async def test_graph_tools_are_listed_with_schemas_and_annotations(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """task_ready is read-only, task_claim idempotent, every graph tool has an output schema, and
    task_create takes the new arguments as optional ones."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in ("task_ready", "task_claim", "task_unclaim"):
        assert tools[name].output_schema is not None and tools[name].description, name
        assert hints(tools[name]) is not None
    assert hints(tools["task_ready"]) and hints(tools["task_ready"]).read_only_hint is True
    assert hints(tools["task_claim"]) and hints(tools["task_claim"]).idempotent_hint is True
    assert hints(tools["task_unclaim"]) and hints(tools["task_unclaim"]).read_only_hint is False
    create = tools["task_create"].input_schema
    assert create["required"] == ["task_id", "steps"]
    assert {"depends_on", "labels", "priority"} <= set(create["properties"])


async def test_graph_refusals_and_events_through_the_tools(daemon: DaemonProcess, workdir: Path) -> None:
    """Refusals name the argument or the claimant; claims, unclaims and readiness are activity
    events; a plain task_create replies as it always did."""
    async with connect(daemon.socket_path, agent="kilo", project=workdir) as kilo:
        plain = await call(kilo, "task_create", {"task_id": "base", "steps": ["x"]})
        assert set(plain) == {
            "taskId",
            "status",
            "percentComplete",
            "currentStep",
            "currentStepIndex",
            "totalSteps",
            "completedSteps",
            "steps",
            "createdAt",
            "updatedAt",
            "version",
        }
        unknown = await kilo.call_tool(
            "task_create", {"task_id": "t", "steps": ["x"], "depends_on": ["nope"]}
        )
        assert unknown.is_error and "argument 'depends_on[0]' names task 'nope'" in text_of(unknown)
        cycle = await kilo.call_tool(
            "task_create", {"task_id": "base", "steps": ["x"], "replace": True, "depends_on": ["base"]}
        )
        assert cycle.is_error and "cannot depend on itself" in text_of(cycle)
        await call(kilo, "task_create", {"task_id": "next", "steps": ["x"], "depends_on": ["base"]})
        waiting = await kilo.call_tool("task_claim", {"task_id": "next"})
        assert waiting.is_error and "'next' is not ready" in text_of(waiting)
        claimed = await call(kilo, "task_claim", {"task_id": "base"})
        assert claimed == {"taskId": "base", "claimedBy": "kilo", "ready": False}
        async with connect(daemon.socket_path, agent="cline", project=workdir) as cline:
            taken = await cline.call_tool("task_claim", {"task_id": "base"})
            assert taken.is_error and "claimed by kilo" in text_of(taken)
            not_yours = await cline.call_tool("task_unclaim", {"task_id": "base"})
            assert not_yours.is_error and "only its claimant can unclaim it" in text_of(not_yours)
        assert await call(kilo, "task_unclaim", {"task_id": "base"}) == {
            "taskId": "base",
            "claimedBy": None,
            "ready": True,
        }
        await call(kilo, "task_advance", {"task_id": "base"})
        assert await ready_ids(kilo) == ["next"]
        too_many = await kilo.call_tool("task_ready", {"limit": 101})
        assert too_many.is_error and "tasks.ready_max = 100" in text_of(too_many)
        events = (await call(kilo, "activity_recent", {"limit": 50}))["events"]
    task_events = [(e["name"], e["key"]) for e in events if e["kind"] == "task"]
    assert task_events == [
        ("task_ready", "base"),
        ("task_claimed", "base"),
        ("task_unclaimed", "base"),
        ("task_ready", "base"),
        ("task_ready", "next"),
    ]


async def claim_until_empty(socket: Path, workdir: Path, agent: str, work: Any, stop: anyio.Event) -> None:
    """One agent: take ready tasks (trying a random one of the first few, so agents collide
    realistically) and hand each claimed one to ``work`` until ``stop`` is set."""
    async with connect(socket, agent=agent, project=workdir) as client:
        with anyio.fail_after(DEADLINE_S):
            while not stop.is_set():
                ready = await ready_ids(client, limit=4)
                if not ready:
                    await anyio.sleep(0.005)  # polling the ready index: others are completing
                    continue
                task_id = random.choice(ready)
                result = await client.call_tool("task_claim", {"task_id": task_id})
                if result.is_error:
                    assert "claimed by" in text_of(result) or "already completed" in text_of(result)
                    continue
                await work(client, task_id)


async def test_sixteen_agents_claim_each_of_a_hundred_ready_tasks_once(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """16 agents claiming from 100 ready tasks at once: every task is claimed exactly once."""
    names = [f"t{i:03d}" for i in range(100)]
    async with connect(daemon.socket_path, project=workdir) as client:
        for name in names:
            await call(client, "task_create", {"task_id": name, "steps": ["do"]})
        assert len(await ready_ids(client, limit=100)) == 100
    claims: list[tuple[str, str]] = []
    stop = anyio.Event()

    def worker(agent: str) -> Any:
        async def work(client: Client, task_id: str) -> None:
            claims.append((task_id, agent))
            await call(client, "task_advance", {"task_id": task_id})  # completes it: claim ends
            if len(claims) == len(names):
                stop.set()

        return work

    async with anyio.create_task_group() as tg:
        for i in range(AGENTS):
            tg.start_soon(
                claim_until_empty, daemon.socket_path, workdir, f"agent-{i}", worker(f"agent-{i}"), stop
            )
    claimed = [task_id for task_id, _ in claims]
    assert sorted(claimed) == names  # each exactly once
    assert len({agent for _, agent in claims}) > 1


async def test_dependents_are_never_claimed_before_their_dependencies_complete(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A layered graph of 60 tasks worked by 16 agents: every task is claimed once, and only
    after each of its dependencies' completing call was made."""
    rng = random.Random(12)
    layers = [[f"l{layer}-{i}" for i in range(12)] for layer in range(5)]
    deps: dict[str, list[str]] = {}
    async with connect(daemon.socket_path, project=workdir) as client:
        for depth, layer in enumerate(layers):
            for name in layer:
                # Two of the layer before, and one further back (from layer 2 on).
                further = [t for previous in layers[: max(depth - 1, 0)] for t in previous]
                deps[name] = rng.sample(layers[depth - 1], 2) if depth else []
                deps[name] += rng.sample(further, 1) if further else []
                arguments = {"task_id": name, "steps": ["do"], "depends_on": deps[name]}
                await call(client, "task_create", {**arguments, "priority": rng.randint(-3, 3)})
        assert sorted(await ready_ids(client, limit=100)) == sorted(layers[0])
    order = itertools.count()
    claimed_at: dict[str, list[int]] = {}
    completing_from: dict[str, int] = {}
    stop = anyio.Event()

    async def work(client: Client, task_id: str) -> None:
        claimed_at.setdefault(task_id, []).append(next(order))
        completing_from[task_id] = next(order)  # before the call: its dependents cannot be ready sooner
        await call(client, "task_advance", {"task_id": task_id})
        if len(completing_from) == len(deps):
            stop.set()

    async with anyio.create_task_group() as tg:
        for i in range(AGENTS):
            tg.start_soon(claim_until_empty, daemon.socket_path, workdir, f"worker-{i}", work, stop)
    assert sorted(claimed_at) == sorted(deps) and all(len(c) == 1 for c in claimed_at.values())
    for task_id, needs in deps.items():
        for dep in needs:
            assert claimed_at[task_id][0] > completing_from[dep], (task_id, dep)


async def test_a_gone_agents_claims_return_to_ready(daemon: DaemonProcess, workdir: Path) -> None:
    """An agent that claims tasks and disconnects is found gone by the sweep, and its claims
    (not the one it completed) are ready again for others to claim."""
    async with connect(daemon.socket_path, project=workdir) as client:
        for name in ("a", "b", "c", "d"):
            await call(client, "task_create", {"task_id": name, "steps": ["do"], "labels": ["web"]})
        async with connect(daemon.socket_path, agent="ghost", project=workdir) as ghost:
            for name in ("a", "b", "c"):
                await call(ghost, "task_claim", {"task_id": name})
            await call(ghost, "task_advance", {"task_id": "c"})
        assert await ready_ids(client) == ["d"]
        with anyio.fail_after(DEADLINE_S):
            # The sweep, in another process, is the event: poll it.
            while sorted(await ready_ids(client, label="web")) != ["a", "b", "d"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert (await call(client, "task_claim", {"task_id": "a"}))["claimedBy"] == "tester"
        events = (await call(client, "activity_recent", {"limit": 100}))["events"]
    released = sorted(e["key"] for e in events if e["outcome"] == "task_claim_released")
    assert released == ["a", "b"]
    assert all(e["agent"] == "ghost" for e in events if e["outcome"] == "task_claim_released")
