"""One clock for every daemon on a backend: two real daemons share one real Valkey, one of them on
a "machine" whose clock is two hours off (ahead, or behind), faked in that daemon's process only
by ``tests/skewed_clock/sitecustomize.py`` (the Valkey, the other daemon, the shims and this test
keep the true time).

An agent holds a lock with a one-hour lease, a task claim and a file reservation, and keeps a
session; its editor closes. Then the jobs run in the daemon whose view of the other's writes
differs by the skew: with each daemon's own wall clock, the sweep found the agent gone at once and
released all three to the next agent, and the archiver archived the fresh session (issue 21).
With the backend's clock nothing is released or archived early, another agent cannot take what
the first holds, and the skewed daemon says its clock is off (``clock_skew`` in its log, and in
``status``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from coordinatord.keyspace import PRESENCE_INDEX, Namespace, project_id_for
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore, Store
from tests.e2e.conftest import call, connect, text_of
from tests.e2e.test_jobs_and_status import NO_SCHEDULE, REAPER, SWEEP, run_job, status_command
from tests.support import DaemonProcess, valkey_server

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SKEWED_CLOCK = Path(__file__).resolve().parents[1] / "skewed_clock"
SKEW_S = 7_200.0
ARCHIVER = "session_archiver"
JOBS = (SWEEP, REAPER, ARCHIVER)
RESOURCE, TASK, SESSION = "db:migrations", "migrate", "plan"


def skewed(offset_s: float) -> dict[str, str]:
    """The environment that puts this daemon's process (only) on a clock ``offset_s`` off."""
    path = os.pathsep.join(p for p in (str(SKEWED_CLOCK), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SKEWED_CLOCK_OFFSET_S": repr(offset_s)}


@contextmanager
def two_daemons(root: Path, offset_s: float) -> Iterator[tuple[DaemonProcess, DaemonProcess, str]]:
    """A daemon on the true clock and one ``offset_s`` off, on one private Valkey (the jobs'
    leader leases are global keys: no other test's daemon may hold them); jobs only on demand."""
    with valkey_server() as valkey:
        env = {
            "REDIS_URL": valkey.url,
            # Sessions idle an hour are due: a clock two hours ahead finds a fresh one due.
            "COORDINATORD_JOBS__ARCHIVE_IDLE_S": "3600",
            **NO_SCHEDULE,
        }
        daemons = (
            DaemonProcess(root / "true", env=env),
            DaemonProcess(root / "off", env={**env, **skewed(offset_s)}),
        )
        try:
            for daemon in daemons:
                daemon.root.mkdir()
                daemon.start()
            yield daemons[0], daemons[1], valkey.url
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.output.decode(errors="replace")


@asynccontextmanager
async def backend(url: str) -> AsyncIterator[Store]:
    store = RedisStore.from_url(url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


async def hold_everything(daemon: DaemonProcess, project: Path) -> None:
    """Agent alice, through ``daemon``: a heartbeat, a one-hour lock, a claimed task, a file
    reservation and a session; then her editor closes."""
    async with connect(daemon.socket_path, agent="alice", project=project) as alice:
        await call(alice, "agent_heartbeat", {"current_task": TASK})
        lock = await call(alice, "lock_acquire", {"resource": RESOURCE, "ttl": 3600})
        assert lock["acquired"], lock
        await call(alice, "task_create", {"task_id": TASK, "steps": ["schema", "data"]})
        assert (await call(alice, "task_claim", {"task_id": TASK}))["claimedBy"] == "alice"
        held = await call(alice, "files_reserve", {"paths": ["src/**"], "ttl_s": 3600, "reason": "migration"})
        assert held["reserved"], held
        await call(alice, "session_save", {"session_id": SESSION, "context": {"step": "schema"}})


async def until_not_present(store: Store, ns: Namespace, agent: str) -> None:
    """Wait (bounded) until no daemon holds a live connection record for ``agent``: from then on
    only her heartbeat keeps her from being found gone."""
    with anyio.fail_after(10):
        while True:
            seconds, micros = await store.time()
            until = await store.zscore(ns.key(PRESENCE_INDEX), agent)
            if until is None or until <= seconds * 1000 + micros // 1000:
                return
            await anyio.sleep(0.05)


async def refused_to_bob(daemon: DaemonProcess, project: Path) -> None:
    """Agent bob, through ``daemon``, cannot take alice's lock, task or files."""
    async with connect(daemon.socket_path, agent="bob", project=project) as bob:
        lock = await call(bob, "lock_acquire", {"resource": RESOURCE})
        assert (lock["acquired"], lock["held_by"]) == (False, "alice"), lock
        claim = await bob.call_tool("task_claim", {"task_id": TASK})
        assert claim.is_error and "claimed by alice" in text_of(claim), text_of(claim)
        files = await call(bob, "files_reserve", {"paths": ["src/app.py"]})
        assert not files["reserved"] and [c["agent"] for c in files["conflicts"]] == ["alice"], files
        locks = await call(bob, "lock_list")
        assert [(entry["resource"], entry["held_by"]) for entry in locks["locks"]] == [(RESOURCE, "alice")]


async def run_jobs(daemon: DaemonProcess) -> dict[str, dict[str, int]]:
    """Each job once, through ``daemon`` (which must be the leader: nobody else ran them)."""
    counts = {}
    for job in JOBS:
        state = await run_job(daemon, job)
        assert state["last_outcome"] == "ok", state
        counts[job] = state["last_counts"]
    return counts


def clock_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [e for e in daemon.log_events() if e.get("event") in ("clock_skew", "clock_skew_resolved")]


@pytest.mark.parametrize(
    ("offset_s", "alice_on", "jobs_on"),
    [(SKEW_S, "true", "off"), (-SKEW_S, "off", "true")],
    ids=["jobs-on-a-clock-2h-ahead", "writes-on-a-clock-2h-behind"],
)
async def test_a_skewed_daemon_releases_nothing_early(
    workdir: Path, offset_s: float, alice_on: str, jobs_on: str
) -> None:
    """A clock two hours ahead running the jobs, or two hours behind writing alice's state:
    after her editor closes, the sweep, the reaper and the archiver release and archive nothing,
    bob is refused her lock, task and files, and the skewed daemon warns once of its clock, in
    its log and in status (the other daemon does not)."""
    project = workdir / "project"
    project.mkdir()
    ns = Namespace(project_id_for(str(project.resolve())))
    with two_daemons(workdir, offset_s) as (true, off, url):
        daemons = {"true": true, "off": off}
        await hold_everything(daemons[alice_on], project)
        async with backend(url) as store:
            await until_not_present(store, ns, "alice")

        counts = await run_jobs(daemons[jobs_on])

        assert counts[SWEEP]["projects"] == 1
        for released in ("inactive", "gone", "locks_released", "files_released", "claims_released"):
            assert counts[SWEEP][released] == 0, counts
        assert counts[REAPER]["reaped"] == 0 and counts[ARCHIVER]["archived"] == 0, counts
        await refused_to_bob(daemons[jobs_on], project)
        await refused_to_bob(daemons[alice_on], project)

        # The skewed daemon warned at its start, once, with the skew it has.
        await off.wait_for_log("clock_skew")
        (warning,) = clock_events(off)
        assert warning["level"] == "warning" and warning["skew_s"] == pytest.approx(offset_s, abs=60)
        assert clock_events(true) == []
        code, out, _ = await status_command(off.socket_path, "--json")
        assert code == 0
        clock = json.loads(out)["daemon"]["clock"]
        assert clock["skewed"] and clock["skew_s"] == pytest.approx(offset_s, abs=60), clock
        assert clock["max_skew_s"] == 2.0
        code, text, _ = await status_command(off.socket_path)
        direction = "ahead of" if offset_s > 0 else "behind"
        assert code == 0 and f"this machine's clock is 2 h {direction} the backend's" in text, text
        code, out, _ = await status_command(true.socket_path, "--json")
        assert json.loads(out)["daemon"]["clock"]["skewed"] is False
