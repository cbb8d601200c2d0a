"""The activity log: one event per tool call and per job action, in a capped stream per project.

Events never hold values, only what happened: time, agent, project, kind (``tool``, ``job`` or
``connection``), the tool, job or connection event, the key or resource, the outcome and the
duration. Connection events (``connection_opened``, ``connection_closed``) also carry the
peer's pid and uid as the kernel gave them (SO_PEERCRED) and the pid its preamble claimed, as
extra stream fields (:data:`EXTRA_FIELDS`) that readers of the eight others can ignore.
:meth:`ActivityLog.record` only queues (no I/O), and the flusher writes the queue every
``activity.flush_interval_s`` (or sooner, when a job reporting many events asks with
:meth:`ActivityLog.flush_soon`), so a tool call never waits for its own activity event and a
slow or dead backend slows no call. A flush is one Lua call per stream and :data:`APPEND_CHUNK`
events (``lua/activity_append.lua``): a pipeline of one XADD per event costs about three times
as much, nearly all of it in the client, and a heartbeat sweep can report tens of thousands of events.

When the backend is unreachable the events not yet written stay queued for the next flush; the
queue is bounded (the oldest events are dropped beyond it, and the drop is logged). Delivery is at
least once: a connection lost while a call is under way can write events that are then written
again. Events the backend *refuses* (e.g. ``_activity`` overwritten with a string through the raw
tools) are dropped and logged rather than retried, since retrying cannot succeed.

Flushes are serialised by a lock, so events reach a stream in the order they were recorded, and a
reader that flushes first (``activity_recent``) also waits for a flush already under way: it sees
every event recorded before it asked.

Key: ``_activity`` in each project namespace, a stream trimmed to about
``activity.stream_max_len`` entries (``XADD … MAXLEN ~``) whose TTL (``activity.stream_ttl_s``)
is refreshed by every write,
so the log of a project nobody works on any more goes away. ``coordinatord tail`` and
``activity_recent`` read it with XREVRANGE/XREAD from a last id: request/response only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field

from coordinatord import log_scrub
from coordinatord.clock import Clock, system_clock
from coordinatord.errors import BackendError, BackendUnavailableError
from coordinatord.keyspace import ACTIVITY_STREAM, Namespace
from coordinatord.services.shared import iso_timestamp, lua
from coordinatord.settings import ActivitySettings
from coordinatord.store import Store

log = structlog.get_logger("coordinatord.activity")

MAX_BUFFERED = 50_000
"""Events held while the backend is unreachable; older ones are dropped beyond this."""
READ_PAGE = 100
"""Smallest page when reading backwards: an agent filter may need to look past other agents."""
APPEND_CHUNK = 250
"""Events per append call: large enough that the per-call cost vanishes, small enough that the
server (which runs a script to the end before anything else) stalls other clients ~2 ms at most."""
EVENT_FIELDS = ("ts", "agent", "project", "kind", "name", "key", "outcome", "duration_ms")
"""The stream entry's fields, in the order ``lua/activity_append.lua`` writes them."""
EXTRA_FIELDS = ("peer_pid", "peer_uid", "claimed_pid")
"""Fields only connection events have (integers), written after the eight others."""
CONNECTION_KIND = "connection"

_APPEND = lua("activity_append")

_Entry = tuple[str, list[str]]
"""(stream key, the values of EVENT_FIELDS in order, the number of extra fields, their pairs)"""


def connection_facts(peer_pid: int | None, peer_uid: int | None, claimed_pid: int | None) -> dict[str, str]:
    """The extra fields of a connection event (those known)."""
    values = (peer_pid, peer_uid, claimed_pid)
    return {name: str(value) for name, value in zip(EXTRA_FIELDS, values, strict=True) if value is not None}


class ConnectionPeer(BaseModel):
    """Who connected, as the kernel says (pid, uid) and as the shim claims (claimed_pid)."""

    model_config = ConfigDict(frozen=True)

    peer_pid: int | None = Field(description="the connecting process, from the socket (SO_PEERCRED)")
    peer_uid: int | None = Field(description="its user id, from the socket")
    claimed_pid: int | None = Field(description="the pid its preamble claimed (anyone can write any)")


class ActivityEvent(BaseModel):
    """One event as ``activity_recent`` shows it."""

    model_config = ConfigDict(frozen=True)

    ts: str = Field(description="when it happened: ISO 8601, UTC, milliseconds")
    agent: str | None = Field(description="the calling agent, or the agent a job action concerned")
    project: str = Field(description="the project id")
    kind: str = Field(
        description="tool (a tool call), job (a scheduled job's action), connection (an editor "
        "connecting or leaving) or task (a task claimed, unclaimed or made ready)"
    )
    name: str = Field(
        description="the tool, the job, connection_opened / connection_closed, or task_claimed / "
        "task_unclaimed / task_ready"
    )
    key: str | None = Field(description="the key or resource it was about, when there was one")
    outcome: str = Field(
        description="for tools: ok, refused, backend_error or internal_error; "
        "for jobs: the action, e.g. agent_inactive, lock_reaped; for connections: ok, or "
        "pid_mismatch when the pid the shim claims is not the one the kernel reports"
    )
    duration_ms: float | None = Field(description="how long the tool call took; null for job actions")
    connection: ConnectionPeer | None = Field(
        default=None, description="for connection events: the process on the other end"
    )

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
            connection=(
                ConnectionPeer(**{name: event.get(name) for name in EXTRA_FIELDS})
                if event.get("kind") == CONNECTION_KIND
                else None
            ),
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
        self._wake = anyio.Event()
        self._append = store.script(_APPEND)

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
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one event (no I/O here: the flusher writes it); ``extra``: fields beyond the
        eight every event has (:data:`EXTRA_FIELDS`)."""
        if len(self._pending) == self._max_buffered:
            self._dropped += 1  # the deque's maxlen pushes the oldest out
        if log_scrub.active():
            # A call whose identifier holds a secret went ahead (secrets.policy = "warn"): the
            # stream shows it redacted, like the daemon's log.
            agent, key = agent and log_scrub.scrub(agent), key and log_scrub.scrub(key)
            extra = {name: log_scrub.scrub(value) for name, value in extra.items()} if extra else extra
        values = [
            f"{self._clock():.3f}",
            agent or "",
            ns.project_id,
            kind,
            name,
            key or "",
            outcome,
            "" if duration_ms is None else f"{duration_ms:.3f}",
            str(len(extra) if extra else 0),
        ]
        if extra:
            for name, value in extra.items():
                values += (name, value)
        self._pending.append((ns.key(ACTIVITY_STREAM), values))

    def flush_soon(self) -> None:
        """Have the flusher (:meth:`run`) write what is queued now rather than at its next tick.

        For producers of many events (the heartbeat sweep): their events are written while
        they go on, instead of piling up for one large flush, and they never wait for a write.
        """
        self._wake.set()

    async def run(self) -> None:
        """Flush every ``flush_interval_s``, or sooner when asked, until cancelled; a last flush
        on the way out."""
        try:
            while True:
                with anyio.move_on_after(self._settings.flush_interval_s):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self.flush()

    async def flush(self) -> int:
        """Write what is queued; returns how many events were written.

        Never raises for a backend failure: the events not written stay queued (unreachable) or
        are dropped (refused), and the failure is logged.
        """
        async with self._flush_lock:
            if self._dropped:
                log.warning("activity_events_dropped", count=self._dropped, reason="buffer full")
                self._dropped = 0
            if not self._pending:
                return 0
            batch = list(self._pending)
            self._pending.clear()
            written = 0
            settings = self._settings
            chunks = list(append_chunks(batch, APPEND_CHUNK))
            for index, (key, events) in enumerate(chunks):
                values = [value for event in events for value in event]
                try:
                    await self._append([key], [settings.stream_max_len, settings.stream_ttl_s, *values])
                except BackendUnavailableError as exc:
                    self._requeue(
                        [(stream, event) for stream, unwritten in chunks[index:] for event in unwritten]
                    )
                    log.warning("activity_flush_failed", error=str(exc), pending=len(self._pending))
                    return written
                except BackendError as exc:
                    log.error("activity_events_refused", error=str(exc), count=len(events), stream=key)
                    continue
                written += len(events)
            return written

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
        # Without a filter the first page is the answer: read no more than asked for.
        page_size = limit if agent is None else max(limit, READ_PAGE)
        # Read backwards in pages until enough events of the agent are found (or the stream ends).
        while len(wanted) < limit:
            page = await self._store.xrevrange(ns.key(ACTIVITY_STREAM), last, "-", page_size)
            for entry_id, fields in page:
                event = event_from_fields(entry_id, fields)
                if agent is None or event["agent"] == agent:
                    wanted.append(event)
                    if len(wanted) == limit:
                        break
            if len(page) < page_size:
                break
            last = "(" + page[-1][0]
        wanted.reverse()
        return wanted


def append_chunks(batch: Iterable[_Entry], size: int) -> Iterator[tuple[str, list[list[str]]]]:
    """The batch as append calls of at most ``size`` events, grouped by stream; each stream
    keeps its events in the order they were recorded."""
    by_stream: dict[str, list[list[str]]] = {}
    for key, values in batch:
        by_stream.setdefault(key, []).append(values)
    for key, events in by_stream.items():
        for start in range(0, len(events), size):
            yield key, events[start : start + size]


def event_from_fields(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A stream entry as an event dict (numbers parsed back, empty fields as ``None``)."""
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
    for name in EXTRA_FIELDS:
        if name in fields:  # only connection events have them
            try:
                event[name] = int(fields[name])
            except ValueError:
                event[name] = None
    return event
