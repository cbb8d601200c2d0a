"""The activity log: one event per tool call and per job action, in a capped stream per project.

Events never hold values, only what happened: time, agent, project, kind (``tool`` or ``job``),
the tool or job, the key or resource, the outcome and the duration. :meth:`ActivityLog.record`
only queues (no I/O), and the flusher writes the queue in one pipelined round trip every
``activity.flush_interval_s``, so a tool call never waits for its own activity event and a slow
or dead backend slows no call.

When the backend is unreachable the events stay queued for the next flush; the queue is bounded
(the oldest events are dropped beyond it, and the drop is logged). Delivery is at least once: a
connection lost in the middle of a pipeline can write part of a batch that is then written again.
A batch the backend *refuses* (e.g. ``_activity`` overwritten with a string through the raw tools)
is dropped and logged rather than retried, since retrying cannot succeed and the rest of the
pipeline did run.

Flushes are serialised by a lock, so events reach a stream in the order they were recorded, and a
reader that flushes first (``activity_recent``) also waits for a flush already under way: it sees
every event recorded before it asked.

Key: ``_activity`` in each project namespace, a stream trimmed to about
``activity.stream_max_len`` entries (``XADD … MAXLEN ~``) whose TTL is refreshed by every write,
so the log of a project nobody works on any more goes away. ``coordinatord tail`` and
``activity_recent`` read it with XREVRANGE/XREAD from a last id: request/response only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import BackendError, BackendUnavailableError
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace
from coordinatord.settings import ActivitySettings
from coordinatord.store import Store

log = structlog.get_logger("coordinatord.activity")

MAX_BUFFERED = 50_000
"""Events held while the backend is unreachable; older ones are dropped beyond this."""
STREAM_TTL_S = 7 * 86_400
"""A project's activity stream lives this long after its last event (no setting yet)."""
READ_PAGE = 100
"""Smallest page when reading backwards: an agent filter may need to look past other agents."""
EVENT_FIELDS = ("ts", "agent", "project", "kind", "name", "key", "outcome", "duration_ms")

_Entry = tuple[str, list[str]]  # (stream key, flat field list)


class ActivityEvent(BaseModel):
    """One event as ``activity_recent`` shows it."""

    model_config = ConfigDict(frozen=True)

    ts: str = Field(description="when it happened: ISO 8601, UTC, milliseconds")
    agent: str | None = Field(description="the calling agent, or the agent a job action concerned")
    project: str = Field(description="the project id")
    kind: str = Field(description="tool (a tool call) or job (a scheduled job's action)")
    name: str = Field(description="the tool or job")
    key: str | None = Field(description="the key or resource it was about, when there was one")
    outcome: str = Field(
        description="for tools: ok, refused, backend_error or internal_error; "
        "for jobs: the action, e.g. agent_inactive, lock_reaped"
    )
    duration_ms: float | None = Field(description="how long the tool call took; null for job actions")

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ActivityEvent:
        ts = event.get("ts")
        return cls(
            ts=iso_timestamp(ts) if isinstance(ts, float) else "",
            agent=event.get("agent"),
            project=event.get("project") or "",
            kind=event.get("kind") or "",
            name=event.get("name") or "",
            key=event.get("key"),
            outcome=event.get("outcome") or "",
            duration_ms=event.get("duration_ms"),
        )


class ActivityRecent(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: list[ActivityEvent] = Field(description="oldest first")


class ActivityLog:
    def __init__(
        self,
        store: Store,
        settings: ActivitySettings,
        clock: Clock = system_clock,
        *,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._max_buffered = max_buffered
        self._pending: deque[_Entry] = deque(maxlen=max_buffered)
        self._dropped = 0
        self._flush_lock = anyio.Lock()

    @property
    def pending(self) -> int:
        """Events recorded and not yet written."""
        return len(self._pending)

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
        if len(self._pending) == self._max_buffered:
            self._dropped += 1  # the deque's maxlen pushes the oldest out
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
        """Write what is queued in one round trip; returns how many events were written.

        Never raises for a backend failure: the events stay queued (unreachable) or are dropped
        (refused), and the failure is logged.
        """
        async with self._flush_lock:
            if self._dropped:
                log.warning("activity_events_dropped", count=self._dropped, reason="buffer full")
                self._dropped = 0
            if not self._pending:
                return 0
            batch = list(self._pending)
            self._pending.clear()
            try:
                await self._store.batch(flush_commands(batch, self._settings.stream_max_len))
            except BackendUnavailableError as exc:
                self._requeue(batch)
                log.warning("activity_flush_failed", error=str(exc), pending=len(self._pending))
                return 0
            except BackendError as exc:
                log.error("activity_events_refused", error=str(exc), count=len(batch))
                return 0
            return len(batch)

    def _requeue(self, batch: list[_Entry]) -> None:
        """Put a failed batch back before what was recorded meanwhile, dropping the oldest."""
        newer = list(self._pending)
        kept = (batch + newer)[-self._max_buffered :]
        self._dropped += len(batch) + len(newer) - len(kept)
        self._pending.clear()
        self._pending.extend(kept)

    async def recent(self, ns: Namespace, limit: int = 50, agent: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events of a project (oldest first), optionally of one agent."""
        wanted: list[dict[str, Any]] = []
        last = "+"
        page_size = max(limit, READ_PAGE)
        # Read backwards in pages until enough events of the agent are found (or the stream ends).
        while len(wanted) < limit:
            page: list[Any] = await self._store.execute(
                "XREVRANGE", ns.key(ACTIVITY_STREAM), last, "-", "COUNT", page_size
            )
            for entry_id, raw in page:
                event = event_from_fields(entry_id, raw)
                if agent is None or event["agent"] == agent:
                    wanted.append(event)
                    if len(wanted) == limit:
                        break
            if len(page) < page_size:
                break
            last = "(" + str(page[-1][0])
        wanted.reverse()
        return wanted


def flush_commands(batch: Iterable[_Entry], max_len: int) -> list[list[str | int | float]]:
    """The pipeline for one flush: an XADD per event, then one EXPIRE per stream written."""
    commands: list[list[str | int | float]] = []
    streams: dict[str, None] = {}
    for key, fields in batch:
        commands.append(["XADD", key, "MAXLEN", "~", max_len, "*", *fields])
        streams[key] = None
    commands.extend(["EXPIRE", key, STREAM_TTL_S] for key in streams)
    return commands


def event_from_fields(entry_id: str, raw: list[str] | dict[str, str]) -> dict[str, Any]:
    """A stream entry as an event dict (numbers parsed back, empty fields as ``None``)."""
    fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
    event: dict[str, Any] = {"id": entry_id}
    for name in EVENT_FIELDS:
        value = fields.get(name, "")
        if name in ("ts", "duration_ms"):
            try:
                event[name] = float(value) if value else None
            except ValueError:
                event[name] = None
        else:
            event[name] = value or None
    return event


def iso_timestamp(seconds: float) -> str:
    """UTC, millisecond precision, ``Z`` suffix (as the other tools show times)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
