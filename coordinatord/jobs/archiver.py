"""Session archiving (job ``session_archiver``, every ``jobs.archive_s``): no session context is
ever lost to a TTL.

Runs on every host (a leader per host, see :mod:`coordinatord.jobs`). For each known project
whose folder is on this host, the sessions that are due — idle for
``jobs.archive_idle_s`` or more, or whose TTL would end before the next run plus
``jobs.archive_margin_s`` — are written to ``<project root>/<sessions.archive_dir>/<id>.json``
while they are still in Redis, and left there: the archiver is a safety net, ``session_end`` is
what removes a session. ``session_restore`` brings an archived-and-expired session back.

The walk is in batches of ``jobs.batch_size`` (one ZSCAN step and one pipelined round trip each),
yielding to tool calls between batches. A due session whose file already holds its
``(version, turns)`` is counted ``unchanged`` without reading it from Redis; otherwise its
consistent snapshot is written atomically and durably (temp file, fsync, rename, fsync of the
folder — :mod:`coordinatord.services.archive`), never over a later state. A write that fails
leaves the old file (or none) and the session in Redis, and is counted ``failed``; the next run
tries again. Two runs at once (a tick and ``coordinatord archive``) are safe: writes to one
archive folder are serialised by a lock on it and are idempotent.

A session is archived on the host that last wrote it (every save and append records the
daemon's ``daemon.host_id``), under that host's root of the project, and skipped elsewhere; a
session that records no host (written before hosts were recorded, or by hand) is archived by
every host that has the project's root, as before.

Counts: ``projects`` (projects walked), ``archived`` (files written), ``unchanged`` (due but
already archived in this state), ``failed``, ``other_host`` (due, but last written on another
host, which archives it).
"""

from __future__ import annotations

from collections import Counter

import anyio
import structlog

from coordinatord.errors import NotFoundError, OlderStateError, ToolError
from coordinatord.jobs import JobContext
from coordinatord.services.projects import KnownProject

log = structlog.get_logger("coordinatord.jobs.archiver")

COUNTS = ("projects", "archived", "unchanged", "failed", "other_host")


async def run(ctx: JobContext) -> dict[str, int]:
    totals: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    for project in await local_projects(ctx):
        totals.update(await archive_project(ctx, project))
    return dict(totals)


async def local_projects(ctx: JobContext) -> list[KnownProject]:
    """The known projects whose folder exists on this host (only there can archives be written),
    each with its root on this host (one project has a root per host)."""
    host = ctx.projects.host
    projects = await ctx.known_projects()
    local = await anyio.to_thread.run_sync(lambda: [p.on_host(host) for p in projects if p.is_local(host)])
    return local


async def archive_project(
    ctx: JobContext, project: KnownProject, *, every_session: bool = False
) -> dict[str, int]:
    """Archive one project's due sessions (``every_session``: all its live ones, as
    ``coordinatord archive --all`` asks); its counts (``projects`` is 1)."""
    sessions = ctx.app.services.sessions
    jobs = ctx.app.settings.jobs
    ns = project.namespace
    counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    counts["projects"] = 1
    batches = sessions.due_for_archive(
        ns,
        # Idle for 0 s or more: every session whose last activity is not in the future.
        idle_s=0 if every_session else jobs.archive_idle_s,
        horizon_s=jobs.archive_s + jobs.archive_margin_s,
        batch_size=jobs.batch_size,
    )
    host = ctx.projects.host
    async for due in batches:
        batch = [candidate for candidate in due if candidate.host in (None, host)]
        counts["other_host"] += len(due) - len(batch)
        if not batch:
            await ctx.pause()
            continue
        ids = [candidate.session_id for candidate in batch]
        try:
            states = await sessions.reads.run(project.root, sessions.archived_states, project.root, ids)
        except ToolError as exc:
            # The archive folder itself is unusable (outside the root, root gone): every due
            # session of this project fails alike, so say it once.
            log.warning("session_archive_failed", project=ns.project_id, root=project.root, error=str(exc))
            counts["failed"] += len(batch)
            continue
        for candidate in batch:
            sid = candidate.session_id
            if states.get(sid) == (candidate.version, candidate.history_length):
                counts["unchanged"] += 1
                continue
            try:
                result = await sessions.archive(ns, sid, project.root)
            except NotFoundError:
                continue  # ended or expired since the walk saw it: nothing left to archive
            except OlderStateError as exc:
                # The file holds a later state: session_end got there first (fine), or a new
                # session reuses an ended one's id (its archive cannot be written: say so).
                if await _still_live(ctx, project, sid):
                    counts["failed"] += 1
                    log.warning("session_archive_failed", project=ns.project_id, key=sid, error=str(exc))
                else:
                    counts["unchanged"] += 1
                continue
            except ToolError as exc:
                counts["failed"] += 1
                log.warning("session_archive_failed", project=ns.project_id, key=sid, error=str(exc))
                continue
            if result.written:
                counts["archived"] += 1
                ctx.action(ns, "session_archived", key=sid)
            else:
                counts["unchanged"] += 1
        await ctx.pause()  # tool calls first
    return dict(counts)


async def _still_live(ctx: JobContext, project: KnownProject, session_id: str) -> bool:
    loaded = await ctx.app.services.sessions.load(project.namespace, session_id)
    return loaded.found
