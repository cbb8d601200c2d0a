"""Jobs and ``coordinatord status`` end to end: the sweep and the reaper run through a real
daemon (``run_job``), ``status`` against a running, a stopped and a backend-less daemon, and two
daemons sharing one backend, each job run by one of them per tick.

The daemons here use a backend of their own (embedded, or a private valkey-server), not the
machine's shared Redis: leader leases are global keys, and a daemon of another test (or of
another test session) holding one would turn these runs into ``not_leader``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from coordinatord import __version__, control
from coordinatord.keyspace import (
    AGENTS_ACTIVE,
    AGENTS_INACTIVE,
    LOCKS_INDEX,
    Namespace,
    lock_key,
    project_id_for,
)
from coordinatord.presence import Presence
from coordinatord.services.agents import AgentService
from coordinatord.services.locks import LockService
from coordinatord.services.projects import ProjectRegistry
from coordinatord.settings import AgentSettings, BackendSettings, LockSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.embedded import embedded_socket_path
from tests.e2e.conftest import connect, text_of
from tests.support import COORDINATORD, DaemonProcess, running_daemon, valkey_server

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SWEEP, REAPER = "heartbeat_sweep", "lock_reaper"
NO_SCHEDULE = {"COORDINATORD_JOBS__ENABLED": "false"}  # jobs run only when run_job asks


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def quiet_daemon() -> Iterator[DaemonProcess]:
    """A daemon with its own embedded Valkey whose scheduler never fires on its own."""
    with running_daemon(dict(NO_SCHEDULE)) as process:
        yield process


@pytest.fixture
async def backend(quiet_daemon: DaemonProcess) -> AsyncIterator[Store]:
    """The daemon's own backend, for setting up state "in the past" and checking effects."""
    store = RedisStore.from_url(f"unix://{embedded_socket_path(quiet_daemon.state_dir)}", BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


def namespace_of(workdir: Path) -> Namespace:
    return Namespace(project_id_for(str(workdir.resolve())))


async def announce(store: Store, workdir: Path) -> Namespace:
    """Make the project known, as a shim's connection would (without waiting for one)."""
    ns = namespace_of(workdir)
    await ProjectRegistry(store, ()).announce(ns.project_id, str(workdir))
    return ns


async def run_job(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    state: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: control.request(daemon.socket_path, "run_job", {"name": name})
    )
    return state


async def status_command(socket_path: Path, *args: str) -> tuple[int, str, str]:
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [COORDINATORD, "status", "--socket", str(socket_path), *args], check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def events(daemon: DaemonProcess, event: str, project: str) -> list[dict[str, Any]]:
    return [e for e in daemon.log_events() if e.get("event") == event and e.get("project") == project]


async def test_the_sweep_runs_through_the_daemon_and_spares_connected_agents(
    quiet_daemon: DaemonProcess, backend: Store, workdir: Path
) -> None:
    """run_job heartbeat_sweep: quiet agents go inactive, long-quiet ones go gone with their locks;
    an agent connected through a shim stays active however old its heartbeat."""
    ns = await announce(backend, workdir)
    two_hours_ago = AgentService(backend, AgentSettings(), Presence(), FixedClock(time.time() - 7_200))
    ten_minutes_ago = AgentService(backend, AgentSettings(), Presence(), FixedClock(time.time() - 600))
    locks = LockService(backend, LockSettings())
    for agent in ("ghost", "editor"):
        await two_hours_ago.register(ns, agent)
    await ten_minutes_ago.register(ns, "napper")
    await locks.acquire(ns, "ghost", "src/app.py", ttl_s=600)
    await locks.acquire(ns, "editor", "src/ui.py", ttl_s=600)

    async with connect(quiet_daemon.socket_path, agent="editor", project=workdir) as client:
        listed = json.loads(text_of(await client.call_tool("agent_list", {})))
        assert [a["agent"] for a in listed["agents"]] == ["editor"]
        state = await run_job(quiet_daemon, SWEEP)
        assert state["last_outcome"] == "ok", state
        assert state["last_counts"]["projects"] >= 1
        assert state["last_counts"]["inactive"] >= 2 and state["last_counts"]["gone"] >= 1
        assert state["last_counts"]["locks_released"] >= 1

    inactive = {e["agent"] for e in events(quiet_daemon, "agent_inactive", ns.project_id)}
    assert inactive == {"ghost", "napper"}
    assert [e["agent"] for e in events(quiet_daemon, "agent_gone", ns.project_id)] == ["ghost"]
    released = events(quiet_daemon, "lock_released_stale", ns.project_id)
    assert [(e["agent"], e["key"]) for e in released] == [("ghost", "src/app.py")]
    assert set(await backend.execute("ZRANGE", ns.key(AGENTS_ACTIVE), 0, -1)) == {"editor"}
    assert set(await backend.execute("ZRANGE", ns.key(AGENTS_INACTIVE), 0, -1)) == {"napper"}
    assert [lock.resource for lock in (await locks.list(ns)).locks] == ["src/ui.py"]


async def test_the_reaper_runs_through_the_daemon(
    quiet_daemon: DaemonProcess, backend: Store, workdir: Path
) -> None:
    """run_job lock_reaper drops index entries whose lock is gone and leaves held locks alone."""
    ns = await announce(backend, workdir)
    locks = LockService(backend, LockSettings())
    await locks.acquire(ns, "cline", "vanished", ttl_s=600)
    await locks.acquire(ns, "cline", "kept", ttl_s=600)
    await backend.delete([ns.key(lock_key("vanished"))])

    state = await run_job(quiet_daemon, REAPER)
    assert state["last_outcome"] == "ok", state
    assert state["last_counts"]["reaped"] >= 1

    assert [e["key"] for e in events(quiet_daemon, "lock_reaped", ns.project_id)] == ["vanished"]
    assert await backend.execute("ZRANGE", ns.key(LOCKS_INDEX), 0, -1) == ["kept"]


async def test_status_reports_a_running_daemon(quiet_daemon: DaemonProcess, workdir: Path) -> None:
    """status exits 0 and shows pid, version, backend health, shims, agents, locks and jobs."""
    ns = namespace_of(workdir)
    async with connect(quiet_daemon.socket_path, agent="kilocode", project=workdir) as client:
        await client.call_tool("agent_heartbeat", {"current_task": "status"})
        acquired = json.loads(text_of(await client.call_tool("lock_acquire", {"resource": "docs/README.md"})))
        assert acquired["acquired"]
        await run_job(quiet_daemon, SWEEP)

        code, out, err = await status_command(quiet_daemon.socket_path, "--json")
        assert (code, err) == (0, "")
        report = json.loads(out)
        code, text, err = await status_command(quiet_daemon.socket_path)
        assert (code, err) == (0, "")

    assert quiet_daemon.process is not None
    assert report["running"] is True
    assert report["daemon"]["pid"] == quiet_daemon.process.pid
    # The config file the daemon read (DaemonProcess names an empty one), said in both forms.
    config_file = str(quiet_daemon.root / "no-config.toml")
    assert report["daemon"]["config_file"] == config_file
    assert f"  config    {config_file}" in text
    assert report["backend"]["healthy"] is True
    assert {"agent": "kilocode", "project": ns.project_id} in [
        {"agent": c["agent"], "project": c["project"]} for c in report["connections"]
    ]
    (project,) = [p for p in report["projects"]["shown"] if p["project"] == ns.project_id]
    assert project["active_agents"] == 1
    assert [(a["agent"], a["connected"]) for a in project["agents"]] == [("kilocode", True)]
    assert project["held_locks"] == 1
    assert [(lock["resource"], lock["held_by"]) for lock in project["locks"]] == [
        ("docs/README.md", "kilocode")
    ]
    jobs = {job["name"]: job for job in report["jobs"]}
    assert set(jobs) >= {SWEEP, REAPER}
    assert jobs[SWEEP]["last_outcome"] == "ok" and jobs[SWEEP]["next_run"] is None  # not scheduled here

    for expected in (
        f"coordinatord {__version__} is running: pid {quiet_daemon.process.pid}",
        "healthy",
        "connected shims:",
        "kilocode",
        ns.project_id,
        "docs/README.md  by kilocode",
        f"{SWEEP}",
        "last run",
        REAPER,
    ):
        assert expected in text, (expected, text)


async def test_status_of_a_stopped_daemon(workdir: Path) -> None:
    """With no daemon on the socket, status exits 1 naming the socket and how to start the daemon."""
    socket_path = workdir / "nobody-home.sock"
    code, out, err = await status_command(socket_path)
    assert code == 1 and out == ""
    assert str(socket_path) in err and "coordinatord serve" in err
    code, out, err = await status_command(socket_path, "--json")
    assert code == 1
    assert json.loads(out)["running"] is False and json.loads(out)["socket"] == str(socket_path)


async def test_status_answers_while_the_backend_is_down(workdir: Path) -> None:
    """A daemon whose backend died still answers status (exit 0), reporting the backend unhealthy."""
    with valkey_server() as valkey:
        env = {"REDIS_URL": valkey.url, "COORDINATORD_BACKEND__TIMEOUT_S": "1", **NO_SCHEDULE}
        daemon = DaemonProcess(workdir, env=env)
        daemon.start()
        try:
            valkey.kill()
            code, out, err = await status_command(daemon.socket_path, "--json")
            assert (code, err) == (0, "")
            report = json.loads(out)
            assert report["backend"]["healthy"] is False and report["backend"]["error"]
            assert report["projects"]["total"] is None and report["jobs"]
            code, text, _ = await status_command(daemon.socket_path)
            assert code == 0 and "UNHEALTHY" in text and "projects: unknown" in text
        finally:
            assert daemon.stop() == 0


async def test_two_daemons_on_one_backend_take_turns_by_lease(workdir: Path) -> None:
    """Of two daemons on one backend, the one holding a job's lease runs it; the other reports not_leader."""
    with valkey_server() as valkey:
        env = {"REDIS_URL": valkey.url, **NO_SCHEDULE}
        first, second = DaemonProcess(workdir / "a", env=env), DaemonProcess(workdir / "b", env=env)
        for daemon in (first, second):
            daemon.root.mkdir(mode=0o700)
            daemon.start()
        try:
            names = [job["name"] for job in control.request(first.socket_path, "status")["jobs"]]
            assert {SWEEP, REAPER} <= set(names)
            for name in names:
                assert (await run_job(first, name))["last_outcome"] != "not_leader"
                assert (await run_job(second, name))["last_outcome"] == "not_leader"
                assert (await run_job(first, name))["last_outcome"] != "not_leader"
            code, text, _ = await status_command(second.socket_path)
            assert code == 0 and "another daemon is the leader" in text
        finally:
            assert first.stop() == 0
            assert second.stop() == 0


async def test_a_daemon_without_a_schedule_gives_its_leases_back_when_it_stops(workdir: Path) -> None:
    """run_job on a daemon with jobs.enabled = false takes the job's lease; stopping that daemon
    gives it back, so the next daemon on the backend runs the job at once rather than being
    not_leader for 2.5 intervals."""
    with valkey_server() as valkey:
        env = {"REDIS_URL": valkey.url, **NO_SCHEDULE}
        first, second = DaemonProcess(workdir / "a", env=env), DaemonProcess(workdir / "b", env=env)
        first.root.mkdir(mode=0o700)
        second.root.mkdir(mode=0o700)
        first.start()
        try:
            assert (await run_job(first, SWEEP))["last_outcome"] == "ok"
        finally:
            assert first.stop() == 0
        second.start()
        try:
            assert (await run_job(second, SWEEP))["last_outcome"] == "ok"
        finally:
            assert second.stop() == 0


async def test_two_scheduled_daemons_run_each_tick_once(workdir: Path) -> None:
    """With both schedulers ticking fast, every sweep and reap run is done by one daemon; the
    other's ticks all find the lease taken."""
    with valkey_server() as valkey:
        env = {
            "REDIS_URL": valkey.url,
            "COORDINATORD_LOGGING__LEVEL": "debug",  # job_skipped_not_leader is a debug event
            "COORDINATORD_JOBS__HEARTBEAT_SWEEP_S": "0.1",
            "COORDINATORD_JOBS__LOCK_REAP_S": "0.1",
            "COORDINATORD_JOBS__ARCHIVE_S": "3600",
            "COORDINATORD_JOBS__MEMORY_BANK_REFRESH_S": "3600",
        }
        daemons = [DaemonProcess(workdir / name, env=env) for name in ("a", "b")]
        for daemon in daemons:
            daemon.root.mkdir(mode=0o700)
            daemon.start()
        try:

            def ticks(daemon: DaemonProcess, job: str) -> list[str]:
                """Outcomes of the daemon's ticks of ``job``, in order."""
                return [
                    "not_leader" if e["event"] == "job_skipped_not_leader" else e["outcome"]
                    for e in daemon.log_events()
                    if e.get("job") == job and e["event"] in ("job_run", "job_skipped_not_leader")
                ]

            # Each daemon's own log is how this process learns its scheduler ticked.
            with anyio.fail_after(20):
                while any(len(ticks(d, job)) < 5 for d in daemons for job in (SWEEP, REAPER)):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            for job in (SWEEP, REAPER):
                outcomes = sorted(sorted(set(ticks(daemon, job))) for daemon in daemons)
                assert outcomes == [["not_leader"], ["ok"]], (job, outcomes)
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0
