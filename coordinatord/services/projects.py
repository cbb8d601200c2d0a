"""The projects a daemon knows: announced by shims (remembered in Redis, with their root path
and the host they live on) plus the ``[[projects]]`` entries of config.toml. Jobs walk them.

Key: ``coord:projects`` (outside every namespace: it lists them), a hash of project id → JSON
``{root, host, last_seen}``, with a TTL refreshed on every announcement.

An operator can forget a project (:meth:`ProjectRegistry.forget`: the jobs stop walking it) and
purge its namespace (:meth:`ProjectRegistry.purge`: SCAN and UNLINK page by page, never KEYS, so
the server is never held for long whatever the project's size).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anyio
import structlog
from pydantic import BaseModel, ConfigDict

from coordinatord.clock import Clock, system_clock
from coordinatord.identity.rules import check_project_id
from coordinatord.keyspace import PROJECTS_KEY, Namespace
from coordinatord.scope import ProjectRef, project_ref, project_refs
from coordinatord.settings import ProjectEntry
from coordinatord.store import Batch, Store

PURGE_BATCH = 500
"""Keys per SCAN step and per UNLINK when a project's namespace is purged."""

REMEMBER_S = 30 * 86_400
"""A project no shim has announced for this long is forgotten."""


class KnownProject(BaseModel):
    model_config = ConfigDict(frozen=True)

    project_id: str
    root: str
    host: str
    last_seen: float | None
    source: str  # "shim" or "config"

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.project_id)

    def is_local(self, host: str) -> bool:
        """Whether this daemon can reach the project's folder (same host, folder exists)."""
        return self.host == host and Path(self.root).is_dir()


class ProjectRegistry:
    def __init__(
        self,
        store: Store,
        configured: tuple[ProjectEntry, ...],
        clock: Clock = system_clock,
        host: str | None = None,
    ) -> None:
        self._store = store
        # Through the one rule that makes a root an id (the entries are canonical already); an
        # entry whose .coordinatord.toml is wrong is left out (and logged), not the daemon down.
        refs, problems = project_refs([str(entry.root) for entry in configured])
        for problem in problems:
            structlog.get_logger("coordinatord.projects").warning("configured_project_skipped", error=problem)
        self._configured: tuple[ProjectRef, ...] = tuple(refs)
        self._clock = clock
        self.host = host or socket.gethostname()

    @property
    def configured_ids(self) -> frozenset[str]:
        """The ids of the ``[[projects]]`` entries: always known, whatever is forgotten."""
        return frozenset(ref.project_id for ref in self._configured)

    async def announce(self, project_id: str, root: str) -> None:
        record = json.dumps({"root": root, "host": self.host, "last_seen": round(self._clock(), 3)})
        batch = Batch()
        batch.hset(PROJECTS_KEY, project_id, record)
        batch.expire(PROJECTS_KEY, REMEMBER_S)
        await self._store.run(batch)

    async def known(self) -> list[KnownProject]:
        """Every known project, config entries first; a shim's announcement of the same project
        replaces nothing but adds when it was last seen."""
        raw = await self._store.hgetall(PROJECTS_KEY)
        projects: dict[str, KnownProject] = {}
        forgotten: list[str] = []
        oldest = self._clock() - REMEMBER_S
        for ref in self._configured:
            projects[ref.project_id] = KnownProject(
                project_id=ref.project_id, root=ref.root, host=self.host, last_seen=None, source="config"
            )
        for pid, value in sorted(raw.items()):
            try:
                record = json.loads(value)
                announced = KnownProject(
                    project_id=pid,
                    root=str(record["root"]),
                    host=str(record["host"]),
                    last_seen=float(record["last_seen"]),
                    source="shim",
                )
            except (ValueError, KeyError, TypeError):
                continue  # a damaged entry names no project we could work on
            if announced.last_seen is not None and announced.last_seen < oldest:
                # The hash's own TTL is refreshed by every announcement, so one stale project
                # could linger for ever: each is forgotten REMEMBER_S after its last one.
                forgotten.append(pid)
                continue
            configured = projects.get(pid)
            projects[pid] = (
                configured.model_copy(update={"last_seen": announced.last_seen}) if configured else announced
            )
        if forgotten:
            await self._store.hdel(PROJECTS_KEY, forgotten)
        return list(projects.values())

    async def find(self, value: str) -> KnownProject | None:
        """The known project ``value`` names: its id, its root as recorded, or (for an absolute
        path) any spelling of that root."""
        known = await self.known()
        for project in known:
            if value in (project.project_id, project.root):
                return project
        if value.startswith("/"):
            ref = await anyio.to_thread.run_sync(project_ref, value)  # resolves it on disk
            for project in known:
                if ref.project_id == project.project_id:
                    return project
        return None

    async def forget(self, project_id: str) -> bool:
        """Remove a project from the registry (the jobs stop walking it); whether it was there.

        A shim connecting from it again announces it again: forgetting is for projects no
        editor uses any more.
        """
        return bool(await self._store.hdel(PROJECTS_KEY, [project_id]))

    async def purge(self, project_id: str, batch: int = PURGE_BATCH) -> int:
        """Delete every key of a project's namespace; returns how many were deleted.

        Page by page (SCAN, then UNLINK of what the page found), so no single command holds the
        server for long. Keys written while it runs may survive it.
        """
        # The id becomes a MATCH pattern: only the shape of an id can be one.
        pattern = Namespace(check_project_id(project_id)).pattern("*")
        deleted = 0
        cursor = "0"
        while True:
            cursor, keys = await self._store.scan_page(cursor, pattern, batch)
            if keys:
                # A key SCAN returns twice is deleted (and counted) once: UNLINK counts what it removed.
                deleted += await self._store.unlink(sorted(set(keys)))
            if cursor == "0":
                return deleted
