"""Operator commands about sessions, served over the daemon's socket (see
:mod:`coordinatord.control.registry`): what ``coordinatord archive`` and ``coordinatord sessions`` ask.

- ``archive_plan`` ``{}`` → ``{"projects": [{project_id, root}]}``: the known projects whose
  folder is on this host, so that the client can archive them one by one and show progress.
- ``archive`` ``{project?, all?}`` → ``{"projects": [{project_id, root, archived, unchanged, failed,
  not_due}], "totals": {...}}``: run the session archiver now, for one project (root or id) or
  for every local known project; the due sessions, or with ``all`` every live one. Runs beside
  the scheduled job rather than through it: the job's tick yields to whichever daemon holds its
  leader lease, while an operator asks *this* daemon about a folder on *this* host; two runs at
  once are safe (archive writes are idempotent and serialised per folder).
- ``sessions_list`` ``{project}`` → the live sessions (as ``session_list`` gives them) and the
  archives on disk.
- ``sessions_restore`` ``{project, session_id, force?}`` → ``session_restore``'s result.

A project is named by its root (an absolute path, in any spelling: it is canonicalised as a
shim's is) or its id; a root no shim has announced yet is accepted when it is a folder on this
host.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import structlog

from coordinatord.app import App
from coordinatord.control.arguments import project_argument
from coordinatord.control.registry import ControlHandler
from coordinatord.errors import ArchiveError, InvalidArgumentError, NotFoundError
from coordinatord.jobs import JobContext, Jobs, archiver
from coordinatord.jobs.schedule import SESSION_ARCHIVER
from coordinatord.services.archive import read_archive
from coordinatord.services.projects import KnownProject

log = structlog.get_logger("coordinatord.control_sessions")

ARCHIVES_LISTED = 1_000
"""Most archive files ``sessions_list`` reads (the most recently written first)."""


def handlers(app: App, jobs: Jobs) -> dict[str, ControlHandler]:
    control = SessionControl(app, jobs)
    return {
        "archive_plan": control.archive_plan,
        "archive": control.archive,
        "sessions_list": control.sessions_list,
        "sessions_restore": control.sessions_restore,
    }


class SessionControl:
    def __init__(self, app: App, jobs: Jobs) -> None:
        self._app = app
        self._jobs = jobs

    def _context(self) -> JobContext:
        # Steps aside for tool calls as the scheduled archiver does.
        return JobContext(self._app, self._app.projects, SESSION_ARCHIVER, self._jobs.in_flight)

    async def archive_plan(self, args: dict[str, Any]) -> dict[str, Any]:
        projects = await archiver.local_projects(self._context())
        return {"projects": [{"project_id": p.project_id, "root": p.root} for p in projects]}

    async def archive(self, args: dict[str, Any]) -> dict[str, Any]:
        ctx = self._context()
        if args.get("project") is None:
            projects = await archiver.local_projects(ctx)
        else:
            projects = [await self._local_project(args.get("project"))]
        results = []
        totals: Counter[str] = Counter(dict.fromkeys(archiver.COUNTS, 0))
        every_session = args.get("all") is True
        for project in projects:
            live = await self._app.services.sessions.live_count(project.namespace)
            counts = await archiver.archive_project(ctx, project, every_session=every_session)
            totals.update(counts)
            # Live sessions the walk did not take (not idle long enough, nor about to expire):
            # so that "0 archived" with sessions open says why, and what archives them now.
            walked = counts["archived"] + counts["unchanged"] + counts["failed"] + counts["other_host"]
            not_due = 0 if every_session else max(0, live - walked)
            results.append(
                {"project_id": project.project_id, "root": project.root, **counts, "not_due": not_due}
            )
        log.info("archive_requested", **totals)
        return {"projects": results, "totals": dict(totals)}

    async def sessions_list(self, args: dict[str, Any]) -> dict[str, Any]:
        project = await self._project(args.get("project"))
        sessions = self._app.services.sessions
        live = await sessions.list_sessions(project.namespace)
        reply: dict[str, Any] = {
            "project_id": project.project_id,
            "root": project.root,
            "live": [s.model_dump(mode="json") for s in live.sessions],
            "live_truncated": live.truncated,
            "archive_dir": None,
            "archived": [],
            "archived_truncated": False,
        }
        if await self._is_local(project):
            reads, max_bytes = sessions.reads, self._app.settings.sessions.max_archive_bytes
            directory = await reads.run(project.root, sessions.archive_directory, project.root)
            archived, truncated = await reads.run(project.root, list_archives, directory, max_bytes)
            reply.update(archive_dir=str(directory), archived=archived, archived_truncated=truncated)
        return reply

    async def sessions_restore(self, args: dict[str, Any]) -> dict[str, Any]:
        project = await self._local_project(args.get("project"))
        session_id = args.get("session_id")
        if not isinstance(session_id, str):
            raise InvalidArgumentError("argument 'session_id' must be a string")
        force = args.get("force", False)
        if not isinstance(force, bool):
            raise InvalidArgumentError("argument 'force' must be true or false")
        result = await self._app.services.sessions.restore(project.namespace, session_id, project.root, force)
        log.info("session_restored", project=project.project_id, key=session_id, force=force)
        return result.model_dump(mode="json")

    async def _project(self, value: Any) -> KnownProject:
        return await project_argument(self._app.projects, value)

    async def _local_project(self, value: Any) -> KnownProject:
        project = await self._project(value)
        if not await self._is_local(project):
            raise InvalidArgumentError(
                f"project {project.project_id} lives in {project.root} on host {project.host}, "
                f"which is not a folder on this host ({self._app.projects.host}); run the command "
                "on the machine that has it"
            )
        return project

    async def _is_local(self, project: KnownProject) -> bool:
        return await anyio.to_thread.run_sync(project.is_local, self._app.projects.host)


def list_archives(directory: Path, max_bytes: int) -> tuple[list[dict[str, Any]], bool]:
    """The session archives in ``directory``, most recently written first. Blocking."""
    try:
        entries = [
            (entry.stat().st_mtime, Path(entry.path))
            for entry in os.scandir(directory)
            if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file()
        ]
    except FileNotFoundError:
        return [], False
    entries.sort(key=lambda item: item[0], reverse=True)
    listed: list[dict[str, Any]] = []
    for _, path in entries[:ARCHIVES_LISTED]:
        try:
            data = read_archive(path, max_bytes)
        except (ArchiveError, NotFoundError) as exc:
            listed.append({"session_id": path.stem, "path": str(path), "error": str(exc)})
            continue
        listed.append(
            {
                "session_id": data["session_id"],
                "path": str(path),
                "version": data["version"],
                "history_length": len(data["history"]),
                "archived_at": data.get("archived_at"),
                "archived_by": data.get("archived_by"),
                "updated_at": data.get("updatedAt"),
            }
        )
    return listed, len(entries) > ARCHIVES_LISTED
