"""Session archiving and the memory bank end to end: the jobs run by the real daemon, the
memory-bank tools and resources through a real shim, and the ``archive`` and ``sessions``
commands as separate processes.

The daemon here runs no scheduled ticks (``jobs.enabled = false``): jobs run when a test asks
(``run_job``, ``coordinatord archive``). Other daemons sharing the machine's Redis may still
archive or cache these projects on their own ticks, so on that backend a test accepts "already
archived" where the embedded backend is exact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from coordinatord import control
from tests.e2e.conftest import call, connect, hints, text_of
from tests.support import COORDINATORD, DaemonProcess, backend_to_itself, running_daemon, short_tmpdir

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

BANK = ".kilocode/rules/memory-bank"
SECRET = "TOP-SECRET-8d1f"


@pytest.fixture(scope="module", params=["embedded", "redis"])
def daemon(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    """A daemon whose jobs run only when asked, on its own Valkey or on the machine's Redis."""
    env = {"COORDINATORD_JOBS__ENABLED": "false"}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("daemon_redis_url")
    with running_daemon(env) as process:
        yield process


def embedded(daemon: DaemonProcess) -> bool:
    """A backend this daemon has to itself (its jobs' leases, its project list)."""
    return backend_to_itself(daemon)


def make_bank(workdir: Path) -> Path:
    folder = workdir / BANK
    folder.mkdir(parents=True)
    (folder / "brief.md").write_text("# Brief\nA coordination daemon.\n")
    (folder / "context.md").write_text("# Context\nIssue 4.\n")
    (workdir / "secret.md").write_text(SECRET)
    (folder / "leak.md").symlink_to(workdir / "secret.md")
    return folder


async def refused(client: Client, name: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(name, args)
    assert result.is_error
    return text_of(result)


async def cli(daemon: DaemonProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [COORDINATORD, *args, "--socket", str(daemon.socket_path)]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=daemon.env, cwd=cwd, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def run_job(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    state: dict[str, Any] = control.request(daemon.socket_path, "run_job", {"name": name})
    assert state["last_outcome"] == "ok", state
    return state


def root_of(workdir: Path) -> Path:
    """The project root a shim started with --project workdir announces."""
    return Path(os.path.realpath(workdir))


def archive_file(workdir: Path, session_id: str) -> Path:
    return root_of(workdir) / ".kilocode" / "sessions" / f"{session_id}.json"


# --- memory bank ------------------------------------------------------------------------------


async def test_memory_bank_tools_are_listed_read_only(daemon: DaemonProcess, workdir: Path) -> None:
    """memory_bank_index and memory_bank_get are served by default, read-only and idempotent, with
    output schemas."""
    async with connect(daemon.socket_path, project=workdir) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in ("memory_bank_index", "memory_bank_get"):
        annotations = hints(tools[name])
        assert annotations is not None and annotations.read_only_hint and annotations.idempotent_hint
        assert tools[name].output_schema is not None and tools[name].description


async def test_memory_bank_tools_serve_the_folder_and_refuse_escapes(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """The tools list and read the memory-bank files; a path, '..' or a symlink out of the folder is
    refused with a message naming the problem, and its content never appears."""
    make_bank(workdir)
    async with connect(daemon.socket_path, project=workdir) as client:
        index = await call(client, "memory_bank_index")
        assert index["files"] == ["brief.md", "context.md"]
        assert index["skipped"] == ["leak.md"]
        brief = await call(client, "memory_bank_get", {"file": "brief.md"})
        assert brief["content"] == "# Brief\nA coordination daemon.\n"
        assert brief["sha256"] == index["hashes"]["brief.md"]
        assert (await call(client, "memory_bank_get", {"file": "brief.md"}))["cached"] is True
        for name in ("../secret.md", "/etc/passwd", f"{BANK}/brief.md"):
            assert "argument 'file'" in await refused(client, "memory_bank_get", {"file": name})
        message = await refused(client, "memory_bank_get", {"file": "leak.md"})
        assert "outside the memory-bank folder" in message and SECRET not in message
        assert "not found" in await refused(client, "memory_bank_get", {"file": "nope.md"})


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_memory_bank_files_are_mcp_resources(daemon: DaemonProcess, workdir: Path, mode: str) -> None:
    """In both protocol eras, resources/list names memory-bank://<file> for each file (markdown,
    with its size) and resources/read returns it; an escaping URI is refused with an error."""
    make_bank(workdir)
    async with connect(daemon.socket_path, project=workdir, mode=mode) as client:
        listed = [r for r in (await client.list_resources()).resources if r.uri.startswith("memory-bank://")]
        assert [(r.uri, r.name, r.mime_type) for r in listed] == [
            ("memory-bank://brief.md", "brief.md", "text/markdown"),
            ("memory-bank://context.md", "context.md", "text/markdown"),
        ]
        assert listed[0].size == len(b"# Brief\nA coordination daemon.\n")
        read = await client.read_resource("memory-bank://context.md")
        (content,) = read.contents
        assert content.uri == "memory-bank://context.md" and content.mime_type == "text/markdown"
        assert getattr(content, "text", None) == "# Context\nIssue 4.\n"
        for uri in ("memory-bank://../secret.md", "memory-bank://leak.md", "file:///etc/passwd"):
            with pytest.raises(MCPError) as refusal:
                await client.read_resource(uri)
            message = str(refusal.value)
            assert SECRET not in message
            assert "outside the memory-bank folder" in message or "memory-bank://<name>" in message


async def test_a_project_without_a_memory_bank_lists_no_resources(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Without a memory-bank folder the resource list is empty and the index tool says there is none."""
    async with connect(daemon.socket_path, project=workdir) as client:
        listed = (await client.list_resources()).resources
        assert [r.uri for r in listed if not r.uri.startswith("inbox://")] == []  # the inbox: messages
        assert "no memory bank" in await refused(client, "memory_bank_index", {})


async def test_the_refresh_job_caches_changes_for_the_tools(daemon: DaemonProcess, workdir: Path) -> None:
    """memory_bank_refresh rewrites the entry of a file that changed, so the tools serve the new
    content from the cache; a deleted file leaves the cache."""
    if not embedded(daemon):
        pytest.skip("another test session holds database 14: run_job needs this daemon's lease")
    folder = make_bank(workdir)
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "memory_bank_index")  # announces the project and fills the cache
        (folder / "context.md").write_text("# Context\nIssue 5.\n")
        (folder / "brief.md").unlink()
        counts = run_job(daemon, "memory_bank_refresh")["last_counts"]
        assert (counts["changed"], counts["removed"], counts["failed"]) == (1, 1, 0)
        context = await call(client, "memory_bank_get", {"file": "context.md"})
        assert (context["content"], context["cached"]) == ("# Context\nIssue 5.\n", True)
        assert (await call(client, "memory_bank_index"))["files"] == ["context.md"]
        again = run_job(daemon, "memory_bank_refresh")["last_counts"]
        assert (again["changed"], again["removed"]) == (0, 0)


def make_sources(workdir: Path) -> None:
    """Knowledge from four editors: Kilo's memory bank, Cline's memory-bank/ and its rules
    folder, AGENTS.md, CLAUDE.md (a symlink into the root is followed) and a Cursor rule."""
    make_bank(workdir)
    (workdir / "memory-bank").mkdir()
    (workdir / "memory-bank" / "activeContext.md").write_text("# Active\nCline's context.\n")
    (workdir / "AGENTS.md").write_text("# Agents\nRun the tests.\n")
    (workdir / "CLAUDE.md").symlink_to("AGENTS.md")
    (workdir / ".clinerules").mkdir()
    (workdir / ".clinerules" / "01-style.md").write_text("# Style\n")
    (workdir / ".cursor" / "rules").mkdir(parents=True)
    (workdir / ".cursor" / "rules" / "python.mdc").write_text("---\nglobs: ['*.py']\n---\nType hints.\n")


ALL_SOURCES = {
    ".clinerules/01-style.md": ".clinerules",
    ".cursor/rules/python.mdc": ".cursor/rules/*.mdc",
    "AGENTS.md": "AGENTS.md",
    "CLAUDE.md": "CLAUDE.md",
    "brief.md": BANK,
    "context.md": BANK,
    "memory-bank/activeContext.md": "memory-bank",
}


async def test_every_editors_knowledge_is_listed_read_and_refreshed(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A project with Kilo's bank, Cline's memory-bank/ and rules, AGENTS.md, CLAUDE.md and a Cursor
    rule: through a real shim the index and resources list them all, each tagged with its source,
    Kilo's files under their bare names; each reads; a change to AGENTS.md is refreshed."""
    make_sources(workdir)
    async with connect(daemon.socket_path, project=workdir) as client:
        index = await call(client, "memory_bank_index")
        assert index["files"] == sorted(ALL_SOURCES) and index["sources"] == ALL_SOURCES
        assert index["directory"] == BANK and index["skipped"] == ["leak.md"]
        resources = [r for r in (await client.list_resources()).resources if not r.uri.startswith("inbox://")]
        assert [str(r.uri) for r in resources] == [f"memory-bank://{name}" for name in sorted(ALL_SOURCES)]
        agents = await call(client, "memory_bank_get", {"file": "AGENTS.md"})
        assert (agents["content"], agents["source"]) == ("# Agents\nRun the tests.\n", "AGENTS.md")
        read = await client.read_resource("memory-bank://memory-bank/activeContext.md")
        assert getattr(read.contents[0], "text", None) == "# Active\nCline's context.\n"
        for name in ("memory-bank/../AGENTS.md", "memory-bank/sub/x.md", ".cursor/rules/x.md"):
            assert "argument 'file'" in await refused(client, "memory_bank_get", {"file": name})
        if embedded(daemon):  # run_job needs this daemon's lease
            (workdir / "AGENTS.md").write_text("# Agents\nRun the tests twice.\n")
            counts = run_job(daemon, "memory_bank_refresh")["last_counts"]
            assert (counts["changed"], counts["removed"], counts["failed"]) == (2, 0, 0)  # and CLAUDE.md
            again = await call(client, "memory_bank_get", {"file": "CLAUDE.md"})
            assert (again["content"], again["cached"]) == ("# Agents\nRun the tests twice.\n", True)


# --- session archiving ------------------------------------------------------------------------


async def test_the_archiver_job_writes_sessions_before_they_expire(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """run_job session_archiver writes a short-TTL session to .kilocode/sessions/<id>.json and
    leaves it live in Redis; a second run leaves the file alone."""
    if not embedded(daemon):
        pytest.skip("another test session holds database 14: run_job needs this daemon's lease")
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "session_save", {"session_id": "short", "context": {"task": "x"}, "ttl": 120})
        await call(client, "session_append", {"session_id": "short", "role": "user", "message": "hi"})
        await call(client, "session_save", {"session_id": "long", "context": {"task": "y"}})
        counts = run_job(daemon, "session_archiver")["last_counts"]
        assert (counts["archived"], counts["failed"]) == (1, 0)
        data = json.loads(archive_file(workdir, "short").read_text())
        assert data["context"] == {"task": "x"} and [t["message"] for t in data["history"]] == ["hi"]
        assert not archive_file(workdir, "long").exists()
        loaded = await call(client, "session_load", {"session_id": "short"})
        assert loaded["found"] and loaded["expires_in"] > 0
        again = run_job(daemon, "session_archiver")["last_counts"]
        assert (again["archived"], again["unchanged"]) == (0, 1)


async def test_archive_command_archives_a_project_and_is_idempotent(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """`coordinatord archive --project DIR` prints a line for the project and a summary, writes the
    due session, and a second run (--json) finds it unchanged."""
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "session_save", {"session_id": "s1", "context": {"a": 1}, "ttl": 60})
        first = await cli(daemon, "archive", "--project", str(workdir), cwd=workdir)
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert str(root_of(workdir)) in lines[0] and lines[-1].startswith("done: ")
        if embedded(daemon):
            assert "1 archived, 0 unchanged, 0 failed" in lines[0]
        assert archive_file(workdir, "s1").exists()
        assert (await call(client, "session_load", {"session_id": "s1"}))["found"]
        second = await cli(daemon, "archive", "--project", str(workdir), "--json", cwd=workdir)
        assert second.returncode == 0, second.stderr
        report = json.loads(second.stdout)
        assert report["totals"] == {
            "archived": 0,
            "unchanged": 1,
            "failed": 0,
            "projects": 1,
            "other_host": 0,
        }
        assert report["projects"][0]["root"] == str(root_of(workdir))


async def test_archive_all_archives_a_live_session_into_an_ignored_folder(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A session in use is not due, so plain `archive` says why it wrote nothing and names
    `--all`, which archives it now; the folder coordinatord created keeps it out of git."""
    with anyio.fail_after(30):
        await anyio.run_process(["git", "init", "-q", str(workdir)])
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "session_save", {"session_id": "busy", "context": {"step": 3}})
        plain = await cli(daemon, "archive", "--project", str(workdir), cwd=workdir)
        assert plain.returncode == 0, plain.stderr
        assert "0 archived" in plain.stdout
        assert "1 live session not due yet" in plain.stdout and "archive --all" in plain.stdout
        assert not archive_file(workdir, "busy").exists()
        every = await cli(daemon, "archive", "--all", "--project", str(workdir), cwd=workdir)
        assert every.returncode == 0, every.stderr
        assert "1 archived" in every.stdout and "not due" not in every.stdout
        assert json.loads(archive_file(workdir, "busy").read_text())["context"] == {"step": 3}
        assert (await call(client, "session_load", {"session_id": "busy"}))["found"]
    folder = archive_file(workdir, "busy").parent
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    # What the user would see before a commit: nothing of the archive folder.
    with anyio.fail_after(30):
        status = await anyio.run_process(
            ["git", "-C", str(workdir), "status", "--porcelain", "--untracked-files=all"]
        )
    assert ".kilocode" not in status.stdout.decode()


async def test_archive_command_walks_every_local_project(daemon: DaemonProcess) -> None:
    """Without --project, `coordinatord archive` archives each known project on this host, one line each."""
    if not embedded(daemon):
        pytest.skip("another test session holds database 14: every project on the shared one would be walked")
    first, second = short_tmpdir(), short_tmpdir()
    try:
        for project in (first, second):
            async with connect(daemon.socket_path, project=project) as client:
                await call(client, "session_save", {"session_id": "s1", "context": {}, "ttl": 60})
        done = await cli(daemon, "archive", cwd=first)
        assert done.returncode == 0, done.stderr
        for project in (first, second):
            assert any(
                str(root_of(project)) in line and "1 archived" in line for line in done.stdout.splitlines()
            )
            assert archive_file(project, "s1").exists()
    finally:
        shutil.rmtree(first, ignore_errors=True)
        shutil.rmtree(second, ignore_errors=True)


async def test_sessions_commands_list_and_restore(daemon: DaemonProcess, workdir: Path) -> None:
    """`sessions list` shows live and archived sessions of the cwd's project; `sessions restore`
    brings an ended session back, refuses a live one without --force, and names an unknown one."""
    async with connect(daemon.socket_path, project=workdir) as client:
        await call(client, "session_save", {"session_id": "live-1", "context": {"a": 1}})
        await call(client, "session_save", {"session_id": "ended-1", "context": {"b": 2}})
        await call(client, "session_append", {"session_id": "ended-1", "role": "user", "message": "m"})
        await call(client, "session_end", {"session_id": "ended-1"})

        listed = await cli(daemon, "sessions", "list", cwd=workdir)
        assert listed.returncode == 0, listed.stderr
        assert "live-1" in listed.stdout and "ended-1" in listed.stdout
        as_json = json.loads((await cli(daemon, "sessions", "list", "--json", cwd=workdir)).stdout)
        assert [s["session_id"] for s in as_json["live"]] == ["live-1"]
        assert [(a["session_id"], a["history_length"]) for a in as_json["archived"]] == [("ended-1", 1)]

        restored = await cli(daemon, "sessions", "restore", "ended-1", "--project", str(workdir), cwd=workdir)
        assert restored.returncode == 0, restored.stderr
        assert "restored session ended-1" in restored.stdout and "1 turn," in restored.stdout
        loaded = await call(client, "session_load", {"session_id": "ended-1"})
        assert loaded["found"] and loaded["context"] == {"b": 2}

        again = await cli(daemon, "sessions", "restore", "ended-1", cwd=workdir)
        assert again.returncode == 1 and "force" in again.stderr
        forced = await cli(daemon, "sessions", "restore", "ended-1", "--force", cwd=workdir)
        assert forced.returncode == 0, forced.stderr

        unknown = await cli(daemon, "sessions", "restore", "never-was", cwd=workdir)
        assert unknown.returncode == 1 and "no session archive" in unknown.stderr
        missing = await cli(daemon, "sessions", "restore", cwd=workdir)
        assert missing.returncode == 2 and "give the id" in missing.stderr


async def test_commands_name_the_socket_when_no_daemon_answers() -> None:
    """With no daemon on the socket, archive, sessions and projects exit 1 with a message naming
    the socket."""
    directory = short_tmpdir()
    (directory / ".git").mkdir()  # a repository, so that `sessions list` has a project to ask about
    try:
        socket_path = directory / "none.sock"
        runs = (
            ["archive"],
            ["archive", "--project", str(directory)],
            ["sessions", "list"],
            ["projects", "list"],
        )
        for args in runs:
            command = [COORDINATORD, *args, "--socket", str(socket_path)]
            with anyio.fail_after(30):
                done = await anyio.run_process(command, cwd=directory, check=False)
            assert done.returncode == 1, args
            assert str(socket_path) in done.stderr.decode() and "coordinatord serve" in done.stderr.decode()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
