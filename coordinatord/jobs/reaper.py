"""The stale-lock reaper: keeps the locks index, and so ``lock_list``, true.

Correctness never depends on it: a lock is its key, and the key's lease ends by itself. For
each known project the reaper walks the locks index in steps of ``jobs.batch_size`` (yielding
between steps) and, inside one script per step (:meth:`LockService.reap`):

- drops entries whose lock no longer exists (lease ended, or deleted by hand): ``lock_reaped``;
- releases locks whose holder the heartbeat sweep found gone, if taken before that finding
  (what a sweep cut short left behind; gone agents stay on the gone index until a sweep or a
  reap has walked all locks for them): ``lock_reaped``;
- re-scores entries whose lock still has a lease the index had already given up on.

In the usual batch (every lock alive, no gone agent waiting) that is one EXISTS over the batch.

The safe rule for "holder gone": only an agent that *had* a status, which the sweep then saw
expire (``agents.forget_after_s`` without a heartbeat or a connection), is gone. A holder that
never registered may legitimately hold a lock (locks need no registration): its locks are left
to their lease, whatever the agents index says about it.
"""

from __future__ import annotations

from coordinatord.jobs import JobContext
from coordinatord.jobs.sweep import release_holdings_of_gone, report


async def run(ctx: JobContext) -> dict[str, int]:
    locks = ctx.app.services.locks
    batch = ctx.app.settings.jobs.batch_size
    counts = {"projects": 0, "reaped": 0, "reindexed": 0}
    for project in await ctx.known_projects():
        ns = project.namespace
        counts["projects"] += 1
        gone = await locks.gone_holders(ns)
        offset: int | None = 0
        while offset is not None:
            step = await locks.reap(ns, offset, batch, gone)
            reaped = ((c.resource, c.holder) for c in step.actions if c.action != "reindexed")
            counts["reaped"] += await report(ctx, ns, "lock_reaped", reaped)
            counts["reindexed"] += sum(1 for c in step.actions if c.action == "reindexed")
            offset = step.next_offset
            await ctx.pause()
        # The gone index is also how their reservations and task claims are found: release
        # those before emptying it.
        await release_holdings_of_gone(ctx, ns, sorted(gone))
        await locks.forget_gone(ns, gone)
    return counts
