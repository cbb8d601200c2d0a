"""Hostile files at every path the daemon reads from a project, end to end (a real daemon; real
shims for the editor's view and the healthy bystander, raw connections sending a shim's
preamble for the barrage).

At each path (``.coordinatord.toml``, a ``.git`` file, ``.git/config``, ``.git/commondir``, a
memory-bank file, ``AGENTS.md``, a session archive) a FIFO, a character device (made with
mknod, or ``/dev/zero`` through a symlink), a symlink loop and a sparse 1 GiB file are refused
clearly (the reply names the file and what it is) within the time bound; seventy such calls at
once do not keep a healthy project's editor from its ``initialize`` and its calls; and the
daemon's memory is back within 20 MB of where it was, after the refusals and after a large
archive that is allowed (60 MiB) is restored.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from coordinatord import paths
from coordinatord.preamble import Preamble
from tests.e2e.conftest import (
    INITIALIZE,
    INITIALIZED,
    RawConnection,
    call,
    call_line,
    connect,
    frames,
    text_of,
)
from tests.support import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

READ_TIMEOUT_S = 5.0
"""project_files.read_timeout_s of the daemon here: every refusal must come within it (plus the
time a loaded machine takes to pass a line along)."""
REPLY_BOUND_S = READ_TIMEOUT_S + 10
RSS_SLACK_KB = 20 * 1024
ARCHIVE_DIR = ".kilocode/sessions"
BANK = ".kilocode/rules/memory-bank"
SPARSE_BYTES = 1 << 30


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """A daemon of its own (its memory is measured), on its embedded Valkey, with no jobs."""
    env = {
        "COORDINATORD_JOBS__ENABLED": "false",
        "COORDINATORD_PROJECT_FILES__READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    with running_daemon(env) as process:
        yield process


# --- what is planted, and where --------------------------------------------------------------


def _mknod_zero(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        path.symlink_to("/dev/zero")  # without CAP_MKNOD: the device itself, through a symlink


def _sparse(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(SPARSE_BYTES)


PLANT: dict[str, Callable[[Path], None]] = {
    "fifo": os.mkfifo,
    "device": _mknod_zero,
    "dev_zero_link": lambda path: path.symlink_to("/dev/zero"),
    "loop": lambda path: path.symlink_to(path.name),
    "sparse": _sparse,
}
SAID = {
    "fifo": r"is a FIFO \(named pipe\)",
    "device": r"is a character device",
    # Where symlinks are not followed (archives, the memory bank), the link itself is refused.
    "dev_zero_link": r"is a character device|is a symbolic link|outside the memory-bank folder",
    "loop": r"is a symlink loop|is a symbolic link",
    "sparse": r"is 1\.0 GiB",
}


@dataclass(frozen=True)
class Place:
    """A path the daemon reads, the call that reads it, and how the refusal names the file."""

    name: str
    relative: str  # the hostile file, from the project root
    tool: str
    arguments: dict[str, Any]
    prepare: Callable[[Path], None] = lambda root: None

    def plant(self, root: Path, kind: str) -> Path:
        self.prepare(root)
        path = root / self.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        PLANT[kind](path)
        return path


def _git_dir(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


PLACES = [
    Place("project_file", ".coordinatord.toml", "redis_get", {"key": "k"}),
    Place("dot_git_file", ".git", "redis_get", {"key": "k"}),
    Place("git_config", ".git/config", "redis_get", {"key": "k"}, prepare=_git_dir),
    Place("git_commondir", ".git/commondir", "redis_get", {"key": "k"}, prepare=_git_dir),
    Place("memory_bank_file", f"{BANK}/brief.md", "memory_bank_get", {"file": "brief.md"}),
    Place("agents_md", "AGENTS.md", "memory_bank_get", {"file": "AGENTS.md"}),
    Place("session_archive", f"{ARCHIVE_DIR}/s1.json", "session_restore", {"session_id": "s1"}),
]
CASES = [(place, kind) for place in PLACES for kind in PLANT]


def hostile_project(base: Path, place: Place, kind: str) -> tuple[Path, Path]:
    """A fresh project root with one hostile file; (root, the file as the daemon names it)."""
    root = base / f"{place.name}-{kind}"
    root.mkdir()
    place.plant(root, kind)
    return Path(paths.canonical_root(root)), Path(paths.canonical_root(root)) / place.relative


# --- a raw connection that says what a shim says ---------------------------------------------


@dataclass
class Outcome:
    initialized: bool = False
    text: str = ""
    is_error: bool = False
    seconds: float = 0.0
    failure: str = ""


def raw_call(socket_path: Path, root: Path, tool: str, arguments: dict[str, Any]) -> Outcome:
    """Preamble, ``initialize`` and one ``tools/call`` on a bare socket, as a shim sends them."""
    outcome = Outcome()
    started = time.monotonic()
    try:
        conn = RawConnection(socket_path)
        try:
            conn.sock.settimeout(REPLY_BOUND_S * 2)
            conn.send(Preamble("hostile", str(root), os.getpid(), cwd=str(root)).encode())
            conn.send(frames(INITIALIZE))
            outcome.initialized = "result" in conn.reply_to(1)
            conn.send(frames(INITIALIZED, call_line(2, tool, arguments)))
            result = conn.reply_to(2)["result"]
            outcome.text = result["content"][0]["text"]
            outcome.is_error = bool(result.get("isError"))
        finally:
            conn.close()
    except Exception as exc:  # reported by the test, with the case
        outcome.failure = repr(exc)
    outcome.seconds = time.monotonic() - started
    return outcome


def rss_kb(daemon: DaemonProcess) -> int:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


async def rss_settles_near(daemon: DaemonProcess, baseline_kb: int, within_s: float = 20.0) -> int:
    """The daemon's RSS once it is within RSS_SLACK_KB of ``baseline_kb`` (polled), or the last
    reading when it does not get there in ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        now = rss_kb(daemon)
        if now - baseline_kb <= RSS_SLACK_KB or time.monotonic() > deadline:
            return now
        await anyio.sleep(0.2)


def check_refusal(outcome: Outcome, place: Place, kind: str, hostile_file: Path) -> str | None:
    """What is wrong with a hostile call's outcome, or None when it is a clear, timely refusal."""
    if outcome.failure:
        return f"no reply: {outcome.failure}"
    if not outcome.initialized:
        return "initialize was not answered"
    if not outcome.is_error:
        return f"not refused: {outcome.text[:200]}"
    if outcome.seconds > REPLY_BOUND_S:
        return f"refused only after {outcome.seconds:.1f} s"
    # The file by its path, or (the memory bank's confinement) by its name and its folder.
    named = str(hostile_file) in outcome.text or (
        f"'{hostile_file.name}'" in outcome.text and str(hostile_file.parent) in outcome.text
    )
    if not named or not re.search(SAID[kind], outcome.text):
        return f"the refusal does not name the file and what it is: {outcome.text[:400]}"
    return None


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("place", PLACES, ids=[place.name for place in PLACES])
async def test_an_editor_is_told_which_file_is_refused(
    daemon: DaemonProcess, workdir: Path, place: Place
) -> None:
    """Through a real shim, a project with a FIFO at the path: initialize is answered, and the
    call that reads the path is refused naming the file, what it is and the fix."""
    root, hostile_file = hostile_project(workdir, place, "fifo")
    with anyio.fail_after(REPLY_BOUND_S * 2):
        async with connect(daemon.socket_path, agent="editor", project=root) as client:
            result = await client.call_tool(place.tool, place.arguments)
    assert result.is_error
    text = text_of(result)
    assert f"{hostile_file} is a FIFO (named pipe); only regular files are read" in text


async def test_seventy_hostile_calls_leave_a_healthy_project_served(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """Every kind of hostile file at every path, two calls each (seventy at once, on raw
    connections sending a shim's preamble): each is refused within the bound naming the file;
    meanwhile a real shim on a healthy project initializes and its calls are answered; and the
    daemon's memory is back within 20 MB of the baseline taken after a warm-up call."""
    healthy = workdir / "healthy"
    healthy.mkdir()
    async with connect(daemon.socket_path, agent="warm", project=healthy) as warm:
        assert not (await warm.call_tool("redis_set", {"key": "warm", "value": "up", "ttl": 600})).is_error
    baseline = rss_kb(daemon)

    cases = [(place, kind, *hostile_project(workdir, place, kind)) for place, kind in CASES]
    outcomes: dict[tuple[str, str, int], Outcome] = {}
    threads = [
        threading.Thread(
            target=lambda place=place, kind=kind, root=root, n=n: outcomes.__setitem__(
                (place.name, kind, n), raw_call(daemon.socket_path, root, place.tool, place.arguments)
            ),
            daemon=True,
        )
        for place, kind, root, _ in cases
        for n in range(2)
    ]
    assert len(threads) >= 70
    for thread in threads:
        thread.start()
    # Meanwhile: a healthy project's editor is served.
    with anyio.fail_after(REPLY_BOUND_S * 2):
        async with connect(daemon.socket_path, agent="bystander", project=healthy) as client:
            assert not (
                await client.call_tool("redis_set", {"key": "note", "value": "fine", "ttl": 600})
            ).is_error
            assert text_of(await client.call_tool("redis_get", {"key": "note"})) == "fine"
    for thread in threads:
        thread.join(REPLY_BOUND_S * 3)
    problems = {
        f"{place.name}/{kind}#{n}": problem
        for place, kind, _, hostile_file in cases
        for n in range(2)
        if (problem := check_refusal(outcomes[(place.name, kind, n)], place, kind, hostile_file)) is not None
    }
    assert not problems, json.dumps(problems, indent=1)
    after = await rss_settles_near(daemon, baseline)
    assert after - baseline <= RSS_SLACK_KB, f"RSS {baseline} kB -> {after} kB after the refusals"


def large_archive(session_id: str, total_bytes: int) -> dict[str, Any]:
    """A well-formed archive of about ``total_bytes``: turns of 60 000 ASCII characters."""
    message = "m" * 60_000
    turns = total_bytes // (len(message) + 80)
    return {
        "format": "coordinatord.session/1",
        "session_id": session_id,
        "project_id": "large",
        "archived_at": "2026-02-13T04:00:00.000Z",
        "archived_by": "tester",
        "version": 1,
        "ttl": 3600,
        "context": {"goal": "measure"},
        "history": [{"role": "user", "message": message, "ts": "2026-02-13T04:00:00.000Z", "agent": "tester"}]
        * turns,
    }


async def test_a_large_allowed_archive_leaves_the_memory_where_it_was(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A 60 MiB archive (under sessions.max_archive_bytes) is restored whole, and afterwards the
    daemon's RSS is back within 20 MB of the baseline taken after a warm-up restore."""
    root = Path(paths.canonical_root(workdir))
    folder = root / ARCHIVE_DIR
    folder.mkdir(parents=True)
    (folder / "warm.json").write_text(json.dumps(large_archive("warm", 1 << 20)))
    session_id = f"big-{uuid.uuid4().hex[:6]}"
    data = large_archive(session_id, 60 << 20)
    (folder / f"{session_id}.json").write_text(json.dumps(data))
    assert 55 << 20 < (folder / f"{session_id}.json").stat().st_size < 64 << 20
    async with connect(daemon.socket_path, agent="restorer", project=root) as client:
        await call(client, "session_restore", {"session_id": "warm"})
        baseline = rss_kb(daemon)
        with anyio.fail_after(120):
            restored = await call(client, "session_restore", {"session_id": session_id})
        assert restored["history_length"] == len(data["history"])
        after = await rss_settles_near(daemon, baseline)
    assert after - baseline <= RSS_SLACK_KB, f"RSS {baseline} kB -> {after} kB after a 60 MiB restore"
