"""Activity end to end: tool calls and job actions in the stream, ``activity_recent`` through a
shim, and ``coordinatord tail`` (last events, filters, --follow) as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from coordinatord import control
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace, project_id_for
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore
from coordinatord.store.embedded import embedded_socket_path
from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import COORDINATORD, DaemonProcess, backend_to_itself

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECRET = "v4lue-that-must-never-be-logged-7f3c"


def project_of(workdir: Path) -> Namespace:
    """The namespace a shim started with --project workdir works in."""
    return Namespace(project_id_for(str(workdir.resolve())))


def backend_url(daemon: DaemonProcess) -> str:
    return daemon.env.get("REDIS_URL") or f"unix://{embedded_socket_path(daemon.state_dir)}"


async def stream_entries(daemon: DaemonProcess, ns: Namespace) -> list[tuple[str, dict[str, str]]]:
    store = RedisStore.from_url(backend_url(daemon), BackendSettings())
    try:
        return list(reversed(await store.xrevrange(ns.key(ACTIVITY_STREAM), "+", "-", 1_000_000)))
    finally:
        await store.aclose()


async def wait_for_events(daemon: DaemonProcess, ns: Namespace, count: int) -> list[dict[str, str]]:
    """Wait until the daemon's flusher has written ``count`` events of the project (at most 10 s)."""
    # The write happens in the daemon's process: the stream itself is how this one learns of it.
    with anyio.fail_after(10):
        while len(entries := await stream_entries(daemon, ns)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return [fields for _, fields in entries]


def tail_command(daemon: DaemonProcess, *args: str) -> list[str]:
    return [COORDINATORD, "tail", "--state-dir", str(daemon.state_dir), *args]


async def run_tail(daemon: DaemonProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(30):
        return await anyio.run_process(tail_command(daemon, *args), env=daemon.env, cwd=cwd, check=False)


async def test_activity_recent_shows_calls_but_never_values(daemon: DaemonProcess, workdir: Path) -> None:
    """Each call is one event with its tool, key, outcome and duration; the value written is in
    neither the tool's reply nor the Redis stream."""
    ns = project_of(workdir)
    async with connect(daemon.socket_path, agent="kilocode", project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        annotations = hints(tools["activity_recent"])
        assert annotations is not None and annotations.read_only_hint is True
        assert (
            text_of(await client.call_tool("redis_set", {"key": "agent:context:s1", "value": SECRET})) == "OK"
        )
        assert text_of(await client.call_tool("redis_get", {"key": "agent:context:s1"})) == SECRET
        assert (await client.call_tool("redis_set", {"key": "", "value": SECRET})).is_error
        # No waiting: activity_recent flushes first, so the calls just made are already there.
        reply = await call(client, "activity_recent")
    assert SECRET not in json.dumps(reply)
    opened, *events = reply["events"]
    assert (opened["kind"], opened["name"], opened["agent"], opened["outcome"]) == (
        "connection",
        "connection_opened",
        "kilocode",
        "ok",
    )
    assert opened["connection"]["peer_uid"] == os.getuid()
    assert opened["connection"]["peer_pid"] == opened["connection"]["claimed_pid"] > 0
    assert [(e["name"], e["key"], e["outcome"]) for e in events] == [
        ("redis_set", "agent:context:s1", "ok"),
        ("redis_get", "agent:context:s1", "ok"),
        ("redis_set", None, "refused"),
    ]
    for event in events:
        assert (event["agent"], event["project"], event["kind"]) == ("kilocode", ns.project_id, "tool")
        assert event["duration_ms"] >= 0 and event["ts"].endswith("Z") and event["connection"] is None
    # Opened, the three calls, activity_recent itself, closed.
    raw = await wait_for_events(daemon, ns, 6)
    assert SECRET not in json.dumps(raw)
    assert [event["name"] for event in raw[-2:]] == ["activity_recent", "connection_closed"]
    assert raw[-1]["peer_pid"] == raw[0]["peer_pid"] and raw[-1]["kind"] == "connection"


async def test_activity_recent_limit_and_agent(daemon: DaemonProcess, workdir: Path) -> None:
    """limit keeps the newest events, agent keeps one agent's, and a limit above 1000 is refused."""
    async with (
        connect(daemon.socket_path, agent="kilocode", project=workdir) as kilo,
        connect(daemon.socket_path, agent="cline", project=workdir) as cline,
    ):
        for index in range(3):
            await kilo.call_tool("redis_get", {"key": f"k{index}"})
            await cline.call_tool("redis_get", {"key": f"c{index}"})
        newest = await call(kilo, "activity_recent", {"limit": 2})
        assert [e["key"] for e in newest["events"]] == ["k2", "c2"]
        only_cline = await call(kilo, "activity_recent", {"agent": "cline"})
        assert [(e["name"], e["key"]) for e in only_cline["events"]] == [
            ("connection_opened", None),
            ("redis_get", "c0"),
            ("redis_get", "c1"),
            ("redis_get", "c2"),
        ]
        too_many = await kilo.call_tool("activity_recent", {"limit": 1001})
        assert too_many.is_error and "'limit' is 1001" in text_of(too_many) and "1000" in text_of(too_many)
        zero = await kilo.call_tool("activity_recent", {"limit": 0})
        assert zero.is_error and "at least 1" in text_of(zero)


async def test_a_job_action_is_an_activity_event(daemon: DaemonProcess, workdir: Path) -> None:
    """Archiving a session (run_job session_archiver) shows up as a job event of that project."""
    if not backend_to_itself(daemon):
        # Leader leases are global keys: on the shared Redis another test's daemon may hold one.
        pytest.skip("another test session holds database 14: run_job needs this daemon's lease")
    async with connect(daemon.socket_path, agent="kilocode", project=workdir) as client:
        await call(client, "session_save", {"session_id": "s-act", "context": {"step": 1}, "ttl": 60})
        state = await anyio.to_thread.run_sync(
            lambda: control.request(daemon.socket_path, "run_job", {"name": "session_archiver"})
        )
        assert state["last_outcome"] == "ok", state
        events = (await call(client, "activity_recent"))["events"]
    jobs = [e for e in events if e["kind"] == "job"]
    assert [(e["name"], e["key"], e["outcome"], e["agent"], e["duration_ms"]) for e in jobs] == [
        ("session_archiver", "s-act", "session_archived", None, None)
    ]


async def test_tail_prints_the_last_events_of_the_cwd_project(daemon: DaemonProcess, workdir: Path) -> None:
    """Without --follow tail prints the newest -n events (of --agent) and exits; by default it
    reads the project of the cwd, and --project accepts a project id. A connection event shows
    the peer's pid and uid."""
    (workdir / ".git").mkdir()  # a repository: the project tail finds from its cwd
    ns = project_of(workdir)
    async with (
        connect(daemon.socket_path, agent="writer", project=workdir) as writer,
        connect(daemon.socket_path, agent="other", project=workdir) as other,
    ):
        for index in range(5):
            await writer.call_tool("redis_get", {"key": f"k{index}"})
        await other.call_tool("redis_get", {"key": "other"})
    await wait_for_events(daemon, ns, 10)  # each connection opened and closed, and six calls

    done = await run_tail(daemon, "-n", "3", "--json", "--agent", "writer", cwd=workdir)
    assert done.returncode == 0, done.stderr
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["agent"], e["name"], e["key"]) for e in shown] == [
        ("writer", "redis_get", "k3"),
        ("writer", "redis_get", "k4"),
        ("writer", "connection_closed", None),
    ]
    assert all(e["project"] == ns.project_id and e["ts"].endswith("Z") for e in shown)
    assert shown[-1]["peer_uid"] == os.getuid() and shown[-1]["peer_pid"] == shown[-1]["claimed_pid"]

    done = await run_tail(daemon, "-n", "2", "--agent", "writer", "--project", ns.project_id, cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2 and b"\x1b" not in done.stdout  # not a terminal: no colour
    assert lines[0].split()[2:5] == ["writer", "tool", "redis_get"] and lines[0].endswith("k4")
    assert lines[1].split()[2:6] == ["writer", "conn", "connection_closed", "ok"]
    assert lines[1].endswith(f"pid {shown[-1]['peer_pid']} uid {os.getuid()}")


@asynccontextmanager
async def _killed_at_exit(process: anyio.abc.Process) -> AsyncIterator[None]:
    """Whatever happens in the block, the process is gone after it (closing an anyio process
    waits for it to exit, without a bound)."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()


async def test_tail_follow_shows_events_made_after_it_started(daemon: DaemonProcess, workdir: Path) -> None:
    """tail --follow prints what happens after it started, as it happens, and SIGTERM (like
    Ctrl-C) ends it with 0."""
    ns = project_of(workdir)
    async with connect(daemon.socket_path, agent="kilocode", project=workdir) as client:
        await client.call_tool("redis_get", {"key": "before"})
        await wait_for_events(daemon, ns, 2)  # the connection's opening and the call
        command = tail_command(daemon, "--follow", "--json", "-n", "1", "--project", str(workdir))
        async with (
            await anyio.open_process(
                command, env=daemon.env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as tail,
            _killed_at_exit(tail),
        ):
            assert tail.stdout is not None and tail.stderr is not None
            lines = BufferedByteReceiveStream(tail.stdout)

            async def next_event() -> dict[str, Any]:
                event: dict[str, Any] = json.loads(await lines.receive_until(b"\n", 1 << 20))
                return event

            with anyio.fail_after(20):
                # The last event before the start comes first: tail has read the stream.
                assert (await next_event())["key"] == "before"
                for index in range(3):
                    await client.call_tool("redis_set", {"key": f"after{index}", "value": SECRET})
                seen = [await next_event() for _ in range(3)]
            assert [(e["name"], e["key"], e["agent"]) for e in seen] == [
                ("redis_set", f"after{index}", "kilocode") for index in range(3)
            ]
            # SIGTERM ends it as cleanly as Ctrl-C; SIGINT would never arrive where it is
            # ignored (a suite run in the background).
            tail.send_signal(signal.SIGTERM)
            with anyio.move_on_after(10):
                await tail.wait()
            assert tail.returncode == 0, "tail --follow did not exit 0 within 10 s of SIGTERM"


async def test_tail_says_when_the_backend_cannot_be_reached(workdir: Path) -> None:
    """No embedded backend in the state dir, or a Redis URL nothing answers on: a clear message,
    exit 1; a --project that is neither a directory nor an id: exit 2."""
    (workdir / ".git").mkdir()  # a repository: tail has a project before it looks for a backend
    config = workdir / "empty.toml"
    config.touch()
    env = {"COORDINATORD_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    base = [COORDINATORD, "tail", "--state-dir", str(workdir / "state")]
    runs = {
        "down": (base, env),
        "refused": (base, {**env, "REDIS_URL": "redis://:pw@127.0.0.1:1/0"}),
        "bad": ([*base, "--project", "no{such}"], env),
    }
    done: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def run(name: str) -> None:
        command, environment = runs[name]
        done[name] = await anyio.run_process(command, env=environment, cwd=workdir, check=False)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for name in runs:
                tg.start_soon(run, name)
    down, refused, bad = done["down"], done["refused"], done["bad"]
    assert down.returncode == 1
    assert b"embedded backend is not running" in down.stderr and b"coordinatord serve" in down.stderr
    assert refused.returncode == 1
    assert b"backend redis://:***@127.0.0.1:1/0 could not be reached" in refused.stderr
    assert b"is the server running" in refused.stderr
    assert b":pw@" not in refused.stderr
    assert bad.returncode == 2 and b"neither a directory nor a project id" in bad.stderr
