"""File reservation tools through daemon + shims + MCP clients (16 agents contending, the lapse
note, the sweep), and the git pre-commit hook in real repositories."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from coordinatord import control
from coordinatord.keyspace import Namespace
from coordinatord.pathglob import normalize, overlaps
from coordinatord.presence import Presence
from coordinatord.scope import ProjectScope
from coordinatord.services.agents import AgentService
from coordinatord.services.files import FileService
from coordinatord.services.projects import ProjectRegistry
from coordinatord.settings import AgentSettings, BackendSettings, FileSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.embedded import embedded_socket_path
from tests.e2e.conftest import call, connect
from tests.support import COORDINATORD, DaemonProcess, git, git_repository, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def texts(result: Any) -> list[str]:
    return [str(getattr(block, "text", "")) for block in result.content]


GLOBS = ["src/**", "src/app.py", "src/*.py", "**/*.py", "docs/**", "src/ui/**", "README.md", "*.md"]


async def test_every_files_tool_round_trips(daemon: DaemonProcess, workdir: Path) -> None:
    """reserve, check, list, renew, release answer with structured content equal to their JSON text."""
    async with (
        connect(daemon.socket_path, agent="kilocode", project=workdir) as kilo,
        connect(daemon.socket_path, agent="cline", project=workdir) as cline,
    ):
        got = await call(
            kilo, "files_reserve", {"paths": ["./src/", str(workdir / "README.md")], "reason": "auth"}
        )
        assert got["reserved"] is True and got["paths"] == ["src/**", "README.md"] and got["conflicts"] == []
        assert got["expires_in"] == 600 and isinstance(got["fencing"], int)
        refused = await call(cline, "files_reserve", {"paths": ["src/app.py"], "mode": "shared"})
        assert refused["reserved"] is False and refused["id"] is None
        [conflict] = refused["conflicts"]
        assert (conflict["agent"], conflict["reason"], conflict["mode"]) == ("kilocode", "auth", "exclusive")
        checked = await call(cline, "files_check", {"paths": ["src/x/y.ts", "lib/a.py"]})
        assert [(h["agent"], h["overlaps"]) for h in checked["holds"]] == [("kilocode", ["src/x/y.ts"])]
        [listed] = (await call(cline, "files_list"))["reservations"]
        assert listed["id"] == got["id"] and 0 < listed["expires_in"] <= 600
        stolen = await call(cline, "files_release", {"id": got["id"]})
        assert (stolen["released"], stolen["reason"]) == (False, "not_yours")
        renewed = await call(kilo, "files_renew", {"id": got["id"], "ttl_s": 120})
        assert (renewed["renewed"], renewed["expires_in"], renewed["fencing"]) == (True, 120, got["fencing"])
        released = await call(kilo, "files_release", {"id": got["id"]})
        assert (released["released"], released["paths"]) == (True, ["src/**", "README.md"])
        assert (await call(cline, "files_list"))["reservations"] == []
        bad = await kilo.call_tool("files_reserve", {"paths": ["../x"]})
        assert bad.is_error and "argument 'paths[0]'" in texts(bad)[0]
        outside = await kilo.call_tool("files_check", {"paths": ["/etc/passwd"]})
        assert outside.is_error and "outside the project root" in texts(outside)[0]


async def test_sixteen_agents_never_hold_overlapping_paths_exclusively_at_once(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """16 shims reserve random overlapping globs, exclusive or shared, in a loop: no conflicting pair is
    ever held at once (checked live and by fencing order), and shared reservations coexist."""
    holding: dict[str, tuple[list[str], str]] = {}
    violations: list[str] = []
    grants: list[
        tuple[int, str, list[str], str, float, float]
    ] = []  # fencing, agent, globs, mode, got, let go
    coexisted = [0]

    def conflicting(a: tuple[list[str], str], b: tuple[list[str], str]) -> bool:
        return ("exclusive" in (a[1], b[1])) and any(overlaps(x, y) for x in a[0] for y in b[0])

    async def agent(name: str, seed: int) -> None:
        rng = random.Random(seed)
        async with connect(daemon.socket_path, agent=name, project=workdir) as client:
            for _ in range(25):
                globs = [normalize(g) for g in rng.sample(GLOBS, rng.randint(1, 2))]
                mode = rng.choice(["exclusive", "shared", "shared"])
                got = await call(client, "files_reserve", {"paths": globs, "mode": mode, "ttl_s": 60})
                if not got["reserved"]:
                    assert got["conflicts"], got
                    continue
                mine = (globs, mode)
                for other, theirs in holding.items():
                    if conflicting(mine, theirs):
                        violations.append(f"{name} {mine} while {other} held {theirs}")
                    elif mode == "shared" and any(overlaps(x, y) for x in globs for y in theirs[0]):
                        coexisted[0] += 1
                holding[name] = mine
                got_at = time.monotonic()
                await anyio.lowlevel.checkpoint()
                del holding[name]
                released_at = time.monotonic()
                grants.append((got["fencing"], name, globs, mode, got_at, released_at))
                assert (await call(client, "files_release", {"id": got["id"]}))["released"]

    async with anyio.create_task_group() as tg:
        for index in range(16):
            tg.start_soon(agent, f"agent-{index}", index)

    assert violations == []
    assert coexisted[0] > 0, "no two shared reservations ever overlapped: the test proves too little"
    grants.sort()
    assert len({g[0] for g in grants}) == len(grants) > 16
    # By fencing (the server's order of grants): a conflicting later grant was received only
    # after the earlier holder had let go.
    for i, earlier in enumerate(grants):
        for later in grants[i + 1 :]:
            if conflicting((earlier[2], earlier[3]), (later[2], later[3])):
                assert later[4] > earlier[5], (earlier, later)


async def test_a_holder_is_told_in_its_next_reply_that_its_reservation_lapsed(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """After the lease ends, the holder's next call (any tool) carries a note; once, and never for others."""
    async with (
        connect(daemon.socket_path, agent="holder", project=workdir) as holder,
        connect(daemon.socket_path, agent="other", project=workdir) as other,
    ):
        got = await call(holder, "files_reserve", {"paths": ["lapse/**"], "ttl_s": 1})
        assert len((await holder.call_tool("redis_ping", {})).content) == 1  # still live: no note
        with anyio.fail_after(5):
            # Waiting for the server's clock to end a lease: nothing to be notified of.
            while (await call(other, "files_check", {"paths": ["lapse/x"]}))["holds"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await anyio.sleep(0.05)  # the holder's own record ends a little after the server's
        reply = await holder.call_tool("redis_ping", {})
        assert texts(reply)[0] == "PONG"
        note = texts(reply)[-1]
        assert len(reply.content) == 2 and got["id"] in note and "lapse/**" in note and "lapsed" in note
        assert len((await holder.call_tool("redis_ping", {})).content) == 1  # told once
        assert len((await other.call_tool("redis_ping", {})).content) == 1


# --- The sweep, and the git hook: one daemon whose scheduler never fires on its own ---------------


@pytest.fixture(scope="module")
def quiet_daemon() -> Iterator[DaemonProcess]:
    with running_daemon({"COORDINATORD_JOBS__ENABLED": "false"}) as process:
        yield process


@pytest.fixture
async def backend(quiet_daemon: DaemonProcess) -> AsyncIterator[Store]:
    store = RedisStore.from_url(f"unix://{embedded_socket_path(quiet_daemon.state_dir)}", BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def namespace_of(root: Path) -> Namespace:
    namespace = ProjectScope.of_root(str(root)).namespace
    assert namespace is not None
    return namespace


async def test_the_sweep_releases_a_gone_agents_reservations(
    quiet_daemon: DaemonProcess, backend: Store, workdir: Path
) -> None:
    """run_job heartbeat_sweep: a long-quiet agent's reservations go (event files_released_stale);
    others stay."""
    ns = namespace_of(workdir)
    await ProjectRegistry(backend, ()).announce(ns.project_id, str(workdir))
    await AgentService(backend, AgentSettings(), Presence(), FixedClock(time.time() - 7_200)).register(
        ns, "ghost"
    )
    files = FileService(backend, FileSettings())
    await files.reserve(ns, "ghost", ["old/**"], "exclusive", 600)
    await files.reserve(ns, "someone", ["new/**"], "exclusive", 600)
    state = await anyio.to_thread.run_sync(
        lambda: control.request(quiet_daemon.socket_path, "run_job", {"name": "heartbeat_sweep"})
    )
    assert state["last_outcome"] == "ok" and state["last_counts"]["files_released"] >= 1, state
    assert [h.agent for h in (await files.reservations(ns)).reservations] == ["someone"]
    await quiet_daemon.wait_for_log(
        "files_released_stale", project=ns.project_id, agent="ghost", key="old/**"
    )


def committing(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``git commit`` as a person's shell runs it (hooks on), with no config of this machine."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATORD_", "GIT_"))}
    base |= {
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", "commit", "-q", "-m", "change", *args],  # noqa: S607
        cwd=repo,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def guard(*args: str, repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COORDINATORD, "git-guard", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stage(repo: Path, name: str) -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(name)
    git("add", name, cwd=repo)


async def test_the_hook_refuses_a_reserved_file_until_release(
    quiet_daemon: DaemonProcess, workdir: Path
) -> None:
    """The installed hook refuses a commit of another agent's reserved file (naming agent, reason, time
    left), lets its holder and the bypasses through, and passes once the reservation is released."""
    repo = git_repository(workdir / "repo", "https://example.com/org/guarded.git", commit=True)
    done = guard("install", "--socket", str(quiet_daemon.socket_path), repo=repo)
    assert done.returncode == 0, done.stderr
    async with connect(quiet_daemon.socket_path, agent="alice", project=repo) as alice:
        held = await call(alice, "files_reserve", {"paths": ["src/**"], "reason": "auth refactor"})
        stage(repo, "src/app.py")
        refused = await anyio.to_thread.run_sync(lambda: committing(repo))
        assert refused.returncode != 0
        assert "src/app.py: reserved by alice, reason 'auth refactor', 9m" in refused.stderr, refused.stderr
        assert "COORDINATORD_AGENT" in refused.stderr and "--no-verify" in refused.stderr
        as_bob = await anyio.to_thread.run_sync(lambda: committing(repo, COORDINATORD_AGENT="bob"))
        assert as_bob.returncode != 0 and "reserved by alice" in as_bob.stderr
        as_alice = await anyio.to_thread.run_sync(lambda: committing(repo, COORDINATORD_AGENT="alice"))
        assert as_alice.returncode == 0, as_alice.stderr
        stage(repo, "src/b.py")
        off = await anyio.to_thread.run_sync(lambda: committing(repo, COORDINATORD_GUARD="off"))
        assert off.returncode == 0, off.stderr
        stage(repo, "src/c.py")
        skipped = await anyio.to_thread.run_sync(lambda: committing(repo, "--no-verify"))
        assert skipped.returncode == 0, skipped.stderr
        stage(repo, "src/d.py")
        stage(repo, "docs/free.md")
        assert (await anyio.to_thread.run_sync(lambda: committing(repo))).returncode != 0
        await call(alice, "files_release", {"id": held["id"]})
        after = await anyio.to_thread.run_sync(lambda: committing(repo))
        assert after.returncode == 0, after.stderr
        assert after.stderr == ""


async def test_the_hook_passes_with_a_warning_when_no_daemon_answers(workdir: Path) -> None:
    """A hook whose daemon is down lets the commit through and says so on stderr."""
    repo = git_repository(workdir / "repo", None, commit=True)
    assert guard("install", "--socket", str(workdir / "nobody.sock"), repo=repo).returncode == 0
    stage(repo, "a.txt")
    done = await anyio.to_thread.run_sync(lambda: committing(repo))
    assert done.returncode == 0, done.stderr
    assert "no coordinatord daemon answers" in done.stderr and "commit allowed" in done.stderr


def test_install_chains_to_an_existing_hook_and_uninstall_restores_it(workdir: Path) -> None:
    """An existing pre-commit is moved aside and still runs; install twice changes nothing; uninstall
    puts the old hook back."""
    repo = git_repository(workdir / "repo", None, commit=True)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho previous-hook-ran >&2\nexit 0\n")
    hook.chmod(0o755)
    first = guard("install", "--socket", str(workdir / "nobody.sock"), repo=repo)
    assert first.returncode == 0 and "moved the existing hook" in first.stdout
    installed = hook.read_text()
    again = guard("install", "--socket", str(workdir / "nobody.sock"), repo=repo)
    assert again.returncode == 0 and "already installed" in again.stdout and hook.read_text() == installed
    stage(repo, "a.txt")
    done = committing(repo)
    assert done.returncode == 0 and "previous-hook-ran" in done.stderr, done.stderr
    removed = guard("uninstall", repo=repo)
    assert removed.returncode == 0 and "restored the previous one" in removed.stdout
    assert hook.read_text().startswith("#!/bin/sh\necho previous-hook-ran")
    assert not (hook.parent / "pre-commit.pre-coordinatord").exists()
    assert "nothing to do" in guard("uninstall", repo=repo).stdout


def test_install_respects_core_hooks_path_and_worktrees(workdir: Path) -> None:
    """With core.hooksPath the hook goes there; from a linked worktree it goes to the common hooks dir."""
    repo = git_repository(workdir / "repo", None, commit=True)
    git("config", "core.hooksPath", ".githooks", cwd=repo)
    assert guard("install", repo=repo).returncode == 0
    assert "coordinatord git-guard" in (repo / ".githooks" / "pre-commit").read_text()
    other = git_repository(workdir / "other", None, commit=True)
    git("worktree", "add", "-q", str(workdir / "tree"), cwd=other)
    assert guard("install", repo=workdir / "tree").returncode == 0
    assert (other / ".git" / "hooks" / "pre-commit").exists()
    assert (workdir / "tree" / ".git").is_file()  # a linked worktree: its hooks are the common ones


def test_the_hook_imports_no_heavy_package(workdir: Path) -> None:
    """python -m coordinatord.guard loads neither pydantic, nor mcp, nor redis (-X importtime)."""
    repo = git_repository(workdir / "repo", None, commit=True)
    stage(repo, "a.txt")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "coordinatord.guard", "--socket", str(workdir / "x.sock")],
        cwd=repo, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "coordinatord" in imported
    assert not imported & {"pydantic", "mcp", "redis", "structlog", "anyio"}, sorted(imported)
