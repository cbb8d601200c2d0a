"""Three daemons of three "hosts" (``daemon.host_id``) on one Valkey, each with its own socket
and state dir, each with shims of its own clone of one repository (three paths, one origin
spelt three ways): one namespace; presence spans the daemons, a killed daemon's agents go after
the record TTL, sessions are archived on their own host into that host's clone, and a global
job runs in one daemon while host-local ones run in all three."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis as redis_sync

from coordinatord.keyspace import ACTIVITY_STREAM, Namespace, leader_key
from tests.e2e.conftest import call, connect
from tests.support import GIT, DaemonProcess, ValkeyProcess, git_repository, short_tmpdir, valkey_server

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(GIT is None, reason="git is not installed")]

HOSTS = ("host-a", "host-b", "host-c")
ORIGINS = (
    "git@github.com:acme/app.git",
    "https://github.com/acme/app",
    "ssh://git@github.com:22/acme/app.git",
)
"""One repository's origin as each host's clone spells it."""
PROJECT_ID = "github.com/acme/app"
SETTINGS = {
    # Records live 2 s (renewed every 0.5 s); agents are inactive 1 s and gone 2 s after their
    # last heartbeat; jobs tick every 0.5-1 s. The lease of each job lasts 5 s (its minimum).
    "COORDINATORD_PRESENCE__TTL_S": "2",
    "COORDINATORD_PRESENCE__RENEW_S": "0.5",
    "COORDINATORD_AGENTS__HEARTBEAT_WINDOW_S": "1",
    "COORDINATORD_AGENTS__FORGET_AFTER_S": "2",
    "COORDINATORD_JOBS__HEARTBEAT_SWEEP_S": "0.5",
    "COORDINATORD_JOBS__LOCK_REAP_S": "1",
    "COORDINATORD_JOBS__ARCHIVE_S": "1",
    "COORDINATORD_JOBS__ARCHIVE_IDLE_S": "1",
    "COORDINATORD_JOBS__ARCHIVE_MARGIN_S": "0",
    "COORDINATORD_JOBS__MEMORY_BANK_REFRESH_S": "1",
}


@pytest.fixture
def backend() -> Iterator[ValkeyProcess]:
    """A Valkey of this test's own: leader leases are global keys, and must be the three's only."""
    with valkey_server() as server:
        yield server


@contextlib.contextmanager
def daemons(backend: ValkeyProcess) -> Iterator[dict[str, DaemonProcess]]:
    """The three daemons (not started), stopped and removed afterwards whatever happened."""
    made = {
        host: DaemonProcess(
            short_tmpdir(), env={**SETTINGS, "REDIS_URL": backend.url, "COORDINATORD_DAEMON__HOST_ID": host}
        )
        for host in HOSTS
    }
    try:
        yield made
    finally:
        for process in made.values():
            process.stop()
            shutil.rmtree(process.root, ignore_errors=True)


def events(process: DaemonProcess, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in process.log_events()
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
    ]


def job_runs(process: DaemonProcess, job: str) -> int:
    return len(events(process, "job_run", job=job, outcome="ok"))


UNTIL_S = 20.0


async def until(condition: Any, what: str) -> None:
    """Poll ``condition()`` (another process's doing: no event here can signal it) until true,
    for at most :data:`UNTIL_S`; the failure names ``what`` was awaited."""
    with anyio.move_on_after(UNTIL_S) as scope:
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert not scope.cancelled_caught, f"not within {UNTIL_S:g} s: {what}"


def activity(backend: ValkeyProcess, ns: Namespace) -> list[dict[str, str]]:
    client = redis_sync.Redis(unix_socket_path=str(backend.socket_path), decode_responses=True)
    try:
        entries: Any = client.xrange(ns.key(ACTIVITY_STREAM))
        return [dict(fields) for _, fields in entries]
    finally:
        client.close()


def leader(backend: ValkeyProcess, job: str, host: str | None = None) -> str | None:
    client = redis_sync.Redis(unix_socket_path=str(backend.socket_path), decode_responses=True)
    try:
        value = client.get(leader_key(job, host))
        return None if value is None else str(value)
    finally:
        client.close()


async def listed(client: Any) -> dict[str, dict[str, Any]]:
    return {a["agent"]: a for a in (await call(client, "agent_list", {"include_inactive": True}))["agents"]}


async def test_presence_sessions_and_jobs_span_three_hosts(backend: ValkeyProcess, short_tmp: Path) -> None:
    """Clones of one origin at three paths, one per host, are one namespace. An agent connected
    only to daemon C is present for A's sweep (never inactive or gone, its lock kept) and listed
    with its host; each host archives the sessions written through it only, into its own clone;
    the global jobs run in one daemon and the host-local ones in all three; after SIGKILL of C
    its agent goes once its record's TTL has passed, and its lock is released (each action
    reported once)."""
    roots = {
        host: git_repository(short_tmp / host / "src" / "app", origin)
        for host, origin in zip(HOSTS, ORIGINS, strict=True)
    }
    ns = Namespace(PROJECT_ID)
    with daemons(backend) as by_host:
        a, b, c = (by_host[host] for host in HOSTS)
        a.start()
        # A leads the global jobs: it ticked them before the others started.
        await until(lambda: job_runs(a, "heartbeat_sweep") and job_runs(a, "lock_reaper"), "A leads")
        b.start()
        c.start()
        async with (
            connect(a.socket_path, agent="alice", project=roots["host-a"]) as alice,
            connect(b.socket_path, agent="bob", project=roots["host-b"]) as bob,
            connect(c.socket_path, agent="carol", project=roots["host-c"]) as carol,
        ):
            for client, session in ((alice, "s-a"), (bob, "s-b"), (carol, "s-c")):
                await call(client, "agent_register")
                await call(client, "session_save", {"session_id": session, "context": {"by": session}})
            await call(carol, "lock_acquire", {"resource": "src/c.py", "ttl": 600})

            # Carol's heartbeat is past the forget horizon and A's sweep has run many times since.
            sweeps = job_runs(a, "heartbeat_sweep")
            await until(lambda: job_runs(a, "heartbeat_sweep") >= sweeps + 8, "A sweeps")
            entry = (await listed(alice))["carol"]
            assert (entry["status"], entry["connected"], entry["hosts"]) == ("active", True, ["host-c"])
            locks = (await call(alice, "lock_list"))["locks"]
            assert [(lock["resource"], lock["held_by"]) for lock in locks] == [("src/c.py", "carol")]
            outcomes = [(e.get("agent"), e.get("outcome")) for e in activity(backend, ns)]
            for agent in ("alice", "bob", "carol"):
                assert (agent, "agent_inactive") not in outcomes
                assert (agent, "agent_gone") not in outcomes

            # Each session is archived by the daemon of the host that wrote it, by no other.
            written = {"s-a": a, "s-b": b, "s-c": c}
            for session, owner in written.items():
                await until(
                    lambda o=owner, s=session: events(o, "session_archived", key=s), f"{session} archived"
                )
            for session, owner in written.items():
                others = [p for p in (a, b, c) if p is not owner]
                assert all(not events(p, "session_archived", key=session) for p in others), session
            # ... into the clone on that host: each clone holds its own host's session only.
            for host, session in zip(HOSTS, written, strict=True):
                archived = sorted(
                    path.name for path in (roots[host] / ".kilocode" / "sessions").glob("*.json")
                )
                assert archived == [f"{session}.json"], host
            # Global jobs in A alone; host-local jobs in every daemon, under its host's lease.
            for job in ("heartbeat_sweep", "lock_reaper"):
                assert (job_runs(b, job), job_runs(c, job)) == (0, 0)
                assert (leader(backend, job) or "").startswith("host-a:")
            for host, process in by_host.items():
                assert job_runs(process, "session_archiver") and job_runs(process, "memory_bank_refresh")
                assert (leader(backend, "session_archiver", host) or "").startswith(f"{host}:")

            # C dies without a word: carol's record expires after its TTL, then she is gone.
            assert c.process is not None
            c.process.kill()
            c.wait()
            await until(
                lambda: (
                    ("carol", "lock_released_stale")
                    in [(e.get("agent"), e.get("outcome")) for e in activity(backend, ns)]
                ),
                "carol's lock released",
            )
            outcomes = [(e.get("agent"), e.get("outcome")) for e in activity(backend, ns)]
            assert outcomes.count(("carol", "agent_inactive")) == 1
            assert outcomes.count(("carol", "agent_gone")) == 1
            assert outcomes.count(("carol", "lock_released_stale")) == 1
            assert (await call(alice, "lock_list"))["locks"] == []
            still = await listed(alice)
            assert "carol" not in still
            assert still["alice"]["hosts"] == ["host-a"] and still["bob"]["hosts"] == ["host-b"]
            assert ("alice", "agent_gone") not in outcomes and ("bob", "agent_gone") not in outcomes
