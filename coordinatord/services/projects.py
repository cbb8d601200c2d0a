"""The projects a daemon knows: announced by shims (remembered in Redis, with their root path
on each host they live on) plus the ``[[projects]]`` entries of config.toml. Jobs walk them.

Key: ``coord:projects`` (outside every namespace: it lists them), a hash with one field per
(project, host), ``<project id>@<host id>`` → JSON ``{project, root, host, last_seen}``, with a
TTL refreshed on every announcement. One project (one repository) has one id on every host but
a root per host; each host writes only its own field (one HSET, no read-modify-write), so hosts
never overwrite each other's roots. Fields written before roots were kept per host (the bare
project id → ``{root, host, last_seen}``) are still read, each as the root on the host it names.

An operator can forget a project (:meth:`ProjectRegistry.forget`: the jobs stop walking it) and
purge its namespace (:meth:`ProjectRegistry.purge`: SCAN and UNLINK page by page, never KEYS, so
the server is never held for long whatever the project's size).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict

from coordinatord.clock import Clock, system_clock
from coordinatord.identity.rules import check_project_id
from coordinatord.keyspace import PROJECTS_KEY, Namespace, project_host_field
from coordinatord.project_reads import ProjectReads
from coordinatord.scope import ProjectRef, project_ref, project_refs
from coordinatord.settings import ProjectEntry, ProjectFileSettings
from coordinatord.store import Batch, Store

PURGE_BATCH = 500
"""Keys per SCAN step and per UNLINK when a project's namespace is purged."""

REMEMBER_S = 30 * 86_400
"""A project no shim has announced for this long is forgotten."""


class ProjectRoot(BaseModel):
    """Where a project lives on one host."""

    model_config = ConfigDict(frozen=True)

    host: str
    root: str
    last_seen: float | None
    source: str  # "shim" or "config"


class KnownProject(BaseModel):
    """A project and its roots. ``root``/``host``/``source`` name one of them: this host's when
    it has one, else the one seen most recently; ``last_seen`` is the latest on any host."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    root: str
    host: str
    last_seen: float | None
    source: str  # "shim" or "config"
    roots: tuple[ProjectRoot, ...] = ()  # every host's (empty: only root/host above)

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.project_id)

    def root_on(self, host: str) -> str | None:
        """The project's root on ``host``, if one was announced (or configured) there."""
        for entry in self.roots:
            if entry.host == host:
                return entry.root
        return self.root if self.host == host else None

    def is_local(self, host: str) -> bool:
        """Whether this daemon can reach the project's folder (a root on its host that exists)."""
        root = self.root_on(host)
        return root is not None and Path(root).is_dir()

    def on_host(self, host: str) -> KnownProject:
        """This project seen from ``host``: ``root``/``host`` its root there (when it has one)."""
        root = self.root_on(host)
        if root is None or (root, host) == (self.root, self.host):
            return self
        return self.model_copy(update={"root": root, "host": host})


class ProjectRegistry:
    def __init__(
        self,
        store: Store,
        configured: tuple[ProjectEntry, ...],
        clock: Clock = system_clock,
        host: str | None = None,
        reads: ProjectReads | None = None,
    ) -> None:
        """``reads``: where roots are resolved (their files read: per project, bounded in time)."""
        self._store = store
        self.reads = reads or ProjectReads(ProjectFileSettings())
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
        """Remember ``root`` as the project's root on this host (this host's field only)."""
        record = json.dumps(
            {"project": project_id, "root": root, "host": self.host, "last_seen": round(self._clock(), 3)}
        )
        # Idempotent (HSET of a value, EXPIRE; their replies unused): a resend changes nothing.
        batch = Batch()
        batch.hset(PROJECTS_KEY, project_host_field(project_id, self.host), record)
        batch.expire(PROJECTS_KEY, REMEMBER_S)
        await self._store.run(batch)

    async def known(self) -> list[KnownProject]:
        """Every known project, config entries first, each with its root on every host; a
        shim's announcement of a configured root replaces nothing but adds when it was last
        seen."""
        raw = await self._store.hgetall(PROJECTS_KEY)
        roots: dict[str, dict[str, ProjectRoot]] = {}
        forgotten: list[str] = []
        oldest = self._clock() - REMEMBER_S
        for ref in self._configured:
            roots.setdefault(ref.project_id, {})[self.host] = ProjectRoot(
                host=self.host, root=ref.root, last_seen=None, source="config"
            )
        for field, value in sorted(raw.items()):
            parsed = _record(field, value)
            if parsed is None:
                continue  # a damaged entry names no project we could work on
            pid, announced = parsed
            if announced.last_seen is not None and announced.last_seen < oldest:
                # The hash's own TTL is refreshed by every announcement, so one stale root
                # could linger for ever: each is forgotten REMEMBER_S after its last one.
                forgotten.append(field)
                continue
            hosts = roots.setdefault(pid, {})
            known = hosts.get(announced.host)
            if known is None:
                hosts[announced.host] = announced
            elif known.source == "config":
                hosts[announced.host] = known.model_copy(update={"last_seen": announced.last_seen})
            elif (known.last_seen or 0.0) < (announced.last_seen or 0.0):
                hosts[announced.host] = announced  # an old-style field and a newer one: the newer
        if forgotten:
            await self._store.hdel(PROJECTS_KEY, forgotten)
        return [self._merge(pid, hosts) for pid, hosts in roots.items()]

    def _merge(self, project_id: str, hosts: dict[str, ProjectRoot]) -> KnownProject:
        # This host's root first, then the most recently seen.
        ordered = sorted(
            hosts.values(), key=lambda entry: (entry.host != self.host, -(entry.last_seen or 0.0), entry.host)
        )
        primary = ordered[0]
        seen = [entry.last_seen for entry in ordered if entry.last_seen is not None]
        return KnownProject(
            project_id=project_id,
            root=primary.root,
            host=primary.host,
            last_seen=max(seen) if seen else None,
            source=primary.source,
            roots=tuple(ordered),
        )

    async def find(self, value: str) -> KnownProject | None:
        """The known project ``value`` names: its id, its root as recorded, or (for an absolute
        path) any spelling of that root."""
        known = await self.known()
        for project in known:
            if value == project.project_id or any(value == entry.root for entry in project.roots):
                return project
        if value.startswith("/"):
            ref = await self.reads.run(value, project_ref, value)  # resolves it on disk
            for project in known:
                if ref.project_id == project.project_id:
                    return project
        return None

    async def forget(self, project_id: str) -> bool:
        """Remove a project from the registry (the jobs stop walking it); whether it was there.

        A shim connecting from it again announces it again: forgetting is for projects no
        editor uses any more.
        """
        raw = await self._store.hgetall(PROJECTS_KEY)
        fields = [field for field, value in raw.items() if (_record(field, value) or ("",))[0] == project_id]
        if not fields:
            return False
        # Whether it was there is what the read found: HDEL's count would be 0 for a resend of
        # the HDEL after a lost reply.
        await self._store.hdel(PROJECTS_KEY, fields)
        return True

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
                # A key SCAN returns twice is deleted (and counted) once: UNLINK counts what it removed
                # (a resend of an UNLINK whose reply was lost counts 0: the total may then be low).
                deleted += await self._store.unlink(sorted(set(keys)))
            if cursor == "0":
                return deleted


def _record(field: str, value: str) -> tuple[str, ProjectRoot] | None:
    """A registry field as (project id, root on its host); None for a damaged one."""
    try:
        record: Any = json.loads(value)
        # New fields say their project; an old one is named by its field.
        project_id = str(record.get("project", field))
        return project_id, ProjectRoot(
            host=str(record["host"]),
            root=str(record["root"]),
            last_seen=float(record["last_seen"]),
            source="shim",
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
