"""The activity log: one event per tool call and per job action, in a capped stream per project.

Events never hold values, only what happened: time, agent, project, kind (``tool`` or ``job``),
the tool or job, the key or resource, the outcome and the duration. They are buffered in memory
and written in batches (one pipelined round trip per ``activity.flush_interval_s``), so a tool
call never waits for its own activity event. When the backend is down the buffer is bounded:
the oldest events are dropped and the drop is logged, calls go on.

Key: ``_activity`` in each project namespace, a stream trimmed to about
``activity.stream_max_len`` entries (``XADD … MAXLEN ~``). ``coordinatord tail`` and
``activity_recent`` read it with XRANGE/XREVRANGE/XREAD from a last id: request/response only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import structlog

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import BackendError
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace
from coordinatord.settings import ActivitySettings
from coordinatord.store import Store

log = structlog.get_logger("coordinatord.activity")

MAX_BUFFERED = 50_000
"""Events held while the backend is unreachable; older ones are dropped beyond this."""
EVENT_FIELDS = ("ts", "agent", "project", "kind", "name", "key", "outcome", "duration_ms")


class ActivityLog:
    def __init__(self, store: Store, settings: ActivitySettings, clock: Clock = system_clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._pending: deque[tuple[str, list[str]]] = deque(maxlen=MAX_BUFFERED)
        self._dropped = 0

    def record(
        self,
        ns: Namespace,
        *,
        kind: str,
        name: str,
        agent: str | None = None,
        key: str | None = None,
        outcome: str = "ok",
        duration_ms: float | None = None,
    ) -> None:
        """Queue one event (no I/O here: the flusher writes it)."""
        if len(self._pending) == MAX_BUFFERED:
            self._dropped += 1
        fields = [
            "ts", f"{self._clock():.3f}",
            "agent", agent or "",
            "project", ns.project_id,
            "kind", kind,
            "name", name,
            "key", key or "",
            "outcome", outcome,
            "duration_ms", "" if duration_ms is None else f"{duration_ms:.3f}",
        ]  # fmt: skip
        self._pending.append((ns.key(ACTIVITY_STREAM), fields))

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` until cancelled; a last flush on the way out."""
        try:
            while True:
                await anyio.sleep(self._settings.flush_interval_s)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self.flush()

    async def flush(self) -> int:
        """Write what is queued in one round trip; returns how many events were written."""
        if self._dropped:
            log.warning("activity_events_dropped", count=self._dropped, reason="backend unreachable")
            self._dropped = 0
        if not self._pending:
            return 0
        batch = list(self._pending)
        self._pending.clear()
        maxlen = self._settings.stream_max_len
        commands: list[list[str | int | float]] = [
            ["XADD", key, "MAXLEN", "~", maxlen, "*", *fields] for key, fields in batch
        ]
        try:
            await self._store.batch(commands)
        except BackendError as exc:
            # Keep them for the next try, newest first out when the buffer is full.
            self._pending.extendleft(reversed(batch))
            log.warning("activity_flush_failed", error=str(exc), pending=len(self._pending))
            return 0
        return len(batch)

    async def recent(self, ns: Namespace, limit: int = 50, agent: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events of a project (oldest first), optionally of one agent."""
        wanted: list[dict[str, Any]] = []
        last = "+"
        # Read backwards in pages until enough events of the agent are found (or the stream ends).
        while len(wanted) < limit:
            page: list[Any] = await self._store.execute(
                "XREVRANGE", ns.key(ACTIVITY_STREAM), last, "-", "COUNT", max(limit, 100)
            )
            if not page:
                break
            for entry_id, raw in page:
                event = event_from_fields(entry_id, raw)
                if agent is None or event["agent"] == agent:
                    wanted.append(event)
                    if len(wanted) == limit:
                        break
            last = "(" + str(page[-1][0])
        wanted.reverse()
        return wanted


def event_from_fields(entry_id: str, raw: list[str] | dict[str, str]) -> dict[str, Any]:
    """A stream entry as an event dict (numbers parsed back)."""
    fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
    event: dict[str, Any] = {"id": entry_id}
    for name in EVENT_FIELDS:
        value = fields.get(name, "")
        if name in ("ts", "duration_ms"):
            event[name] = float(value) if value else None
        else:
            event[name] = value or None
    return event
