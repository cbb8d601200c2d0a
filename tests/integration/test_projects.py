"""The known-projects registry: shims' announcements plus config entries, stale ones forgotten."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from coordinatord.keyspace import PROJECTS_KEY, project_id_for
from coordinatord.services.projects import REMEMBER_S, ProjectRegistry
from coordinatord.settings import ProjectEntry
from coordinatord.store import Store

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_announced_and_configured_projects_are_known(store: Store, tmp_path: Path) -> None:
    """A shim's announcement and a [[projects]] entry both appear; the same root is one project."""
    clock = FakeClock()
    configured = ProjectEntry(root=tmp_path)
    registry = ProjectRegistry(store, (configured,), clock, host="here")
    other_root = f"/srv/other-{uuid.uuid4().hex[:8]}"
    await registry.announce(project_id_for(other_root), other_root)
    await registry.announce(project_id_for(str(tmp_path)), str(tmp_path))
    known = {project.project_id: project for project in await registry.known()}
    mine = known[project_id_for(str(tmp_path))]
    assert (mine.source, mine.last_seen, mine.is_local("here")) == ("config", clock.now, True)
    assert known[project_id_for(other_root)].source == "shim"
    assert not known[project_id_for(other_root)].is_local("here")
    await store.execute("HDEL", PROJECTS_KEY, project_id_for(other_root), project_id_for(str(tmp_path)))


async def test_a_project_not_announced_for_long_is_forgotten(store: Store) -> None:
    """Each project is forgotten REMEMBER_S after its own last announcement, whatever others do."""
    clock = FakeClock()
    registry = ProjectRegistry(store, (), clock, host="here")
    old_root, new_root = (f"/srv/{name}-{uuid.uuid4().hex[:8]}" for name in ("old", "new"))
    await registry.announce(project_id_for(old_root), old_root)
    clock.now += REMEMBER_S + 1
    await registry.announce(project_id_for(new_root), new_root)  # keeps the hash itself alive
    ids = {project.project_id for project in await registry.known()}
    assert project_id_for(new_root) in ids
    assert project_id_for(old_root) not in ids
    assert await store.execute("HEXISTS", PROJECTS_KEY, project_id_for(old_root)) == 0
    await store.execute("HDEL", PROJECTS_KEY, project_id_for(new_root))
