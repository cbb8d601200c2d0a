"""Operator commands about the known projects, served over the daemon's socket (see
:mod:`coordinatord.control.registry`): what ``coordinatord projects`` asks.

- ``projects_list`` ``{}`` → ``{"host", "projects": [{project_id, root, host, last_seen, source,
  local, connected, roots}], "now"}``: every project the jobs walk (announced by shims, or ``[[projects]]``
  of config), the most recently seen first; ``root``/``host``: its root on this host when it has
  one, else the most recently seen; ``roots``: ``[{host, root, last_seen, source}]``, one per host;
  ``local``: its folder is on this host; ``connected``: the agents with a connection open to
  this daemon in it; ``now``: the daemon's clock (the backend's time), which ``last_seen`` is on.
- ``projects_forget`` ``{project, purge?, force?}`` → ``{project_id, root, purged,
  keys_deleted}``: remove the project from the registry so the jobs stop walking it, and with
  ``purge`` delete every key of its namespace. Refused for a ``[[projects]]`` entry (it would be
  known again at once) and, unless ``force``, for a project with a connection open here.
- ``projects_migrate`` ``{old, new, force?, keep?}`` → ``{old, new, copied, merged, kept, vanished,
  unsupported, unsupported_keys, purged, keys_deleted, forgotten}``: copy every key of namespace
  ``old`` into ``new`` with their TTLs (:mod:`coordinatord.services.migrate`), then, unless
  ``keep``, purge ``old`` and forget it. ``old`` is an id; ``new`` an id or a root (its id now).
  Refused when ``new`` already holds keys (unless ``force``: its own keys then win, collections
  merge) and when a connection of this daemon works in ``old`` (unless ``force``: its writes
  after the copy would be lost).

Live locks and a running daemon: a lock held in ``old`` arrives in ``new`` with its holder,
token, fencing number and remaining lease, so the holder, connected again under the new id,
renews and releases it there as before; the fencing counter takes the larger value, so no token
goes back. An agent still working in ``old`` through a daemon not yet moved to the new ids (on
another host sharing the backend) loses its locks when ``old`` is purged: migrate with ``keep``
until every host resolves the new id, then again without it.

``projects_list`` rows also carry ``id_source``, ``resolves_to`` and ``id_problem``
(:func:`coordinatord.scope.id_note`).

A project is named by its id or its root (any spelling of it: see :mod:`coordinatord.scope`).
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from coordinatord.app import App
from coordinatord.control.registry import Connections, ControlHandler
from coordinatord.control.status import id_notes
from coordinatord.errors import ConflictError, InvalidArgumentError, NotFoundError
from coordinatord.identity.rules import check_project_id
from coordinatord.keyspace import Namespace
from coordinatord.scope import project_ref
from coordinatord.services.migrate import NamespaceMigration
from coordinatord.services.projects import KnownProject
from coordinatord.words import plural

NEW_KEYS_SHOWN = 1_000
"""Keys of the new namespace counted for the refusal's message."""

log = structlog.get_logger("coordinatord.control_projects")


def handlers(app: App, connections: Connections) -> dict[str, ControlHandler]:
    control = ProjectControl(app, connections)
    return {
        "projects_list": control.projects_list,
        "projects_forget": control.projects_forget,
        "projects_migrate": control.projects_migrate,
    }


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
        notes = await id_notes(self._app.project_reads, known, host)
        connected = self._connected()
        return {
            "host": host,
            "projects": [
                {
                    "project_id": project.project_id,
                    **note.as_dict(),
                    "root": project.root,
                    "host": project.host,
                    "last_seen": project.last_seen,
                    "source": project.source,
                    "local": is_local,
                    "connected": connected.get(project.project_id, []),
                    "roots": [entry.model_dump(mode="json") for entry in project.roots],
                }
                for project, is_local, note in zip(known, local, notes, strict=True)
            ],
            "now": self._app.clock(),  # the clock last_seen is on (the backend's time)
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

    async def projects_migrate(self, args: dict[str, Any]) -> dict[str, Any]:
        old_value, new_value = args.get("old"), args.get("new")
        if not isinstance(old_value, str) or not old_value:
            raise InvalidArgumentError("argument 'old' must be the project id to move the keys from")
        if not isinstance(new_value, str) or not new_value:
            raise InvalidArgumentError("argument 'new' must be a project id or root to move the keys to")
        force, keep = _flag(args, "force"), _flag(args, "keep")
        old = check_project_id(old_value, "old")
        if new_value.startswith("/"):
            new = (await self._app.project_reads.run(new_value, project_ref, new_value)).project_id
        else:
            new = check_project_id(new_value, "new")
        if old == new:
            raise InvalidArgumentError(f"old and new are one project ({old}): nothing to move")
        agents = self._connected().get(old, [])
        if agents and not force:
            raise ConflictError(
                f"project {old} has {plural(len(agents), 'connection')} open now "
                f"(agents: {', '.join(agents)}); "
                "what they write after their keys are copied would be lost: close those editors first "
                "(a shim whose root now resolves to the new id reconnects into it), or pass force"
            )
        migration = NamespaceMigration(self._app.store)
        if not (await migration.count(Namespace(old), 1))[0]:
            raise NotFoundError(
                f"namespace {old} holds no keys: nothing to move (coordinatord projects list shows the "
                "known ids; an old path-hash id is the one whose root now resolves to another)"
            )
        held, more = await migration.count(Namespace(new), NEW_KEYS_SHOWN)
        if held and not force:
            raise ConflictError(
                f"namespace {new} already holds {held}{'+' if more else ''} keys (agents already work "
                "there); pass force to merge: its own keys win, sets and indexes gain the old entries, "
                "counters keep the larger value"
            )
        # Events of the old project still queued would write its activity stream after the copy.
        await self._app.activity.flush()
        counts = await migration.copy(Namespace(old), Namespace(new))
        registry = self._app.projects
        deleted: int | None = None
        forgotten = False
        if not keep:
            if old not in registry.configured_ids:
                forgotten = await registry.forget(old)
            deleted = await registry.purge(old)
        result = {"old": old, "new": new, **counts.as_dict(), "purged": not keep, "keys_deleted": deleted}
        result.update(forgotten=forgotten, connected=agents)
        log.info("project_migrated", **result)
        return result


def _flag(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"argument {name!r} must be true or false")
    return value


def _recent_first(project: KnownProject) -> float:
    # Configured projects no shim announced yet (last_seen None) come last.
    return -(project.last_seen or 0.0)
