"""Which agents work on a project, what they are doing, and which files they have open.

Keys (inside the project namespace):
    ``agent:status:<agent>``  JSON in the seed's shape ``{agent, mode, capabilities,
                              currentTask, filesOpen, startedAt, lastHeartbeat}``
    ``_idx:agents``           zset agent → last heartbeat (ms); what ``agent_list`` reads

Activity and memory are two different clocks. An agent is *active* while its last heartbeat
is within ``agents.heartbeat_window_s`` (default 300 s, the seed's TTL) or while it has a
connection open to any daemon sharing the backend (each daemon keeps a lease record per
connection, :mod:`coordinatord.services.presence`, and this daemon also knows its own at once,
:class:`~coordinatord.presence.Presence`): an editor whose shim is connected is present whether
or not its agent remembers to heartbeat. The document and the
index entry, however, live ``agents.forget_after_s`` (default 1 h) after the last write rather
than the seed's 300 s, so that ``agent_list(include_inactive=true)`` can still say who was
here recently and what they were doing; expiry decides forgetting, never activity. "Now" comes
from the injected clock, so tests move time: the daemon's follows the backend's ``TIME``
(:class:`coordinatord.clock.BackendClock`), so that every daemon scores heartbeats and cuts
windows on one clock; connection records expire by the server's clock inside their script.

The calling agent is always the connection's identity: nobody can register, heartbeat or
unregister for another agent. A heartbeat without a prior register registers implicitly
(mode null, no capabilities), unlike the seed, which failed: an agent that lost its status to
expiry should not have to notice and start over.

Atomicity: every write is one Lua script that writes the document and its index entry
together; a heartbeat's merge (keep mode, capabilities and startedAt; replace what the call
gives) happens inside that script, so two connections of one agent cannot lose each other's
fields. ``agent_list`` reads the index (ZRANGEBYSCORE) and then all documents in one batched
MGET: no SCAN, and a stray ``agent:status:*`` key written by hand is never listed. Index
entries older than ``forget_after_s`` are pruned by the next write; an entry whose document
is gone is skipped.

The heartbeat sweep (:mod:`coordinatord.jobs.sweep`) keeps three more indexes, so that it
reports each change once and never misses one to an expiry:
    ``_idx:agents_active``    zset agent → last heartbeat (ms): every write adds the agent
    ``_idx:agents_inactive``  zset agent → last heartbeat (ms): moved here by the sweep once the
                              heartbeat is outside the window and no connection is open
    ``_idx:agents_gone``      zset agent → when the sweep found it gone (server ms): moved here
                              ``forget_after_s`` after the last heartbeat, kept until the locks
                              it took before that moment are released (LockService)
The active and inactive indexes live ``forget_after_s`` + :data:`SWEEP_INDEX_GRACE_S` (a
sweep must still see an agent whose document has expired); a write takes the agent out of
the inactive and gone indexes in the same script, so a sweep step, which re-checks the score
inside its own script, can never act on an agent that heartbeated since it was read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import (
    AGENTS_ACTIVE,
    AGENTS_GONE,
    AGENTS_INACTIVE,
    AGENTS_INDEX,
    PRESENCE_INDEX,
    Namespace,
    agent_status_key,
    presence_records_key,
)
from coordinatord.presence import Presence
from coordinatord.services.presence import record_host
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.shared import iso_timestamp, lua
from coordinatord.settings import AgentSettings
from coordinatord.store import Batch, Store
from coordinatord.store.interface import Reply, ScoredMembers

_WRITE = lua("agent_write")
_UNREGISTER = lua("agent_unregister")
_SWEEP_INACTIVE = lua("agent_sweep_inactive")
_SWEEP_GONE = lua("agent_sweep_gone")

MAX_CAPABILITIES = 64
MAX_FILES_OPEN = 500
MAX_LABEL_BYTES = 256  # a capability, a mode or a current task
MAX_PATH_BYTES = 4096  # one open file
_MGET_CHUNK = 500
SWEEP_INDEX_GRACE_S = 86_400
"""The sweep's active/inactive indexes outlive the documents by this much: a daemon that was
down (or a sweep that was disabled) for less than a day still reports who went away."""
GONE_REMEMBER_S = 86_400
"""A gone mark whose locks were never walked (no sweep or reap finished since) is dropped after
this long; by then every lease the agent held has ended (locks.max_ttl_s is at most an hour by
default, and a gone agent renews nothing)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AgentInfo(BaseModel):
    """One agent as ``agent_list`` and the agent tools show it."""

    model_config = ConfigDict(frozen=True)

    agent: str
    status: Literal["active", "inactive"]
    connected: bool  # has a connection open now, to any daemon sharing the backend
    hosts: list[str] = Field(default_factory=list)  # the hosts of those connections' daemons
    registered: bool  # has a status document (registered or heartbeated, not yet forgotten)
    last_heartbeat: str | None  # ISO 8601
    idle_s: int | None  # seconds since the last heartbeat
    started_at: str | None
    current_task: str | None
    files_open: list[str]
    capabilities: list[str]
    mode: str | None


class AgentList(BaseModel):
    model_config = ConfigDict(frozen=True)

    agents: list[AgentInfo]


class SweepBatch(BaseModel):
    """One step of the heartbeat sweep: the agents it changed, and where the next step starts."""

    model_config = ConfigDict(frozen=True)

    agents: list[str]
    next_offset: int | None  # None: no candidates left in this project


class AgentBrief(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent: str
    connected: bool
    idle_s: int | None  # seconds since the last heartbeat; None when it never heartbeated


class AgentSummary(BaseModel):
    """What ``coordinatord status`` shows of a project's agents: how many are active, and a few."""

    model_config = ConfigDict(frozen=True)

    active: int
    agents: list[AgentBrief]  # the most recent heartbeats first, then connected ones


class AgentOverview(BaseModel):
    """What ``coordinatord top`` shows of a project's agents: the remembered ones, a few in full."""

    model_config = ConfigDict(frozen=True)

    known: int  # agents remembered (heartbeat within forget_after_s) or connected
    active: int  # of those, active now (recent heartbeat or open connection)
    agents: list[AgentInfo]  # connected ones first, then the most recent heartbeats


class AgentService:
    def __init__(
        self,
        store: Store,
        settings: AgentSettings,
        presence: Presence,
        clock: Clock = system_clock,
        host: str | None = None,
        guard: SecretGuard | None = None,
    ) -> None:
        """``presence``: this daemon's connections; ``host``: this daemon's host id (shown for
        them); ``guard``: secrets.policy for what a status holds."""
        self._store = store
        self._guard = guard or SecretGuard()
        self._host = host
        self._settings = settings
        self._presence = presence
        self._clock = clock
        self._write_script = store.script(_WRITE)
        self._unregister_script = store.script(_UNREGISTER)
        self._sweep_inactive_script = store.script(_SWEEP_INACTIVE)
        self._sweep_gone_script = store.script(_SWEEP_GONE)

    async def register(
        self, ns: Namespace, agent: str, capabilities: list[str] | None = None, mode: str | None = None
    ) -> AgentInfo:
        """Start a fresh status: the given capabilities and mode, no current task, no open files."""
        caps = _check_list(
            self._guard.texts(capabilities or [], "capabilities"),
            "capabilities",
            MAX_CAPABILITIES,
            MAX_LABEL_BYTES,
        )
        if mode is not None:
            mode = self._guard.text(mode, "mode")
            _check_text(mode, "mode", MAX_LABEL_BYTES)
        fields = [
            "1",  # startedAt := now
            *("1", _json(mode)),
            *("1", _json(caps)),
            *("1", "null"),
            *("1", "[]"),
        ]
        return await self._write(ns, agent, fields)

    async def heartbeat(
        self,
        ns: Namespace,
        agent: str,
        current_task: str | None = None,
        files_open: list[str] | None = None,
    ) -> AgentInfo:
        """Say "still here"; ``current_task``/``files_open`` replace the stored ones when given.

        ``None`` keeps what is stored; an empty string clears the current task and an empty
        list the open files. Registers implicitly when the agent has no status.
        """
        task_field = ("0", "")
        if current_task is not None:
            if current_task:
                current_task = self._guard.text(current_task, "current_task")
                _check_text(current_task, "current_task", MAX_LABEL_BYTES)
            task_field = ("1", _json(current_task or None))
        files_field = ("0", "")
        if files_open is not None:
            files = _check_list(
                self._guard.texts(files_open, "files_open"), "files_open", MAX_FILES_OPEN, MAX_PATH_BYTES
            )
            files_field = ("1", _json(files))
        fields = ["0", "0", "", "0", "", *task_field, *files_field]
        return await self._write(ns, agent, fields)

    async def unregister(self, ns: Namespace, agent: str) -> AgentInfo:
        """Forget the agent's status now; what it was is returned. Unregistering twice is fine.

        The result's ``status`` can still be "active": a connected agent stays present.
        """
        _check_agent(agent)
        keys = [ns.key(agent_status_key(agent)), *ns.keys([AGENTS_INDEX, AGENTS_ACTIVE, AGENTS_INACTIVE])]
        raw = await self._unregister_script(keys, [agent])
        doc = _document(raw)
        connected = self._presence.is_connected(ns.project_id, agent)
        return _info(
            agent,
            doc,
            None,
            self._clock(),
            self._settings.heartbeat_window_s,
            connected,
            False,
            self._here(connected),
        )

    async def list_agents(self, ns: Namespace, include_inactive: bool = False) -> AgentList:
        """Agents active now (recent heartbeat or open connection on any daemon), sorted by
        name; with ``include_inactive``, also those whose status is still remembered."""
        now = self._clock()
        now_ms = int(now * 1000)
        horizon_s = self._settings.forget_after_s if include_inactive else self._settings.heartbeat_window_s
        first = Batch()
        beats_reply = first.zrange_by_score_with_scores(
            ns.key(AGENTS_INDEX), now_ms - horizon_s * 1000, "+inf"
        )
        live = _LivePresence.queue(first, ns)
        await self._store.run(first)
        beats = dict(beats_reply.value)
        here = self._presence.connected(ns.project_id)
        connected = here | live.agents()
        names = sorted(set(beats) | connected)
        # Connected agents whose heartbeat is older than the range read: their scores too.
        unscored = [name for name in names if name not in beats]
        keys = [ns.key(agent_status_key(name)) for name in names]
        batch = Batch()
        chunks = [batch.mget(keys[i : i + _MGET_CHUNK]) for i in range(0, len(keys), _MGET_CHUNK)]
        scores = batch.zmscore(ns.key(AGENTS_INDEX), unscored) if unscored else None
        records = live.queue_records(batch, ns, sorted(connected))
        await self._store.run(batch)
        if scores is not None:
            beats.update({n: v for n, v in zip(unscored, scores.value, strict=True) if v is not None})
        raws = [raw for chunk in chunks for raw in chunk.value]
        agents: list[AgentInfo] = []
        window = self._settings.heartbeat_window_s
        for name, raw in zip(names, raws, strict=True):
            doc = _document(raw)
            is_connected = name in connected
            if doc is None and not is_connected:
                continue  # an index entry whose document expired or was deleted
            hosts = live.hosts(records, name, self._host if name in here else None)
            info = _info(name, doc, beats.get(name), now, window, is_connected, doc is not None, hosts)
            if include_inactive or info.status == "active":
                agents.append(info)
        return AgentList(agents=agents)

    def _here(self, connected: bool) -> list[str]:
        return [self._host] if connected and self._host else []

    async def _write(self, ns: Namespace, agent: str, fields: list[str]) -> AgentInfo:
        _check_agent(agent)
        now = self._clock()
        now_ms = int(now * 1000)
        ttl_s = self._settings.forget_after_s
        sweep_ttl_s = self._sweep_ttl_s
        keys = [
            ns.key(agent_status_key(agent)),
            *ns.keys([AGENTS_INDEX, AGENTS_ACTIVE, AGENTS_INACTIVE, AGENTS_GONE]),
        ]
        args: list[str | int] = [agent, iso_timestamp(now), now_ms, ttl_s, now_ms - ttl_s * 1000, *fields]
        args += [sweep_ttl_s, now_ms - sweep_ttl_s * 1000]
        raw = await self._write_script(keys, args)
        # The caller's own connection: this daemon knows it without a read.
        connected = self._presence.is_connected(ns.project_id, agent)
        window = self._settings.heartbeat_window_s
        return _info(agent, _document(raw), now_ms, now, window, connected, True, self._here(connected))

    # --- The heartbeat sweep and the status summary ----------------------------------------

    async def sweep_inactive(self, ns: Namespace, offset: int = 0, limit: int = 1_000) -> SweepBatch:
        """Move up to ``limit`` agents whose heartbeat is outside the window, and who are not
        present (no live connection record on any daemon), from the active index to the
        inactive one.

        ``offset`` skips the present agents earlier steps kept; pass each step's
        ``next_offset`` to the next until it is ``None``.
        """
        cutoff_ms = int(self._clock() * 1000) - self._settings.heartbeat_window_s * 1000
        # Presence is decided in the script from every daemon's records; this daemon's own
        # connections whose records are not written yet are named to it.
        unconfirmed = sorted(self._presence.unconfirmed(ns.project_id))
        reply = await self._sweep_inactive_script(
            ns.keys([AGENTS_ACTIVE, AGENTS_INACTIVE, PRESENCE_INDEX]),
            [f"({cutoff_ms}", offset, limit, self._sweep_ttl_s, *unconfirmed],
        )
        read, kept, agents = int(reply[0]), int(reply[1]), [str(name) for name in reply[2:]]
        return SweepBatch(agents=agents, next_offset=offset + kept if read >= limit else None)

    async def sweep_gone(self, ns: Namespace, offset: int = 0, limit: int = 1_000) -> SweepBatch:
        """Mark up to ``limit`` inactive agents gone whose last heartbeat is older than
        ``forget_after_s`` and who are not present (no live connection record on any daemon):
        their status document and index entries are removed, and the mark (server time) lets
        the lock clean-up release the locks they took before it. Paged like :meth:`sweep_inactive`.
        """
        cutoff_ms = int(self._clock() * 1000) - self._settings.forget_after_s * 1000
        names = await self._store.zrange_by_score(
            ns.key(AGENTS_INACTIVE), "-inf", f"({cutoff_ms}", offset=offset, count=limit
        )
        unconfirmed = self._presence.unconfirmed(ns.project_id)
        candidates = [name for name in names if name not in unconfirmed]
        agents: list[str] = []
        present = 0
        if candidates:
            keys = [
                *ns.keys([AGENTS_INACTIVE, AGENTS_GONE, AGENTS_INDEX, AGENTS_ACTIVE, PRESENCE_INDEX]),
                *(ns.key(agent_status_key(name)) for name in candidates),
            ]
            reply = await self._sweep_gone_script(keys, [cutoff_ms, GONE_REMEMBER_S, *candidates])
            present, agents = int(reply[0]), [str(name) for name in reply[1:]]
        kept = len(names) - len(candidates) + present
        return SweepBatch(agents=agents, next_offset=offset + kept if len(names) >= limit else None)

    async def summary(self, ns: Namespace, limit: int = 20) -> AgentSummary:
        """How many agents are active (recent heartbeat or open connection), and up to ``limit``."""
        now = self._clock()
        cutoff_ms = int(now * 1000) - self._settings.heartbeat_window_s * 1000
        view = await self._index_view(ns, cutoff_ms, limit, [cutoff_ms])
        scores: dict[str, float | None] = {**view.connected_beats, **view.newest}
        stale_connected = sum(1 for beat in view.connected_beats.values() if beat is None or beat < cutoff_ms)
        order = [*view.newest, *(name for name in view.connected if name not in view.newest)][:limit]
        briefs = [
            AgentBrief(agent=name, connected=name in view.connected, idle_s=_idle_s(now, scores[name]))
            for name in order
        ]
        return AgentSummary(active=view.counts[0] + stale_connected, agents=briefs)

    async def overview(self, ns: Namespace, limit: int = 10) -> AgentOverview:
        """Up to ``limit`` agents, active or still remembered, with their documents, and how many
        there are: two round trips whatever the project's size (the index, then the documents).
        Read only."""
        now = self._clock()
        now_ms = int(now * 1000)
        window = self._settings.heartbeat_window_s
        cutoff_ms = now_ms - window * 1000
        oldest_ms = now_ms - self._settings.forget_after_s * 1000
        view = await self._index_view(ns, oldest_ms, limit, [oldest_ms, cutoff_ms])
        beats: dict[str, float | None] = {**view.connected_beats, **view.newest}
        known, active = view.counts
        for beat in view.connected_beats.values():
            if beat is None or beat < oldest_ms:
                known += 1  # connected, but not counted among the remembered
            if beat is None or beat < cutoff_ms:
                active += 1
        connected = view.connected
        order = [*connected, *(name for name in view.newest if name not in connected)][:limit]
        if not order:
            return AgentOverview(known=known, active=active, agents=[])
        batch = Batch()
        docs = batch.mget(ns.keys(agent_status_key(name) for name in order))
        live = _LivePresence(batch.time(), None)
        records = live.queue_records(batch, ns, [name for name in order if name in connected])
        await self._store.run(batch)
        here = self._presence.connected(ns.project_id)
        agents = []
        for name, raw in zip(order, docs.value, strict=True):
            hosts = live.hosts(records, name, self._host if name in here else None)
            registered = raw is not None
            info = _info(
                name, _document(raw), beats.get(name), now, window, name in connected, registered, hosts
            )
            agents.append(info)
        return AgentOverview(known=known, active=active, agents=agents)

    async def _index_view(
        self, ns: Namespace, since_ms: int, limit: int, counts_since: list[int]
    ) -> _IndexView:
        """One round trip over the agents index: how many beat since each of ``counts_since``,
        the ``limit`` most recent since ``since_ms`` (newest first), and the last beat of every
        agent with a connection open now (None: it never beat)."""
        index = ns.key(AGENTS_INDEX)
        connected = sorted(self._presence.connected(ns.project_id) | await self._live_agents(ns))
        batch = Batch()
        counts = [batch.zcount(index, moment, "+inf") for moment in counts_since]
        newest = batch.zrange_by_score_with_scores(index, since_ms, "+inf", rev=True, count=limit)
        beats = batch.zmscore(index, connected) if connected else None
        await self._store.run(batch)
        connected_beats = dict(zip(connected, beats.value, strict=True)) if beats is not None else {}
        return _IndexView([count.value for count in counts], dict(newest.value), connected, connected_beats)

    async def _live_agents(self, ns: Namespace) -> set[str]:
        """The agents with a live connection record on any daemon (one round trip)."""
        batch = Batch()
        live = _LivePresence.queue(batch, ns)
        await self._store.run(batch)
        return live.agents()

    @property
    def _sweep_ttl_s(self) -> int:
        return self._settings.forget_after_s + SWEEP_INDEX_GRACE_S


class _LivePresence:
    """The presence index read in a batch with the server's clock (records expire by it)."""

    def __init__(self, clock: Reply[tuple[int, int]], index: Reply[ScoredMembers] | None) -> None:
        self._clock = clock
        self._index = index

    @classmethod
    def queue(cls, batch: Batch, ns: Namespace) -> _LivePresence:
        # All entries: expired ones are few (every write and every sweep drops them).
        return cls(batch.time(), batch.zrange_with_scores(ns.key(PRESENCE_INDEX), 0, -1))

    @property
    def now_ms(self) -> int:
        seconds, micros = self._clock.value
        return seconds * 1000 + micros // 1000

    def agents(self) -> set[str]:
        now_ms = self.now_ms
        return {agent for agent, until in (self._index.value if self._index else []) if until > now_ms}

    def queue_records(
        self, batch: Batch, ns: Namespace, agents: list[str]
    ) -> dict[str, Reply[ScoredMembers]]:
        return {name: batch.zrange_with_scores(ns.key(presence_records_key(name)), 0, -1) for name in agents}

    def hosts(self, records: dict[str, Reply[ScoredMembers]], agent: str, here: str | None) -> list[str]:
        """The hosts of the agent's live records (and ``here``, this daemon's, for its own)."""
        reply = records.get(agent)
        now_ms = self.now_ms
        found = {record_host(member) for member, until in (reply.value if reply else []) if until > now_ms}
        if here:
            found.add(here)
        return sorted(host for host in found if host)


@dataclass(frozen=True)
class _IndexView:
    counts: list[int]
    newest: dict[str, float]  # insertion order: newest first
    connected: list[str]
    connected_beats: dict[str, float | None]


def _info(
    agent: str,
    doc: dict[str, Any] | None,
    beat_ms: float | None,
    now: float,
    window_s: int,
    connected: bool,
    registered: bool,
    hosts: list[str] | None = None,
) -> AgentInfo:
    doc = doc or {}
    idle_s = None if beat_ms is None else max(0, int(now - beat_ms / 1000))
    recent = beat_ms is not None and now * 1000 - beat_ms <= window_s * 1000
    return AgentInfo(
        agent=agent,
        status="active" if recent or connected else "inactive",
        connected=connected,
        hosts=hosts or [],
        registered=registered,
        last_heartbeat=_text(doc.get("lastHeartbeat")),
        idle_s=idle_s,
        started_at=_text(doc.get("startedAt")),
        current_task=_text(doc.get("currentTask")),
        files_open=_texts(doc.get("filesOpen")),
        capabilities=_texts(doc.get("capabilities")),
        mode=_text(doc.get("mode")),
    )


def _idle_s(now: float, beat_ms: float | None) -> int | None:
    return None if beat_ms is None else max(0, int(now - beat_ms / 1000))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _document(raw: Any) -> dict[str, Any] | None:
    """A status document, or None when absent; a hand-written non-object reads as empty."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _check_agent(agent: str) -> None:
    # The connection's identity; an empty one would name the key "agent:status:".
    if not agent:
        raise InvalidArgumentError("this connection has no agent name; start the shim with --agent NAME")


def _check_text(value: str, argument: str, max_bytes: int) -> str:
    if _CONTROL.search(value):
        raise InvalidArgumentError(f"argument {argument!r} must not contain control characters")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise LimitExceededError(f"argument {argument!r} is {size} bytes; the limit is {max_bytes}")
    return value


def _check_list(values: list[str], argument: str, max_items: int, max_bytes: int) -> list[str]:
    if len(values) > max_items:
        raise LimitExceededError(f"argument {argument!r} has {len(values)} items; the limit is {max_items}")
    for index, value in enumerate(values):
        if not value:
            raise InvalidArgumentError(f"argument '{argument}[{index}]' must not be empty")
        _check_text(value, f"{argument}[{index}]", max_bytes)
    return values
