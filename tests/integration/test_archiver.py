"""The session archiver (job ``session_archiver``) against real servers: sessions reach their
archive file before Redis can expire them, writes are atomic and idempotent, and the session
stays in Redis."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from coordinatord.app import App
from coordinatord.jobs import JobContext, archiver
from coordinatord.keyspace import Namespace, session_history_key, session_key
from coordinatord.services.projects import KnownProject
from coordinatord.settings import load_settings
from coordinatord.store import Store
from coordinatord.tools import build_registry
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio

START = 1_770_955_200.0  # 2026-02-13T04:00:00Z
ARCHIVE_S, MARGIN_S, IDLE_S = 300, 600, 7200  # the defaults: sessions expiring within 900 s are due


class Setup:
    def __init__(self, app: App, clock: FakeClock, project: KnownProject) -> None:
        self.app, self.clock, self.project = app, clock, project
        self.ctx = JobContext(app, app.projects, "session_archiver")
        self.sessions = app.services.sessions

    @property
    def ns(self) -> Namespace:
        return self.project.namespace

    def path(self, session_id: str) -> Path:
        return Path(self.project.root) / ".kilocode" / "sessions" / f"{session_id}.json"

    async def run(self) -> dict[str, int]:
        return await archiver.archive_project(self.ctx, self.project)


@pytest.fixture
async def setup(store: Store, tmp_path: Path) -> Setup:
    empty = tmp_path / "config.toml"
    empty.touch()
    jobs = {"archive_s": ARCHIVE_S, "archive_margin_s": MARGIN_S, "archive_idle_s": IDLE_S, "batch_size": 10}
    settings = load_settings({"jobs": jobs}, config_file=str(empty), environ={})
    clock = FakeClock()
    root = tmp_path / "project"
    root.mkdir()
    ns = fresh_namespace()
    project = KnownProject(
        project_id=ns.project_id, root=str(root), host=socket.gethostname(), last_seen=None, source="config"
    )
    return Setup(App(settings, store, clock, registry=build_registry()), clock, project)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def counts(archived: int = 0, unchanged: int = 0, failed: int = 0, other_host: int = 0) -> dict[str, int]:
    return {
        "projects": 1,
        "archived": archived,
        "unchanged": unchanged,
        "failed": failed,
        "other_host": other_host,
    }


async def test_due_sessions_are_the_idle_and_the_expiring(setup: Setup) -> None:
    """Due are sessions whose TTL ends within archive_s + margin and sessions idle for archive_idle_s;
    fresh ones are not, and every batch of the walk is seen (150 sessions: past the size at which
    Redis stops answering a ZSCAN in one step)."""
    svc, ns = setup.sessions, setup.ns
    await svc.save(ns, "idle", {"a": 1})
    setup.clock.now += IDLE_S + 1
    await svc.save(ns, "fresh", {"a": 1})
    for n in range(150):
        await svc.save(ns, f"short-{n}", {"n": n}, ttl_s=ARCHIVE_S + MARGIN_S)
    seen: dict[str, str] = {}
    batches = 0
    async for batch in svc.due_for_archive(ns, idle_s=IDLE_S, horizon_s=ARCHIVE_S + MARGIN_S, batch_size=10):
        batches += 1
        seen.update({c.session_id: c.reason for c in batch})
    assert seen == {"idle": "idle", **{f"short-{n}": "expiring" for n in range(150)}}
    assert batches >= 2


async def test_a_short_ttl_session_is_on_disk_before_redis_expires_it(setup: Setup, store: Store) -> None:
    """A session whose TTL ends before the next run is archived with its context and history while
    still in Redis; once Redis has expired it, session_restore brings it back whole."""
    svc, ns = setup.sessions, setup.ns
    await svc.save(ns, "s1", {"task": "docs", "big": 2**64 + 1, "empty": []}, ttl_s=120, agent="kilo")
    await svc.append(ns, "s1", "user", "hello", agent="kilo")
    await svc.append(ns, "s1", "assistant", "hi", agent="kilo")
    with capture_logs() as logs:
        assert await setup.run() == counts(archived=1)
    assert [(e["event"], e["key"]) for e in logs if e["event"] == "session_archived"] == [
        ("session_archived", "s1")
    ]
    data = read_json(setup.path("s1"))
    assert data["context"] == {"task": "docs", "big": 2**64 + 1, "empty": []}
    assert [t["message"] for t in data["history"]] == ["hello", "hi"]
    assert (data["version"], data["ttl"]) == (1, 120)
    assert (await svc.load(ns, "s1")).found  # archiving is no delete
    # Let Redis expire it for real (the TTL cut short), then bring it back from the archive.
    for key in (session_key("s1"), session_history_key("s1")):
        await store.execute("PEXPIRE", ns.key(key), 1)
    with anyio.fail_after(5):
        while (await svc.load(ns, "s1")).found:  # noqa: ASYNC110 - Redis's own expiry is the event
            await anyio.sleep(0.01)
    restored = await svc.restore(ns, "s1", setup.project.root)
    assert (restored.version, restored.history_length) == (1, 2)
    loaded = await svc.load(ns, "s1")
    assert loaded.context == {"task": "docs", "big": 2**64 + 1, "empty": []}
    assert [t.message for t in (await svc.history(ns, "s1")).turns] == ["hello", "hi"]


async def test_idle_sessions_are_archived_and_fresh_ones_are_not(setup: Setup) -> None:
    """A session idle longer than archive_idle_s is archived even with a long TTL; an active one is not."""
    svc, ns = setup.sessions, setup.ns
    await svc.save(ns, "old", {"a": 1})
    setup.clock.now += IDLE_S + 60
    await svc.save(ns, "new", {"b": 2})
    assert await setup.run() == counts(archived=1)
    assert setup.path("old").exists() and not setup.path("new").exists()


async def test_an_unchanged_session_is_not_rewritten(setup: Setup) -> None:
    """A second run finds the file already holding the session's state and leaves it alone; a new
    turn makes the next run write it again."""
    svc, ns = setup.sessions, setup.ns
    await svc.save(ns, "s1", {"a": 1}, ttl_s=60)
    await svc.append(ns, "s1", "user", "one")
    assert await setup.run() == counts(archived=1)
    before = os.stat(setup.path("s1"))
    assert await setup.run() == counts(unchanged=1)
    after = os.stat(setup.path("s1"))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    direct = await svc.archive(ns, "s1", setup.project.root)
    assert not direct.written
    await svc.append(ns, "s1", "assistant", "two")
    assert await setup.run() == counts(archived=1)
    assert len(read_json(setup.path("s1"))["history"]) == 2


async def test_a_write_failing_before_the_rename_leaves_no_partial_file(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename fails, there is no archive (and no temp file) where there was none, the old
    archive is intact where there was one, the session stays in Redis, and a later run succeeds."""
    svc, ns = setup.sessions, setup.ns
    await svc.save(ns, "new", {"a": 1}, ttl_s=60)
    await svc.save(ns, "old", {"v": 1}, ttl_s=60)
    await archiver.archive_project(setup.ctx, setup.project)
    setup.path("new").unlink()
    old_bytes = setup.path("old").read_bytes()
    await svc.save(ns, "old", {"v": 2})

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("coordinatord.services.archive.os.replace", failing_replace)
    with capture_logs() as logs:
        assert await setup.run() == counts(failed=2)
    assert {e["key"] for e in logs if e["event"] == "session_archive_failed"} == {"new", "old"}
    folder = setup.path("old").parent
    # No temp file left behind (the .gitignore came with the folder).
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "old.json"]
    assert setup.path("old").read_bytes() == old_bytes
    assert (await svc.load(ns, "new")).found
    assert (await svc.load(ns, "old")).version == 2
    monkeypatch.undo()
    assert await setup.run() == counts(archived=2)
    assert read_json(setup.path("old"))["context"] == {"v": 2}


async def test_an_archive_is_never_replaced_by_an_older_state(setup: Setup) -> None:
    """A new session reusing an ended one's id cannot overwrite the later archive: the run counts it
    failed and the file keeps the ended session."""
    svc, ns = setup.sessions, setup.ns
    for step in range(3):
        await svc.save(ns, "s1", {"step": step})
    await svc.end(ns, "s1", setup.project.root)
    ended = setup.path("s1").read_bytes()
    await svc.save(ns, "s1", {"again": True}, ttl_s=60)
    with capture_logs() as logs:
        assert await setup.run() == counts(failed=1)
    assert any("later state" in e.get("error", "") for e in logs)
    assert setup.path("s1").read_bytes() == ended


async def test_a_project_without_due_sessions_writes_nothing(setup: Setup) -> None:
    """A run over fresh sessions archives nothing and creates no archive folder."""
    await setup.sessions.save(setup.ns, "s1", {"a": 1})
    assert await setup.run() == counts()
    assert not setup.path("s1").parent.exists()
