"""Projects named on purpose, end to end: every spelling of a root is one project, a shim outside
any project gets refusals that name the fix, ``coordinatord projects list|forget`` as separate
processes, and the kernel's pid recorded beside the one a preamble claims.

Spellings a shim would canonicalise itself are sent in raw preambles, so that what is tested is
the daemon's own canonicalisation. The daemons here run no scheduled jobs and know one
``[[projects]]`` entry. On the machine's Redis other test runs announce projects too, so checks
on ``projects list`` look only at this test's own roots.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from coordinatord import paths
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace, is_write_record, project_id_for
from coordinatord.preamble import Preamble
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.embedded import embedded_socket_path
from tests.e2e.conftest import RawConnection, call_line, connect, frames, text_of
from tests.support import COORDINATORD, DaemonProcess, running_daemon, short_tmpdir

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FIX = '"--project", "/path/to/repo"'


@pytest.fixture(scope="module")
def configured_root() -> Iterator[Path]:
    root = Path(os.path.realpath(short_tmpdir("cfg-")))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def daemon(request: pytest.FixtureRequest, configured_root: Path) -> Iterator[DaemonProcess]:
    """A daemon with one [[projects]] entry and no scheduled jobs (nothing writes on its own)."""
    env = {
        "COORDINATORD_JOBS__ENABLED": "false",
        "COORDINATORD_PROJECTS": json.dumps([{"root": str(configured_root)}]),
    }
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("real_redis")
    with running_daemon(env) as process:
        yield process


@pytest.fixture
def base(workdir: Path) -> Path:
    """The test's folder by its canonical path (what the daemon makes of any spelling of it)."""
    return Path(os.path.realpath(workdir))


@pytest.fixture
async def backend(daemon: DaemonProcess) -> AsyncIterator[Store]:
    """The daemon's backend, to see which keys exist."""
    url = daemon.env.get("REDIS_URL") or f"unix://{embedded_socket_path(daemon.state_dir)}"
    store = RedisStore.from_url(url, BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def cli(daemon: DaemonProcess, *args: str, cwd: Path = Path("/")) -> subprocess.CompletedProcess[str]:
    command = [COORDINATORD, *args, "--socket", str(daemon.socket_path)]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=daemon.env, cwd=cwd, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def listed(daemon: DaemonProcess) -> list[dict[str, Any]]:
    done = await cli(daemon, "projects", "list", "--json")
    assert done.returncode == 0, done.stderr
    projects: list[dict[str, Any]] = json.loads(done.stdout)["projects"]
    return projects


class Raw:
    """An MCP client on a bare socket whose first line is the preamble given (or none)."""

    def __init__(self, daemon: DaemonProcess, preamble: Preamble | None, name: str = "raw") -> None:
        self.conn = RawConnection(daemon.socket_path)
        if preamble is not None:
            self.conn.send(preamble.encode())
        self.conn.initialize(name)
        self._ids = iter(range(10, 10_000))

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        self.conn.send(frames(call_line(request_id, tool, arguments or {})))
        result: dict[str, Any] = self.conn.reply_to(request_id)["result"]
        return result

    def text(self, tool: str, arguments: dict[str, Any] | None = None) -> str:
        result = self.call(tool, arguments)
        assert not result.get("isError"), result
        return str(result["content"][0]["text"])

    def close(self) -> None:
        self.conn.close()


def named(root: str, agent: str, pid: int | None = None) -> Preamble:
    return Preamble(agent=agent, project=root, pid=pid or os.getpid(), cwd="/")


# --- one project per root, whatever its spelling -------------------------------------------


async def test_every_spelling_of_a_root_is_one_namespace_and_one_archive_folder(
    daemon: DaemonProcess, base: Path
) -> None:
    """/x/a/../b, /x/b/, //x/b, a symlink to /x/b (raw preambles) and `--project ./b` from /x (a
    shim) are one project: what one writes every other reads, and session_end through two
    spellings archives into the one folder /x/b/.kilocode/sessions/."""
    (base / "a").mkdir()
    (base / "b").mkdir()
    (base / "link").symlink_to(base / "b")
    canonical = str(base / "b")
    spellings = [f"{base}/a/../b", f"{base}/b/", f"/{base}/b", f"{base}/./b", f"{base}/link"]
    agent = unique("speller")
    raws = [Raw(daemon, named(spelling, f"{agent}-{index}")) for index, spelling in enumerate(spellings)]
    try:
        # A real shim started in /x with `--project ./b`: it canonicalises that itself.
        params = StdioServerParameters(
            command=COORDINATORD,
            args=[
                "shim",
                "--socket",
                str(daemon.socket_path),
                "--agent",
                f"{agent}-shim",
                "--project",
                "./b",
            ],
            cwd=str(base),
        )
        with anyio.fail_after(30):
            async with Client(params, mode="legacy") as shim:
                for index, raw in enumerate(raws):
                    assert raw.text("redis_set", {"key": f"k{index}", "value": f"v{index}"}) == "OK"
                assert (
                    text_of(await shim.call_tool("redis_set", {"key": "k-shim", "value": "v-shim"})) == "OK"
                )
                for raw in raws:
                    for index in range(len(raws)):
                        assert raw.text("redis_get", {"key": f"k{index}"}) == f"v{index}"
                    assert raw.text("redis_get", {"key": "k-shim"}) == "v-shim"
                for index in range(len(raws)):
                    assert text_of(await shim.call_tool("redis_get", {"key": f"k{index}"})) == f"v{index}"
        for raw, session in ((raws[0], "s-dotdot"), (raws[2], "s-slashes")):
            raw.text("session_save", {"session_id": session, "context": {"step": 1}})
            ended = raw.call("session_end", {"session_id": session})
            assert not ended.get("isError"), ended
            assert (
                ended["structuredContent"]["archived_to"] == f"{canonical}/.kilocode/sessions/{session}.json"
            )
    finally:
        for raw in raws:
            raw.close()
    folder = base / "b" / ".kilocode" / "sessions"
    archives = sorted(path.name for path in folder.iterdir() if path.name != ".gitignore")
    assert archives == ["s-dotdot.json", "s-slashes.json"]
    assert not (base / "a" / ".kilocode").exists()
    opened = [
        e for e in daemon.log_events() if e["event"] == "connection_opened" and agent in str(e["agent"])
    ]
    assert len(opened) == len(spellings) + 1
    assert {(e["project"], e["root"]) for e in opened} == {(project_id_for(canonical), canonical)}
    mine = [p for p in await listed(daemon) if str(p["root"]).startswith(str(base))]
    assert [(p["project_id"], p["root"]) for p in mine] == [(project_id_for(canonical), canonical)]


# --- no project outside a repository ----------------------------------------------------------


@asynccontextmanager
async def shim_in(
    daemon: DaemonProcess, cwd: Path, agent: str, stderr: Path, mode: str, home: Path | None = None
) -> AsyncIterator[Client]:
    """A real shim started in ``cwd`` (HOME set to ``home``), its stderr going to a file."""
    params = StdioServerParameters(
        command=COORDINATORD,
        args=["shim", "--socket", str(daemon.socket_path), "--agent", agent],
        cwd=str(cwd),
        env={"HOME": str(home)} if home is not None else None,
    )
    with stderr.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


@pytest.mark.parametrize("where", ["root", "home"])
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_shim_outside_any_project_is_refused_with_the_fix(
    daemon: DaemonProcess, workdir: Path, where: str, mode: str
) -> None:
    """A shim started in / or in $HOME (a dotfiles .git there does not count) has no project:
    tools are listed, every project tool is an isError naming the directory and the fix,
    redis_ping answers, the memory bank lists nothing and reading it says why, the shim's stderr
    has the one line, and no project is announced (in both protocol eras)."""
    home = workdir / "home"
    (home / ".git").mkdir(parents=True)
    cwd = Path("/") if where == "root" else home
    agent = unique("homeless")
    started = time.time()
    stderr = workdir / "shim.err"
    with anyio.fail_after(60):
        async with shim_in(daemon, cwd, agent, stderr, mode, home=home) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"redis_get", "session_save", "task_create", "redis_ping"} <= tools
            for name, arguments in (
                ("redis_get", {"key": "k"}),
                ("redis_set", {"key": "k", "value": "v"}),
                ("session_save", {"session_id": "s1", "context": {}}),
                ("memory_bank_index", {}),
            ):
                result = await client.call_tool(name, arguments)
                assert result.is_error, name
                text = text_of(result)
                expected = f"{name}: this editor's shim has no project: {paths.not_a_project(cwd)}"
                assert text.startswith(expected), text
                assert text.endswith(paths.SHIM_PROJECT_FIX) and FIX in text, text
            assert text_of(await client.call_tool("redis_ping", {})) == "PONG"
            assert (await client.list_resources()).resources == []
            with pytest.raises(MCPError, match="has no project"):
                await client.read_resource("memory-bank://brief.md")
            status = json.loads((await cli(daemon, "status", "--json")).stdout)
    (conn,) = [c for c in status["connections"] if c["agent"] == agent]
    assert (conn["project"], conn["root"], conn["cwd"]) == (None, None, str(cwd))
    assert conn["no_project"].startswith("this editor's shim has no project")
    lines = stderr.read_text().splitlines()
    assert lines == [f"coordinatord shim: {paths.not_a_project(cwd)}; {paths.SHIM_PROJECT_FIX}"]
    await daemon.wait_for_log("connection_closed", agent=agent)
    (opened,) = [e for e in daemon.log_events() if e["event"] == "connection_opened" and e["agent"] == agent]
    assert (opened["project"], opened["reason"], opened["cwd"]) == (None, "no_project", str(cwd))
    calls = [e for e in daemon.log_events() if e["event"] == "tool_call" and e["agent"] == agent]
    assert all(e["project"] is None for e in calls) and len(calls) == 5
    fresh = [p for p in await listed(daemon) if (p["last_seen"] or 0) >= started]
    assert [p for p in fresh if p["root"] in ("/", str(home))] == []
    assert project_id_for(str(cwd)) not in {p["project_id"] for p in fresh}


async def test_a_raw_client_without_preamble_stays_in_the_default_project(daemon: DaemonProcess) -> None:
    """No preamble at all (a plain MCP client, the benchmark): every tool works, in `default`."""
    key = unique("plain")
    raw = Raw(daemon, None, name=unique("plain-client"))
    try:
        assert raw.text("redis_set", {"key": key, "value": "1"}) == "OK"
        assert raw.text("redis_get", {"key": key}) == "1"
        raw.text("redis_del", {"keys": [key]})
    finally:
        raw.close()


# --- coordinatord projects list | forget ------------------------------------------------------


async def keys_of(store: Store, project_id: str, records: bool = False) -> list[str]:
    """The project's keys; with ``records``, the daemon's write records (_once:*) too."""
    ns = Namespace(project_id)
    found, truncated = await store.scan(ns.pattern("*"), 10_000)
    assert not truncated
    return sorted(key for key in found if records or not is_write_record(ns.local_key(key) or ""))


async def used_project(daemon: DaemonProcess, backend: Store, root: Path, keys: int) -> str:
    # `root` is canonical already: its id is what the daemon computes.
    """A project a shim used (``keys`` keys written) and left; returns its id once the
    daemon has written everything it will for it (the activity of its closed connection)."""
    agent = unique("user")
    with anyio.fail_after(30):
        async with connect(daemon.socket_path, agent=agent, project=root) as client:
            for index in range(keys):
                assert (
                    text_of(await client.call_tool("redis_set", {"key": f"k{index}", "value": "v"})) == "OK"
                )
    await daemon.wait_for_log("connection_closed", agent=agent)
    project_id = project_id_for(str(root))
    stream = Namespace(project_id).key(ACTIVITY_STREAM)
    with anyio.fail_after(10):  # written by the daemon's flusher: the stream is how we learn it
        while not any(  # noqa: ASYNC110
            fields.get("name") == "connection_closed"
            for _, fields in await backend.xrevrange(stream, "+", "-", 1_000_000)
        ):
            await anyio.sleep(0.05)
    return project_id


async def test_projects_list_shows_each_project_and_forget_drops_it(
    daemon: DaemonProcess, backend: Store, base: Path, configured_root: Path
) -> None:
    """list shows id, root, host, last seen, source and whether the folder is here; forget (by any
    spelling of the root) drops a project and leaves its keys; forget --purge (by id) also
    deletes every key of its namespace and says how many."""
    kept_root, purged_root = base / "kept", base / "purged"
    kept_root.mkdir()
    purged_root.mkdir()
    kept = await used_project(daemon, backend, kept_root, keys=2)
    purged = await used_project(daemon, backend, purged_root, keys=5)
    projects = {p["project_id"]: p for p in await listed(daemon)}
    entry = projects[purged]
    assert (entry["root"], entry["host"], entry["source"], entry["local"], entry["connected"]) == (
        str(purged_root),
        socket.gethostname(),
        "shim",
        True,
        [],
    )
    assert time.time() - 60 < entry["last_seen"] <= time.time()
    configured = projects[project_id_for(str(configured_root))]
    assert (configured["source"], configured["root"]) == ("config", str(configured_root))

    text = await cli(daemon, "projects", "list")
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()[1:]
    assert header.split() == [
        "PROJECT",
        "ID",
        "FROM",
        "ROOT",
        "HOST",
        "LAST",
        "SEEN",
        "SOURCE",
        "ON",
        "THIS",
        "HOST",
        "CONNECTED",
    ]
    (row,) = [line for line in rows if line.split()[0] == purged]
    assert row.split()[1:][:4] == ["its", "path", str(purged_root), socket.gethostname()]
    assert row.split()[-3:] == ["shim", "yes", "-"] and " ago " in row

    kept_keys = await keys_of(backend, kept)
    assert len(kept_keys) == 3  # two keys and the activity stream
    forgot = await cli(daemon, "projects", "forget", f"{kept_root}/", cwd=base)
    assert forgot.returncode == 0, forgot.stderr
    assert forgot.stdout.startswith(f"forgot project {kept} ({kept_root})")
    assert "--purge deletes them" in forgot.stdout
    assert await keys_of(backend, kept) == kept_keys

    before = await keys_of(backend, purged)
    assert len(before) == 6  # five keys and the activity stream
    everything = len(await keys_of(backend, purged, records=True))  # the write records too
    done = await cli(daemon, "projects", "forget", purged, "--purge", "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert (reply["project_id"], reply["purged"], reply["keys_deleted"]) == (purged, True, everything)
    assert await keys_of(backend, purged, records=True) == []
    left = {p["project_id"] for p in await listed(daemon)}
    assert kept not in left and purged not in left
    await daemon.wait_for_log("project_forgotten", project=purged, keys_deleted=everything)


async def test_forget_refuses_config_connected_and_unknown_projects(
    daemon: DaemonProcess, workdir: Path, configured_root: Path
) -> None:
    """A [[projects]] entry would come back: refused. A project with a connection open is refused
    naming its agents, unless --force. An unknown one is an error naming it and how to list
    them. All exit 1; forget without a project is a usage error (2)."""
    config = await cli(daemon, "projects", "forget", str(configured_root))
    assert config.returncode == 1
    assert "[[projects]] entry of the daemon's config" in config.stderr and "config.toml" in config.stderr
    assert project_id_for(str(configured_root)) in {p["project_id"] for p in await listed(daemon)}

    root = workdir / "busy"
    root.mkdir()
    agent = unique("holder")
    with anyio.fail_after(60):
        async with connect(daemon.socket_path, agent=agent, project=root):
            busy = await cli(daemon, "projects", "forget", str(root))
            assert busy.returncode == 1
            assert f"agents: {agent}" in busy.stderr and "--force" in busy.stderr
            forced = await cli(daemon, "projects", "forget", str(root), "--force")
            assert forced.returncode == 0, forced.stderr
            assert f"still connected: {agent}" in forced.stdout

    unknown = await cli(daemon, "projects", "forget", "nosuch-0123456789")
    assert unknown.returncode == 1
    assert "no known project 'nosuch-0123456789'" in unknown.stderr
    assert "coordinatord projects list" in unknown.stderr
    usage = await cli(daemon, "projects", "forget")
    assert usage.returncode == 2 and "give the project's id or root" in usage.stderr


# --- the kernel's pid beside the claimed one -----------------------------------------------------


async def test_a_preamble_claiming_another_pid_is_recorded_with_the_real_one(
    daemon: DaemonProcess, base: Path
) -> None:
    """A preamble claiming pid 1: status shows the kernel's pid as pid and peer_pid and the claim
    as claimed_pid (text: `pid N (claims 1)`), the log has connection_pid_mismatch with both,
    and the activity log's connection event says pid_mismatch."""
    agent = unique("forger")
    raw = Raw(daemon, named(str(base), agent, pid=1))
    try:
        assert raw.text("redis_ping") == "PONG"
        status = await cli(daemon, "status", "--json")
        (conn,) = [c for c in json.loads(status.stdout)["connections"] if c["agent"] == agent]
        assert (conn["pid"], conn["peer_pid"], conn["peer_uid"], conn["claimed_pid"]) == (
            os.getpid(),
            os.getpid(),
            os.getuid(),
            1,
        )
        report = await cli(daemon, "status")
        (line,) = [line for line in report.stdout.splitlines() if agent in line and " pid " in line]
        assert line.endswith(f"pid {os.getpid()} (claims 1)")
        await daemon.wait_for_log("connection_pid_mismatch", agent=agent, peer_pid=os.getpid(), claimed_pid=1)
        events = raw.call("activity_recent", {"agent": agent})["structuredContent"]["events"]
    finally:
        raw.close()
    (opened,) = [e for e in events if e["kind"] == "connection"]
    assert (opened["name"], opened["outcome"]) == ("connection_opened", "pid_mismatch")
    assert opened["connection"] == {"peer_pid": os.getpid(), "peer_uid": os.getuid(), "claimed_pid": 1}
    (logged,) = [e for e in daemon.log_events() if e["event"] == "connection_opened" and e["agent"] == agent]
    assert (logged["pid"], logged["peer_pid"], logged["claimed_pid"]) == (os.getpid(), os.getpid(), 1)
