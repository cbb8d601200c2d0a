"""The ``overview`` control command: what ``coordinatord top`` shows, one document per project.

``overview`` ``{project?, all?}`` → ``{"daemon": {...}, "projects": [document, ...], "total",
"more", "now"}``: with ``project`` (a root in any spelling, or an id) that one project; with
``all`` every known project, the most recently seen first, at most :data:`MAX_PROJECTS`
(``more`` says how many were left out). Each document holds, every part capped at a few rows
with the number left out beside it (``more``)::

    {"project_id", "id_source", "resolves_to", "id_problem", "root", "host",
     "agents":     {"known", "active", "more", "rows": [{agent, status, connected, idle_s,
                                                         current_task, mode}]},
     "locks":      {"held", "more", "rows": [{resource, held_by, fencing, expires_in}]},
     "tasks":      {"total", "more", "rows": [{taskId, status, percentComplete, completedSteps,
                                               totalSteps, currentStep, updatedAt}]},
     "ratelimits": {"total", "more", "rows": [{service, window_s, limit, used}]},
     "activity":   {"rows": [{ts, agent, kind, name, key, outcome, duration_ms}]},
     "error": null or what stopped the reads}

Cheap by design, since ``top`` asks every second: per project a handful of pipelined reads run
side by side (the agents' index then their documents, the locks' summary script then their
documents, the tasks' index then their documents, one rate-limit script, one ``XREVRANGE``),
none of them walks an index, and the whole reply is cut off after :data:`BUDGET_S`. Nothing is
written, except that events the daemon has queued for the activity log are flushed first, as
``activity_recent`` does, so the frame shows the calls just made.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from coordinatord import __version__
from coordinatord.app import App
from coordinatord.control.arguments import project_argument
from coordinatord.control.registry import Connections, ControlHandler
from coordinatord.control.status import clock_state, id_notes
from coordinatord.errors import BackendError, InvalidArgumentError
from coordinatord.scope import IdNote
from coordinatord.services.projects import KnownProject

MAX_PROJECTS = 20
"""Projects one ``overview --all`` reads (the most recently seen first)."""
ROWS = {"agents": 10, "locks": 10, "tasks": 10, "ratelimits": 8, "activity": 10}
"""Rows per part and project; the rest is counted in ``more``."""
BUDGET_S = 3.0
"""The reply goes out after this long with what was read (the rest marked with an error)."""


def handlers(app: App, connections: Connections, started_at: float) -> dict[str, ControlHandler]:
    control = OverviewControl(app, connections, started_at)
    return {"overview": control.overview}


class OverviewControl:
    def __init__(self, app: App, connections: Connections, started_at: float) -> None:
        self._app = app
        self._connections = connections
        self._started_at = started_at

    async def overview(self, args: dict[str, Any]) -> dict[str, Any]:
        every = args.get("all", False)
        if not isinstance(every, bool):
            raise InvalidArgumentError("argument 'all' must be true or false")
        value = args.get("project")
        if every == (value is not None):
            raise InvalidArgumentError("give either 'project' (a root or an id) or 'all': true")
        app = self._app
        reply: dict[str, Any] = {
            "daemon": {
                "version": __version__,
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self._started_at, 1),
                "backend": app.store.name,
                "connections": len(self._connections()),
                "clock": clock_state(app),
            },
            "projects": [],
            "total": 0,
            "more": 0,
        }
        try:
            await app.activity.flush()  # never raises for the backend: the events stay queued
            if every:
                known = sorted(await app.projects.known(), key=_recent_first)
                chosen = known[:MAX_PROJECTS]
                reply.update(total=len(known), more=len(known) - len(chosen))
            else:
                chosen = [await self._project(value)]
                reply["total"] = 1
        except BackendError as exc:
            reply["error"] = str(exc)
            reply["now"] = app.clock()
            return reply
        notes = await id_notes(app.project_reads, chosen, app.projects.host)
        documents = [_empty(project, note) for project, note in zip(chosen, notes, strict=True)]
        reply["projects"] = documents
        with anyio.move_on_after(BUDGET_S) as scope:
            for project, document in zip(chosen, documents, strict=True):
                await self._fill(project, document)
        if scope.cancelled_caught:
            for document in documents:
                if document.get("pending"):
                    document["error"] = f"not read within {BUDGET_S:g} s"
        for document in documents:
            document.pop("pending", None)
        # The app's clock (the backend's time), which the documents' times are on too.
        reply["now"] = app.clock()
        return reply

    async def _project(self, value: Any) -> KnownProject:
        return await project_argument(self._app.projects, value)

    async def _fill(self, project: KnownProject, document: dict[str, Any]) -> None:
        """Read the project's parts side by side into ``document``; a backend error ends them
        all and is reported in the document."""
        services = self._app.services
        ns = project.namespace

        async def agents() -> None:
            found = await services.agents.overview(ns, ROWS["agents"])
            rows = [
                {
                    "agent": a.agent,
                    "status": a.status,
                    "connected": a.connected,
                    "idle_s": a.idle_s,
                    "current_task": a.current_task,
                    "mode": a.mode,
                }
                for a in found.agents
            ]
            document["agents"] = _part(rows, known=found.known, active=found.active, counted=found.known)

        async def locks() -> None:
            found = await services.locks.summary(ns, ROWS["locks"])
            rows = [lock.model_dump() for lock in found.locks]
            document["locks"] = _part(rows, held=found.held, counted=found.held)

        async def tasks() -> None:
            found = await services.tasks.summary(ns, ROWS["tasks"])
            rows = [task.model_dump() for task in found.tasks]
            document["tasks"] = _part(rows, total=found.total, counted=found.total)

        async def ratelimits() -> None:
            found = await services.ratelimits.budgets(ns, ROWS["ratelimits"])
            rows = [budget.model_dump() for budget in found.budgets]
            document["ratelimits"] = _part(rows, total=found.total, counted=found.total)

        async def activity() -> None:
            events = await self._app.activity.recent(ns, ROWS["activity"])
            keep = ("ts", "agent", "kind", "name", "key", "outcome", "duration_ms")
            document["activity"] = {"rows": [{k: event.get(k) for k in keep} for event in events]}

        try:
            async with anyio.create_task_group() as tg:
                for part in (agents, locks, tasks, ratelimits, activity):
                    tg.start_soon(part)
        except* BackendError as group:
            document["error"] = str(group.exceptions[0])
        document.pop("pending", None)


def _part(rows: list[dict[str, Any]], counted: int, **counts: int) -> dict[str, Any]:
    return {**counts, "more": max(0, counted - len(rows)), "rows": rows}


def _empty(project: KnownProject, note: IdNote) -> dict[str, Any]:
    return {
        "project_id": project.project_id,
        **note.as_dict(),
        "root": project.root,
        "host": project.host,
        "agents": {"known": 0, "active": 0, "more": 0, "rows": []},
        "locks": {"held": 0, "more": 0, "rows": []},
        "tasks": {"total": 0, "more": 0, "rows": []},
        "ratelimits": {"total": 0, "more": 0, "rows": []},
        "activity": {"rows": []},
        "error": None,
        "pending": True,
    }


def _recent_first(project: KnownProject) -> float:
    # Configured projects no shim announced yet (last_seen None) come last.
    return -(project.last_seen or 0.0)
