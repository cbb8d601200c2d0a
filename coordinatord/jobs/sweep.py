"""The heartbeat sweep: agents that went quiet become inactive, then gone.

For each known project, in steps of ``jobs.batch_size`` with a yield to the event loop between
steps (tool calls are never stalled behind a sweep):

1. agents whose last heartbeat is outside ``agents.heartbeat_window_s`` and who are not
   present (no live connection record of any daemon, :mod:`coordinatord.services.presence`)
   leave the active index (event ``agent_inactive``);
2. inactive agents whose last heartbeat is older than ``agents.forget_after_s`` (and still not
   present) are marked gone and their status is removed (event ``agent_gone``);
3. when an agent went gone in this run, the locks the gone agents (these, and any a cut-short
   run left) took before they were found gone are released (event ``lock_released_stale``),
   found through each agent's set of held resources, each by a compare-and-delete inside one
   script: a lock someone else holds now is never touched. So are their file reservations
   taken before that mark (event ``files_released_stale``, one script over the project's
   reservations). The task claims they took before then go back the same way (event
   ``task_claim_released``, and ``task_ready`` for each task that is ready again), through each
   agent's set of claimed tasks. Then the gone agents are taken off the gone index.

Every step re-checks its condition inside its own Lua script, so a heartbeat racing the sweep
always wins (see :mod:`coordinatord.services.agents`), and presence is decided there too, from
every daemon's records: whichever daemon leads the sweep, an agent connected to any of them is
kept. A run cut short (shutdown, backend failure) leaves every index consistent; the
gone agents whose locks were not walked stay on the gone index, and the next sweep or reap
releases their locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from coordinatord.jobs import JobContext
from coordinatord.keyspace import Namespace, agent_status_key
from coordinatord.services.locks import GONE_AGENTS_PER_CALL
from coordinatord.services.tasks import GONE_AGENTS_PER_CALL as TASK_GONE_AGENTS_PER_CALL

SCRIPT_STEP_MAX = 250
"""Agents per sweep script, whatever ``jobs.batch_size`` says: the server runs a script to its
end while every other client waits, and marking an agent gone costs it ~8 µs."""
REPORT_CHUNK = 50
"""Events reported between pauses (see :meth:`JobContext.pause`): with its log line and
activity event each costs ~30 µs, so a chunk holds the event loop about 1.5 ms. After each
chunk the activity flusher is woken, and writes the events while the job goes on."""


async def run(ctx: JobContext) -> dict[str, int]:
    agents = ctx.app.services.agents
    locks = ctx.app.services.locks
    batch = min(ctx.app.settings.jobs.batch_size, SCRIPT_STEP_MAX)
    counts = {
        "projects": 0,
        "inactive": 0,
        "gone": 0,
        "locks_released": 0,
        "files_released": 0,
        "claims_released": 0,
    }
    for project in await ctx.known_projects():
        ns = project.namespace
        counts["projects"] += 1
        offset: int | None = 0
        while offset is not None:
            step = await agents.sweep_inactive(ns, offset, batch)
            counts["inactive"] += await report(
                ctx, ns, "agent_inactive", ((agent_status_key(a), a) for a in step.agents)
            )
            offset = step.next_offset
            await ctx.pause()
        gone = 0
        offset = 0
        while offset is not None:
            step = await agents.sweep_gone(ns, offset, batch)
            gone += await report(ctx, ns, "agent_gone", ((agent_status_key(a), a) for a in step.agents))
            offset = step.next_offset
            await ctx.pause()
        counts["gone"] += gone
        holders = sorted(await locks.gone_holders(ns)) if gone else []
        for start in range(0, len(holders), GONE_AGENTS_PER_CALL):
            released = await locks.release_locks_of_gone(ns, holders[start : start + GONE_AGENTS_PER_CALL])
            counts["locks_released"] += await report(
                ctx, ns, "lock_released_stale", ((c.resource, c.holder) for c in released)
            )
            await ctx.pause()
        files, claims = await release_holdings_of_gone(ctx, ns, holders)
        counts["files_released"] += files
        counts["claims_released"] += claims
        await locks.forget_gone(ns, holders)
    return counts


# --- Task claims of gone agents (the task graph) ------------------------------------------------


async def release_holdings_of_gone(ctx: JobContext, ns: Namespace, holders: Sequence[str]) -> tuple[int, int]:
    """Release what gone ``holders`` held besides locks, their file reservations and task
    claims, before they leave the gone index: each script compares with the agent's gone mark,
    so only what was taken before it went gone is released. The lock reaper calls this too,
    since it also empties that index. Returns (reservations, claims) released."""
    if not holders:
        return 0, 0
    freed = await ctx.app.services.files.release_of_gone(ns, holders)
    files = await report(ctx, ns, "files_released_stale", ((" ".join(r.paths)[:200], r.agent) for r in freed))
    await ctx.pause()
    return files, await release_claims(ctx, ns, holders)


async def release_claims(ctx: JobContext, ns: Namespace, holders: Sequence[str]) -> int:
    """Return the claims of gone ``holders`` to the ready index, before they leave the gone
    index (which the claim release reads). Returns how many claims were released."""
    tasks = ctx.app.services.tasks
    released = 0
    for start in range(0, len(holders), TASK_GONE_AGENTS_PER_CALL):
        claims = await tasks.release_claims_of_gone(ns, holders[start : start + TASK_GONE_AGENTS_PER_CALL])
        released += await report(ctx, ns, "task_claim_released", ((c.task_id, c.agent) for c in claims))
        await report(ctx, ns, "task_ready", ((c.task_id, c.agent) for c in claims if c.ready))
        await ctx.pause()
    return released


async def report(ctx: JobContext, ns: Namespace, action: str, items: Iterable[tuple[str, str | None]]) -> int:
    """One event per (key, agent); returns how many. Agent events name the agent's status key;
    lock events the resource, as the lock tools' events do."""
    count = 0
    for key, agent in items:
        ctx.action(ns, action, key=key, agent=agent)
        count += 1
        if count % REPORT_CHUNK == 0:
            ctx.app.activity.flush_soon()
            await ctx.pause()
    return count
