"""Operator commands about the known projects, served over the daemon's socket (see
:mod:`coordinatord.control.registry`): what ``coordinatord projects`` asks.

- ``projects_list`` ``{}`` → ``{"host", "projects": [{project_id, root, host, last_seen, source,
  local, connected, roots}]}``: every project the jobs walk (announced by shims, or ``[[projects]]``
  of config), the most recently seen first; ``root``/``host``: its root on this host when it has
  one, else the most recently seen; ``roots``: ``[{host, root, last_seen, source}]``, one per host;
  ``local``: its folder is on this host; ``connected``: the agents with a connection open to
  this daemon in it.
- ``projects_forget`` ``{project, purge?, force?}`` → ``{project_id, root, purged,
  keys_deleted}``: remove the project from the registry so the jobs stop walking it, and with
  ``purge`` delete every key of its namespace. Refused for a ``[[projects]]`` entry (it would be
  known again at once) and, unless ``force``, for a project with a connection open here.

A project is named by its id or its root (any spelling of it: see :mod:`coordinatord.scope`).
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from coordinatord.app import App
from coordinatord.control.registry import Connections, ControlHandler
from coordinatord.errors import ConflictError, InvalidArgumentError, NotFoundError
from coordinatord.services.projects import KnownProject
from coordinatord.words import plural

log = structlog.get_logger("coordinatord.control_projects")


def handlers(app: App, connections: Connections) -> dict[str, ControlHandler]:
    control = ProjectControl(app, connections)
    return {"projects_list": control.projects_list, "projects_forget": control.projects_forget}


class ProjectControl:
    def __init__(self, app: App, connections: Connections) -> None:
        self._app = app
        self._connections = connections

    def _connected(self) -> dict[str, list[str]]:
        """Project id → the agents connected in it now (a connection whose agent is not known
        yet, a shim without --agent before its first call, shows as ``(unnamed)``)."""
        agents: dict[str, list[str]] = {}
        for conn in self._connections():
            if conn.get("project") is not None:
                agents.setdefault(conn["project"], []).append(conn.get("agent") or "(unnamed)")
        return {project: sorted(names) for project, names in agents.items()}

    async def projects_list(self, args: dict[str, Any]) -> dict[str, Any]:
        registry = self._app.projects
        known = sorted(await registry.known(), key=_recent_first)
        host = registry.host
        # One trip to a worker thread for every folder check, not one per project.
        local = await anyio.to_thread.run_sync(lambda: [project.is_local(host) for project in known])
        connected = self._connected()
        return {
            "host": host,
            "projects": [
                {
                    "project_id": project.project_id,
                    "root": project.root,
                    "host": project.host,
                    "last_seen": project.last_seen,
                    "source": project.source,
                    "local": is_local,
                    "connected": connected.get(project.project_id, []),
                    "roots": [entry.model_dump(mode="json") for entry in project.roots],
                }
                for project, is_local in zip(known, local, strict=True)
            ],
        }

    async def projects_forget(self, args: dict[str, Any]) -> dict[str, Any]:
        value = args.get("project")
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError("argument 'project' must be a project id or root")
        purge, force = _flag(args, "purge"), _flag(args, "force")
        registry = self._app.projects
        project = await registry.find(value)
        if project is None:
            raise NotFoundError(
                f"no known project {value!r}; the known ones are listed by: coordinatord projects list"
            )
        named = f"project {project.project_id} ({project.root})"
        if project.project_id in registry.configured_ids:
            raise ConflictError(
                f"{named} is a [[projects]] entry of the daemon's config, so it would be known again "
                "at once; remove the entry from config.toml and restart the daemon, then forget it"
            )
        agents = self._connected().get(project.project_id, [])
        if agents and not force:
            raise ConflictError(
                f"{named} has {plural(len(agents), 'connection')} open now (agents: {', '.join(agents)}); "
                "close those editors first, or pass force to forget it anyway (their next connection "
                "makes it known again)"
            )
        await registry.forget(project.project_id)
        deleted: int | None = None
        if purge:
            # Events of this project still queued would write its activity stream again.
            await self._app.activity.flush()
            deleted = await registry.purge(project.project_id)
        log.info(
            "project_forgotten",
            project=project.project_id,
            root=project.root,
            purged=purge,
            keys_deleted=deleted,
            connected=agents,
        )
        return {
            "project_id": project.project_id,
            "root": project.root,
            "purged": purge,
            "keys_deleted": deleted,
            "connected": agents,
        }


def _flag(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"argument {name!r} must be true or false")
    return value


def _recent_first(project: KnownProject) -> float:
    # Configured projects no shim announced yet (last_seen None) come last.
    return -(project.last_seen or 0.0)
