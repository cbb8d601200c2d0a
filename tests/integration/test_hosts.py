"""Several hosts on one backend: the registry keeps a root per (project, host), sessions are
archived on the host that last wrote them, and host-local jobs elect a leader per host."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from coordinatord.app import App
from coordinatord.jobs import JobContext, Jobs, archiver
from coordinatord.keyspace import PROJECTS_KEY, leader_key, project_host_field, session_host_key
from coordinatord.services.projects import KnownProject, ProjectRegistry
from coordinatord.settings import load_settings
from coordinatord.store import Store
from coordinatord.tools import build_registry
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def make_app(store: Store, tmp_path: Path, host: str, clock: FakeClock | None = None) -> App:
    empty = tmp_path / "config.toml"
    empty.touch()
    settings = load_settings({"daemon": {"host_id": host}}, config_file=str(empty), environ={})
    return App(settings, store, clock or FakeClock(), registry=build_registry())


async def test_each_host_keeps_its_own_root_of_one_project(store: Store, tmp_path: Path) -> None:
    """Two hosts announce one project id with different roots: neither overwrites the other, each
    sees its own root first, and a root is local only on its host."""
    clock = FakeClock()
    h1, h2 = unique("h1"), unique("h2")
    first, second = ProjectRegistry(store, (), clock, host=h1), ProjectRegistry(store, (), clock, host=h2)
    project = unique("travelling")
    root1, root2 = tmp_path / "one", tmp_path / "two"
    root1.mkdir()
    root2.mkdir()
    await first.announce(project, str(root1))
    clock.now += 5
    await second.announce(project, str(root2))
    seen1 = {p.project_id: p for p in await first.known()}[project]
    seen2 = {p.project_id: p for p in await second.known()}[project]
    assert (seen1.root, seen1.host, seen2.root, seen2.host) == (str(root1), h1, str(root2), h2)
    assert {(r.host, r.root) for r in seen1.roots} == {(h1, str(root1)), (h2, str(root2))}
    assert seen1.last_seen == clock.now  # the latest announcement on any host
    assert (seen1.root_on(h2), seen1.is_local(h1), seen1.is_local("elsewhere")) == (str(root2), True, False)
    assert seen1.on_host(h2).root == str(root2)
    assert await first.find(str(root2)) is not None
    assert await first.forget(project)
    assert project not in {p.project_id for p in await second.known()}


async def test_an_old_registry_field_is_read_as_its_hosts_root(store: Store, tmp_path: Path) -> None:
    """A field written before roots were per host (the bare id → {root, host, last_seen}) is read
    as the root on the host it names, and a newer field of that host wins over it."""
    clock = FakeClock()
    host = unique("old-host")
    registry = ProjectRegistry(store, (), clock, host=host)
    project = unique("legacy")
    old = json.dumps({"root": "/srv/old", "host": host, "last_seen": clock.now - 10})
    await store.execute("HSET", PROJECTS_KEY, project, old)
    [seen] = [p for p in await registry.known() if p.project_id == project]
    assert (seen.root, seen.host, seen.source) == ("/srv/old", host, "shim")
    await registry.announce(project, "/srv/new")
    [seen] = [p for p in await registry.known() if p.project_id == project]
    assert (seen.root, len(seen.roots)) == ("/srv/new", 1)
    assert await registry.forget(project)
    assert await store.execute("HEXISTS", PROJECTS_KEY, project) == 0
    assert await store.execute("HEXISTS", PROJECTS_KEY, project_host_field(project, host)) == 0


async def test_a_session_is_archived_on_the_host_that_last_wrote_it(store: Store, tmp_path: Path) -> None:
    """Saved through host A, a session is archived by A's archiver and skipped (other_host) by
    B's; appended through B, it moves to B; without a recorded host, any host archives it."""
    clock = FakeClock()
    a, b = make_app(store, tmp_path, unique("ha"), clock), make_app(store, tmp_path, unique("hb"), clock)
    ns = fresh_namespace()
    root_a, root_b = tmp_path / "on-a", tmp_path / "on-b"
    root_a.mkdir()
    root_b.mkdir()

    def project(app: App, root: Path) -> KnownProject:
        return KnownProject(
            project_id=ns.project_id, root=str(root), host=app.host, last_seen=None, source="config"
        )

    async def archive(app: App, root: Path) -> dict[str, int]:
        ctx = JobContext(app, app.projects, "session_archiver")
        return await archiver.archive_project(ctx, project(app, root), every_session=True)

    await a.services.sessions.save(ns, "s1", {"task": "x"}, agent="kilo")
    assert await store.get(ns.key(session_host_key("s1"))) == a.host
    assert (await archive(b, root_b))["other_host"] == 1
    assert (await archive(a, root_a))["archived"] == 1
    assert (root_a / ".kilocode" / "sessions" / "s1.json").exists()
    assert not (root_b / ".kilocode" / "sessions" / "s1.json").exists()

    await b.services.sessions.append(ns, "s1", "user", "moved on", agent="cline")
    assert await store.get(ns.key(session_host_key("s1"))) == b.host
    assert (await archive(a, root_a))["other_host"] == 1
    assert (await archive(b, root_b))["archived"] == 1

    await store.delete([ns.key(session_host_key("s1"))])
    await a.services.sessions.append(ns, "s1", "user", "again", agent="kilo")
    await store.delete([ns.key(session_host_key("s1"))])
    assert (await archive(b, root_b))["archived"] == 1
    assert (await archive(a, root_a))["archived"] == 1

    await a.services.sessions.end(ns, "s1", str(root_a))
    assert await store.get(ns.key(session_host_key("s1"))) is None


async def test_a_host_local_job_has_one_leader_per_host(store: Store, tmp_path: Path) -> None:
    """A per-host job runs in one daemon of each host: both hosts' first daemons lead, a second
    daemon of the first host does not; a global job's lease is one for all."""
    h1, h2 = unique("lead-h1"), unique("lead-h2")
    runs: list[str] = []

    async def probe(ctx: JobContext) -> dict[str, int]:
        runs.append(ctx.app.daemon_id)
        return {"ran": 1}

    daemons = []
    for host in (h1, h2, h1):
        app = make_app(store, tmp_path, host)
        jobs = Jobs(app, app.projects)
        jobs.add("probe", 60, probe, per_host=True)
        daemons.append(jobs)
    outcomes = [(await jobs.run_now("probe")).last_outcome for jobs in daemons]
    assert outcomes == ["ok", "ok", "not_leader"]
    assert runs == [daemons[0].daemon_id, daemons[1].daemon_id]
    assert daemons[0].lease_key("probe") == leader_key("probe", h1) == f"coord:leader:probe:{h1}"
    assert await store.get(leader_key("probe", h2)) == daemons[1].daemon_id
    for jobs in daemons:
        await jobs.resign_all()
    assert await store.get(leader_key("probe", h1)) is None
    app = make_app(store, tmp_path, h1)
    global_jobs = Jobs(app, app.projects)
    global_jobs.add("sweep-like", 60, probe)
    assert global_jobs.lease_key("sweep-like") == "coord:leader:sweep-like"
