"""The known-projects registry: shims' announcements plus config entries, stale ones forgotten,
projects found by any spelling of their root, forgotten and purged on request."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from coordinatord.errors import InvalidArgumentError
from coordinatord.keyspace import PROJECTS_KEY, Namespace, project_host_field, project_id_for
from coordinatord.services.projects import REMEMBER_S, ProjectRegistry
from coordinatord.settings import ProjectEntry
from coordinatord.store import Store
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


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
    assert (
        await store.execute("HEXISTS", PROJECTS_KEY, project_host_field(project_id_for(old_root), "here"))
        == 0
    )
    await store.execute("HDEL", PROJECTS_KEY, project_id_for(new_root))


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """A real project folder (its canonical path), with ``link`` beside it pointing to it."""
    root = Path(os.path.realpath(tmp_path)) / f"app-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    (tmp_path / "link").symlink_to(root)
    return root


async def test_a_project_is_found_by_id_root_or_any_spelling_of_it(store: Store, app_root: Path) -> None:
    """find() takes the id, the recorded root, or another spelling of the root (symlink, ..)."""
    registry = ProjectRegistry(store, (), FakeClock(), host="here")
    root = app_root
    pid = project_id_for(str(root))
    await registry.announce(pid, str(root))
    try:
        for value in (pid, str(root), f"{root}/", str(root.parent / "link"), f"{root}/../{root.name}"):
            found = await registry.find(value)
            assert found is not None and found.project_id == pid, value
        assert await registry.find("nothing-0123456789") is None
        assert await registry.find(f"/srv/none-{uuid.uuid4().hex[:8]}") is None
    finally:
        await store.execute("HDEL", PROJECTS_KEY, pid)


async def test_forget_drops_the_entry_and_purge_deletes_the_namespace_only(store: Store) -> None:
    """forget removes the project from the registry; purge deletes every key of its namespace in
    pages smaller than the namespace (SCAN + UNLINK), counts them, and touches no other project."""
    registry = ProjectRegistry(store, (), FakeClock(), host="here")
    root = f"/srv/purge-{uuid.uuid4().hex[:8]}"
    pid = project_id_for(root)
    ns, neighbour = Namespace(pid), Namespace(project_id_for(root + "-x"))
    await registry.announce(pid, root)
    for index in range(23):
        await store.set(ns.key(f"k{index}"), "x", 60)
    await store.execute("RPUSH", ns.key("agent:context:s:history"), "turn")
    await store.set(neighbour.key("k0"), "kept", 60)
    try:
        assert await registry.forget(pid) is True
        assert await registry.forget(pid) is False
        assert pid not in {project.project_id for project in await registry.known()}
        assert await registry.purge(pid, batch=5) == 24
        assert await store.scan(ns.pattern("*"), 100) == ([], False)
        assert await store.get(neighbour.key("k0")) == "kept"
        assert await registry.purge(pid) == 0
    finally:
        await store.delete([neighbour.key("k0")])


async def test_purge_refuses_what_is_not_a_project_id(store: Store) -> None:
    """An id is turned into a MATCH pattern only if it has an id's shape (no glob characters)."""
    registry = ProjectRegistry(store, (), FakeClock(), host="here")
    with pytest.raises(InvalidArgumentError, match="'project'"):
        await registry.purge("*")


def test_configured_ids_go_through_the_same_rule(tmp_path: Path) -> None:
    """A [[projects]] entry's id is the one a shim at any spelling of its root gets."""
    (tmp_path / "b").mkdir()
    entry = ProjectEntry(root=tmp_path / "a" / ".." / "b")
    registry = ProjectRegistry(None, (entry,), FakeClock(), host="here")  # type: ignore[arg-type]
    assert registry.configured_ids == {project_id_for(os.path.realpath(tmp_path / "b"))}
