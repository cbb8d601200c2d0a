"""The projects a daemon knows: announced by shims (remembered in Redis, with their root path
and the host they live on) plus the ``[[projects]]`` entries of config.toml. Jobs walk them.

Key: ``coord:projects`` (outside every namespace: it lists them), a hash of project id → JSON
``{root, host, last_seen}``, with a TTL refreshed on every announcement.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from coordinatord.clock import Clock, system_clock
from coordinatord.keyspace import PROJECTS_KEY, Namespace, project_id_for
from coordinatord.settings import ProjectEntry
from coordinatord.store import Store

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
        self._configured = configured
        self._clock = clock
        self.host = host or socket.gethostname()

    async def announce(self, project_id: str, root: str) -> None:
        record = json.dumps({"root": root, "host": self.host, "last_seen": round(self._clock(), 3)})
        await self._store.batch(
            [["HSET", PROJECTS_KEY, project_id, record], ["EXPIRE", PROJECTS_KEY, REMEMBER_S]]
        )

    async def known(self) -> list[KnownProject]:
        """Every known project, config entries first; a shim's announcement of the same project
        replaces nothing but adds when it was last seen."""
        raw: dict[str, str] = await self._store.execute("HGETALL", PROJECTS_KEY) or {}
        if isinstance(raw, list):  # RESP2 without the client's dict conversion
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        projects: dict[str, KnownProject] = {}
        forgotten: list[str] = []
        oldest = self._clock() - REMEMBER_S
        for entry in self._configured:
            root = str(entry.root)
            pid = project_id_for(root)
            projects[pid] = KnownProject(
                project_id=pid, root=root, host=self.host, last_seen=None, source="config"
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
            await self._store.execute("HDEL", PROJECTS_KEY, *forgotten)
        return list(projects.values())
