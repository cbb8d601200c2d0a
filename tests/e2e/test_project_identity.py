"""A project id that travels, end to end: two clones of one origin at different paths are one
project through real shims and a real daemon, ``status`` says where the id came from, and
``coordinatord projects migrate`` moves an old path-hash namespace's keys, TTLs and live lock
into the repository's id."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from coordinatord.keyspace import Namespace, project_id_for
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore, Store
from coordinatord.store.embedded import embedded_socket_path
from tests.e2e.conftest import call, connect, text_of
from tests.support import COORDINATORD, GIT, DaemonProcess, git, git_repository, running_daemon

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.e2e,
    pytest.mark.skipif(GIT is None, reason="git is not installed"),
]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One daemon with its own embedded Valkey and no scheduled jobs (nothing writes on its own)."""
    with running_daemon({"COORDINATORD_JOBS__ENABLED": "false"}) as process:
        yield process


@pytest.fixture
async def backend(daemon: DaemonProcess) -> AsyncIterator[Store]:
    """The daemon's embedded backend, to read keys and TTLs directly."""
    store = RedisStore.from_url(f"unix://{embedded_socket_path(daemon.state_dir)}", BackendSettings())
    try:
        yield store
    finally:
        await store.aclose()


async def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [COORDINATORD, *args, "--socket", str(daemon.socket_path)]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=daemon.env, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_a_lock_taken_in_one_clone_is_held_in_the_other(daemon: DaemonProcess, workdir: Path) -> None:
    """Clones of one origin at two paths, spelt two ways, are one namespace: a lock taken through
    a shim in clone A is seen held through a shim in clone B, and status names the origin."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    one = git_repository(workdir / "ana" / "src" / "app", f"git@github.com:org/{name}.git")
    other = git_repository(workdir / "bo" / "checkout", f"https://bo:secret-token@GitHub.com/org/{name}")
    expected = f"github.com/org/{name}"
    async with (
        connect(daemon.socket_path, agent="ana", project=one) as ana,
        connect(daemon.socket_path, agent="bo", project=other) as bo,
    ):
        held = await call(ana, "lock_acquire", {"resource": "db/schema", "ttl": 120})
        assert held["acquired"] is True
        refused = await call(bo, "lock_acquire", {"resource": "db/schema"})
        assert (refused["acquired"], refused["held_by"]) == (False, "ana")
        [listed] = (await call(bo, "lock_list", {}))["locks"]
        assert (listed["resource"], listed["held_by"]) == ("db/schema", "ana")
        status = await cli(daemon, "status", "--json")
        assert status.returncode == 0, status.stderr
        mine = [c for c in json.loads(status.stdout)["connections"] if c["agent"] in ("ana", "bo")]
        assert {(c["project"], c["id_source"]) for c in mine} == {(expected, "origin")}
        assert {c["root"] for c in mine} == {str(one), str(other)}
        assert "secret-token" not in status.stdout
        text = await cli(daemon, "status")
        assert f"{expected} (from origin)" in text.stdout


async def test_migrate_moves_an_old_path_namespace_with_its_ttls_and_lock(
    daemon: DaemonProcess, workdir: Path, backend: Store
) -> None:
    """A repository used before it had an origin keeps its lock and keys: once the origin is added,
    projects list names the old id and the migrate command, and migrate copies every key with its
    TTL into the new id, where the lock is held by the same agent, then deletes the old namespace."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    root = git_repository(workdir / "old" / "app", origin=None)
    old = project_id_for(str(root))
    async with connect(daemon.socket_path, agent="ana", project=root) as ana:
        taken = await call(ana, "lock_acquire", {"resource": "deploy", "ttl": 600})
        assert not (
            await ana.call_tool("redis_set", {"key": "temp:notes:1", "value": "kept", "ttl": 900})
        ).is_error
    await daemon.wait_for_log("connection_closed", agent="ana", project=old)
    git("remote", "add", "origin", f"git@gitlab.com:team/{name}.git", cwd=root)
    new = f"gitlab.com/team/{name}"

    listed = json.loads((await cli(daemon, "projects", "list", "--json")).stdout)["projects"]
    [entry] = [p for p in listed if p["project_id"] == old]
    assert (entry["id_source"], entry["resolves_to"]) == ("path", new)
    text = (await cli(daemon, "projects", "list")).stdout
    assert f"coordinatord projects migrate {old} {new}" in text

    done = await cli(daemon, "projects", "migrate", old, str(root), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["old"], result["new"], result["purged"], result["forgotten"]) == (old, new, True, True)
    assert result["copied"] >= 2 and result["kept"] == 0
    assert await backend.scan(Namespace(old).pattern("*"), 10) == ([], False)
    assert 800_000 < await backend.pttl(Namespace(new).key("temp:notes:1")) <= 900_000
    assert 500_000 < await backend.pttl(Namespace(new).key("lock:deploy")) <= 600_000

    async with connect(daemon.socket_path, agent="bo", project=root) as bo:
        refused = await call(bo, "lock_acquire", {"resource": "deploy"})
        assert (refused["acquired"], refused["held_by"]) == (False, "ana")
    async with connect(daemon.socket_path, agent="ana", project=root) as ana:
        released = await call(ana, "lock_release", {"resource": "deploy", "token": taken["token"]})
        assert released["released"] is True
        assert text_of(await ana.call_tool("redis_get", {"key": "temp:notes:1"})) == "kept"

    again = await cli(daemon, "projects", "migrate", old, new)
    assert again.returncode == 1 and "holds no keys" in again.stderr


async def test_migrate_refuses_a_new_namespace_in_use_without_force(
    daemon: DaemonProcess, backend: Store
) -> None:
    """NEW holding keys is refused, naming --force; with --force NEW's own keys win and --keep
    leaves OLD as it was."""
    old, new = Namespace(f"old-{uuid.uuid4().hex[:8]}"), Namespace(f"github.com/org/n-{uuid.uuid4().hex[:8]}")
    await backend.set(old.key("k"), "old", 600)
    await backend.set(old.key("only-old"), "x", 600)
    await backend.set(new.key("k"), "new", 600)
    refused = await cli(daemon, "projects", "migrate", old.project_id, new.project_id)
    assert (
        refused.returncode == 1 and "already holds 1 keys" in refused.stderr and "--force" in refused.stderr
    )
    done = await cli(daemon, "projects", "migrate", old.project_id, new.project_id, "--force", "--keep")
    assert done.returncode == 0, done.stderr
    assert "1 copied" in done.stdout and "1 kept" in done.stdout
    assert await backend.get(new.key("k")) == "new" and await backend.get(new.key("only-old")) == "x"
    assert await backend.get(old.key("k")) == "old"
    usage = await cli(daemon, "projects", "migrate", old.project_id)
    assert usage.returncode == 2 and "give the old id and the new id" in usage.stderr
