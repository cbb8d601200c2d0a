"""What ``coordinatord status`` shows, and the other operator commands a daemon answers.

Served over the daemon's socket by :mod:`coordinatord.control.registry`. Every part is gathered
separately, so a dead backend still leaves the daemon's own facts (pid, uptime, connections,
jobs, the clock's skew) visible, with the backend reported unhealthy.

Projects (active agents, held locks) are read only when the backend answered the ping, for at
most :data:`MAX_PROJECTS` projects (most recently seen first) and :data:`MAX_LISTED` agents and
locks each, within :data:`PROJECTS_BUDGET_S`: ``status`` must stay quick with a large keyspace
and must answer while the backend is failing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from coordinatord import __version__
from coordinatord.app import App
from coordinatord.control.registry import Connections, ControlHandler
from coordinatord.errors import BackendError, FileRefusedError, InvalidArgumentError
from coordinatord.jobs import Jobs
from coordinatord.project_reads import ProjectReads
from coordinatord.scope import IdNote, id_note
from coordinatord.services.projects import KnownProject

MAX_PROJECTS = 50
MAX_LISTED = 20
PROJECTS_BUDGET_S = 5.0


class DaemonStatus:
    def __init__(
        self,
        app: App,
        connections: Connections,
        jobs: Jobs,
        started_at: float,
        service: dict[str, Any] | None = None,
        socket_folder: dict[str, Any] | None = None,
    ) -> None:
        """``service``: how systemd runs the daemon (``unit``, ``socket_activated``,
        ``watchdog_s``), shown as ``daemon.systemd``; ``socket_folder``: why the socket is in
        the folder it is in, as the daemon started (``note``: :func:`coordinatord.paths.socket_note`;
        ``fallback``: whether it is the default's fallback)."""
        self._service = service or {}
        self._socket_folder = socket_folder or {}
        self._app = app
        self._connections = connections
        self._jobs = jobs
        self._started_at = started_at

    def control_handlers(self) -> dict[str, ControlHandler]:
        return {"status": self.status, "run_job": self.run_job, "ping": self.ping}

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        """The cheapest answer a daemon gives (``coordinatord editor list`` asks it of every
        socket an editor's shim would use): no backend call."""
        return {"pid": os.getpid(), "version": __version__, "socket": str(self._app.settings.socket)}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self._app
        backend: dict[str, Any] = {"name": app.store.name, "mode": app.settings.backend.mode}
        started = time.perf_counter()
        try:
            await app.store.ping()
            backend.update(healthy=True, ping_ms=round((time.perf_counter() - started) * 1000, 3))
        except BackendError as exc:
            backend.update(healthy=False, error=str(exc), kind=exc.kind)
        projects: dict[str, Any] = {"shown": [], "total": None}
        if backend["healthy"]:
            projects = await self._projects()
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "started_at": self._started_at,
                "uptime_s": round(time.time() - self._started_at, 1),
                "socket": str(app.settings.socket),
                "socket_folder": self._socket_folder,
                "config_file": None if app.settings.config_file is None else str(app.settings.config_file),
                "daemon_id": self._jobs.daemon_id,
                "systemd": self._service,
                "clock": clock_state(app),
            },
            "backend": backend,
            "connections": self._connections(),
            "projects": projects,
            "jobs": self._jobs.status(),
            # The app's clock (the backend's time): what every time in this reply is on.
            "now": app.clock(),
        }

    async def _projects(self) -> dict[str, Any]:
        """Active agents and held locks per known project; an error ends the walk, keeping
        what was read."""
        shown: list[dict[str, Any]] = []
        total: int | None = None
        result: dict[str, Any] = {"shown": shown, "total": None}
        with anyio.move_on_after(PROJECTS_BUDGET_S) as scope:
            try:
                known = await self._app.projects.known()
                total = len(known)
                chosen = sorted(known, key=_recent_first)[:MAX_PROJECTS]
                notes = await id_notes(self._app.project_reads, chosen, self._app.projects.host)
                for project, note in zip(chosen, notes, strict=True):
                    shown.append(await self._project(project, note))
            except BackendError as exc:
                result["error"] = str(exc)
        if scope.cancelled_caught:
            result["error"] = f"stopped after {PROJECTS_BUDGET_S:g} s"
        result["total"] = total
        return result

    async def _project(self, project: KnownProject, note: IdNote) -> dict[str, Any]:
        services = self._app.services
        agents = await services.agents.summary(project.namespace, MAX_LISTED)
        locks = await services.locks.summary(project.namespace, MAX_LISTED)
        return {
            "project": project.project_id,
            **note.as_dict(),
            "root": project.root,
            "host": project.host,
            "last_seen": project.last_seen,
            "active_agents": agents.active,
            "agents": [agent.model_dump() for agent in agents.agents],
            "held_locks": locks.held,
            "locks": [lock.model_dump() for lock in locks.locks],
        }

    async def run_job(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if name not in self._jobs.names:
            raise InvalidArgumentError(f"no job named {name!r}; jobs: {', '.join(self._jobs.names)}")
        state = await self._jobs.run_now(str(name))
        return state.as_dict()


def clock_state(app: App) -> dict[str, Any] | None:
    """The daemon's clock against the backend's (:class:`coordinatord.clock.ClockState`), None
    when the app's clock is not backend-anchored (an app built by a test)."""
    return None if app.backend_clock is None else app.backend_clock.state().as_dict()


async def id_notes(reads: ProjectReads, projects: list[KnownProject], host: str) -> list[IdNote]:
    """Where each project's id came from, its root resolved again when it is on this host: each
    among its own project's reads (bounded in time), so that one project's files that do not
    answer cost only its own note."""
    notes: list[IdNote] = []
    for project in projects:
        try:
            notes.append(await reads.run(project.root, _id_note, project, host))
        except FileRefusedError as exc:
            notes.append(IdNote(None, problem=str(exc)))
    return notes


def _id_note(project: KnownProject, host: str) -> IdNote:
    return id_note(project.project_id, project.root, project.is_local(host))


def _recent_first(project: KnownProject) -> float:
    # Configured projects no shim announced yet (last_seen None) come last.
    return -(project.last_seen or 0.0)
