"""Memory-bank cache refresh (job ``memory_bank_refresh``, every ``jobs.memory_bank_refresh_s``).

For each known project whose folder is on this host, :meth:`MemoryBankService.refresh` re-reads
every source of ``memory_bank.sources`` under its root and writes to Redis only the files whose content hash
changed (plus the index when it changed), deletes the entries of files that are gone, and
renews the TTL of the rest — see :mod:`coordinatord.services.memory_bank`. A project with none
of the sources costs one round trip and writes nothing.

Counts: ``projects`` (projects with at least one source), ``files`` (files cached), ``changed``
(entries written), ``removed`` (entries deleted), ``skipped`` (files too large, escaping their
source, or shadowed), ``failed`` (projects that could not be refreshed; logged).
"""

from __future__ import annotations

from collections import Counter

import structlog

from coordinatord.errors import ToolError
from coordinatord.jobs import JobContext
from coordinatord.jobs.archiver import local_projects

log = structlog.get_logger("coordinatord.jobs.memory_bank")

COUNTS = ("projects", "files", "changed", "removed", "skipped", "failed")


async def run(ctx: JobContext) -> dict[str, int]:
    service = ctx.app.services.memory_bank
    counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    for project in await local_projects(ctx):
        ns = project.namespace
        try:
            result = await service.refresh(ns, project.root)
        except ToolError as exc:
            counts["failed"] += 1
            log.warning(
                "memory_bank_refresh_failed", project=ns.project_id, root=project.root, error=str(exc)
            )
            continue
        if result.exists:
            counts["projects"] += 1
        counts["files"] += result.files
        counts["changed"] += result.changed
        counts["removed"] += result.removed
        counts["skipped"] += result.skipped
        for name in result.changed_files:
            ctx.action(ns, "memory_bank_cached", key=name)
        for name in result.removed_files:
            ctx.action(ns, "memory_bank_uncached", key=name)
        await ctx.pause()  # tool calls first
    return dict(counts)
