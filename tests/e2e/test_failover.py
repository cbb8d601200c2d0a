"""A master dies under load, on a Redis Cluster and on a Sentinel set-up: four editors' shims,
through one real daemon, keep taking and releasing one lock and appending to their sessions.

What must hold: nothing hangs; calls fail only while no master serves (from the kill until the
replica is promoted, plus one call's bound), each failure a tool error that says the backend is
failing over (or did not answer in time); no two holders ever hold the lock at once and fencing
tokens keep rising; the daemon recovers by itself, with no restart and no new shim. Replication
is asynchronous, so an append acknowledged just before the kill may be lost: the test counts
those (``pytest -s`` prints the figures) and bounds the count rather than asserting zero.

Each test starts its own cluster or Sentinel set-up and daemon (never the session's shared
ones) and tears them down afterwards: nothing is restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from coordinatord.scope import project_ref
from tests.e2e.conftest import call, connect, text_of
from tests.support import DaemonProcess, running_daemon
from tests.support_cluster import ValkeyCluster, ValkeySentinel, valkey_cluster, valkey_sentinel

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

AGENTS = 4
RESOURCE = "deploy"
MAX_LOST_APPENDS = 25
"""Appends acknowledged by the old master and never replicated: those of the last moments before
the kill. At this load a handful at most; many more would mean writes lost after the kill too."""
CALL_BOUND_S = 2.0
"""backend.timeout_s of the daemon: how long one call may take at most, and how long after the
promotion a call that started before it may still fail."""
FAILOVER_BOUND_S = 30.0
DAEMON_ENV = {
    "COORDINATORD_BACKEND__TIMEOUT_S": str(CALL_BOUND_S),
    "COORDINATORD_JOBS__ENABLED": "false",  # only the agents' calls reach the backend
}


@dataclass
class Load:
    """What the agents saw: acknowledged appends, acquisitions in order, errors with times."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    acked: dict[str, list[str]] = field(default_factory=dict)
    fencings: list[int] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    successes_since: dict[str, int] = field(default_factory=dict)
    holder: list[str | None] = field(default_factory=lambda: [None])
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    reentries: int = 0


class CallFailed(Exception):
    """A tool call answered with an error: the failover, the test hopes."""


async def tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise CallFailed(text_of(result))
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def agent(name: str, client: Client, load: Load) -> None:
    """One agent: take the lock (no wait), hold it across a checkpoint, release it, append a turn."""
    load.acked[name] = []
    count = 0
    while not load.stop.is_set():
        count += 1
        try:
            got = await tool(client, "lock_acquire", {"resource": RESOURCE, "ttl": 5})
            if got["acquired"]:
                if load.holder[0] is not None and load.holder[0] != name:
                    load.overlaps.append((load.holder[0], name))
                load.holder[0] = name
                if got.get("reentered"):
                    # An acquire whose reply the failover lost did take the lock: this agent
                    # holds it still, under the same fencing number (not a second holder).
                    load.reentries += 1
                else:
                    load.fencings.append(int(got["fencing"]))
                await anyio.sleep(0.002)  # the others run while this one holds the lock
                if load.holder[0] == name:
                    load.holder[0] = None
                await tool(client, "lock_release", {"resource": RESOURCE, "token": got["token"]})
            message = f"{name}-{count}"
            await tool(
                client, "session_append", {"session_id": f"s-{name}", "role": "user", "message": message}
            )
            load.acked[name].append(message)
            load.successes_since[name] = load.successes_since.get(name, 0) + 1
        except CallFailed as failed:
            load.holder[0] = None if load.holder[0] == name else load.holder[0]
            load.errors.append((time.monotonic(), str(failed)))
            await anyio.sleep(0.05)  # a failing backend is not asked again at once


async def _until(condition: Callable[[], bool]) -> None:
    # The agents' progress is in this process: polled, bounded by run_failover's fail_after.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def run_failover(
    daemon: DaemonProcess, project: Path, kill: Callable[[], None], recovered: Callable[[], None]
) -> tuple[Load, float, float, int]:
    """Load, kill the master, wait for the promotion, load on until every agent succeeded again;
    then count the acknowledged appends the sessions' histories lack."""
    load = Load()
    names = [f"agent-{index}" for index in range(AGENTS)]
    with anyio.fail_after(FAILOVER_BOUND_S + 60):  # no hang: the whole run is bounded
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(connect(daemon.socket_path, agent=name, project=project))
                for name in names
            ]
            async with anyio.create_task_group() as tg:
                for name, client in zip(names, clients, strict=True):
                    tg.start_soon(agent, name, client, load)
                await _until(lambda: sum(load.successes_since.values()) >= 100)
                killed_at = time.monotonic()
                await anyio.to_thread.run_sync(kill)
                await anyio.to_thread.run_sync(recovered)
                promoted_at = time.monotonic()
                load.successes_since.clear()
                await _until(
                    lambda: len(load.successes_since) == AGENTS and min(load.successes_since.values()) >= 20
                )
                load.stop.set()
            lost = 0
            for name, client in zip(names, clients, strict=True):
                history = await call(client, "session_history", {"session_id": f"s-{name}", "last": 100_000})
                kept = {turn["message"] for turn in history["turns"]}
                lost += sum(1 for message in load.acked[name] if message not in kept)
    return load, killed_at, promoted_at, lost


def check(load: Load, killed_at: float, promoted_at: float, lost: int, what: str) -> None:
    """The figures, printed (``pytest -s`` shows them), then what must hold."""
    window = promoted_at - killed_at
    acked = sum(len(a) for a in load.acked.values())
    print(
        f"\n{what} through shims: failover window {window:.2f} s, {len(load.errors)} failed calls, "
        f"{acked} appends acknowledged, {lost} lost, {len(load.fencings)} lock acquisitions "
        f"({load.reentries} re-entered after a lost reply)"
    )
    assert load.overlaps == []
    assert all(a < b for a, b in zip(load.fencings, load.fencings[1:], strict=False))
    for at, text in load.errors:
        assert killed_at - 0.1 <= at <= promoted_at + CALL_BOUND_S + 1.0, (at - killed_at, text)
        assert "failing over" in text or "failover" in text or "did not answer" in text, text
    assert window < FAILOVER_BOUND_S
    assert lost <= MAX_LOST_APPENDS


@pytest.fixture
def cluster() -> Iterator[ValkeyCluster]:
    """A cluster of this test's own, quick to notice a dead master (node timeout 1 s)."""
    with valkey_cluster(node_timeout_ms=1_000) as made:
        yield made


@pytest.fixture
def sentinel_setup() -> Iterator[ValkeySentinel]:
    """A Sentinel set-up of this test's own, quick to fail over (down after 1 s)."""
    with valkey_sentinel(down_after_ms=1_000, failover_timeout_ms=3_000) as made:
        yield made


async def test_a_cluster_master_dies_under_load(cluster: ValkeyCluster, workdir: Path) -> None:
    """Killing the master of the project's slot under four shims: errors only until its replica
    is promoted, all of them failover errors; exclusion and rising fencing hold; few
    acknowledged appends lost; the daemon serves on by itself."""
    env = {**DAEMON_ENV, "COORDINATORD_BACKEND__MODE": "cluster", "COORDINATORD_BACKEND__URL": cluster.url}
    with running_daemon(env) as daemon:
        # The project's slot: its namespace prefix is the hash tag.
        slot_key = project_ref(str(workdir)).namespace.key("x")
        victim = cluster.master_of(slot_key)
        assert cluster.has_replica(victim)
        load, killed_at, promoted_at, lost = await run_failover(
            daemon,
            workdir,
            victim.kill,
            lambda: cluster.wait_promoted(victim, slot_key, timeout=FAILOVER_BOUND_S),
        )
    check(load, killed_at, promoted_at, lost, "cluster")


async def test_the_sentinel_master_dies_under_load(sentinel_setup: ValkeySentinel, workdir: Path) -> None:
    """Killing the master the sentinels name under four shims: errors only until they promote
    the replica, all of them failover errors; exclusion and rising fencing hold; few
    acknowledged appends lost; the daemon follows the new master by itself."""
    env = {
        **DAEMON_ENV,
        "COORDINATORD_BACKEND__MODE": "sentinel",
        "COORDINATORD_BACKEND__SENTINELS": ",".join(sentinel_setup.sentinel_addresses),
        "COORDINATORD_BACKEND__SENTINEL_MASTER": sentinel_setup.master_name,
    }
    assert sentinel_setup.master is not None
    victim = sentinel_setup.master
    old_port = victim.port

    def recovered() -> None:
        deadline = time.monotonic() + FAILOVER_BOUND_S
        while sentinel_setup.master_port() == old_port:
            assert time.monotonic() < deadline, "the sentinels promoted no replica"
            time.sleep(0.05)

    with running_daemon(env) as daemon:
        load, killed_at, promoted_at, lost = await run_failover(daemon, workdir, victim.kill, recovered)
    check(load, killed_at, promoted_at, lost, "sentinel")
