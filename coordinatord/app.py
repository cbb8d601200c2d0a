"""What the daemon shares across connections (:class:`App`) and what one connection and one
call know (:class:`Peer`, :class:`CallContext`). No MCP and no Redis types here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from coordinatord.clock import Clock, system_clock
from coordinatord.errors import NoProjectError
from coordinatord.keyspace import KeyRules, Namespace, TtlPolicy
from coordinatord.presence import Presence
from coordinatord.scope import ProjectScope
from coordinatord.services.activity import CONNECTION_KIND, ActivityLog, connection_facts
from coordinatord.services.agents import AgentService
from coordinatord.services.kv import KvService
from coordinatord.services.locks import LockService
from coordinatord.services.memory_bank import MemoryBankService
from coordinatord.services.projects import ProjectRegistry
from coordinatord.services.ratelimits import RateLimitService
from coordinatord.services.sessions import SessionService
from coordinatord.services.tasks import TaskService
from coordinatord.settings import Settings
from coordinatord.store import Store

log = structlog.get_logger("coordinatord.app")

ANONYMOUS_AGENT = "anonymous"
MAX_AGENT_NAME = 128


def agent_name(*candidates: str | None) -> str:
    """The first usable name: the shim's ``--agent`` (checked by the preamble), else the MCP
    client's ``clientInfo.name`` (anything a client sends: made printable and bounded, since it
    ends up in key names and lock holders), else ``anonymous``."""
    for candidate in candidates:
        if candidate:
            cleaned = "".join(ch if ch.isprintable() else "?" for ch in candidate.strip())[:MAX_AGENT_NAME]
            if cleaned:
                return cleaned
    return ANONYMOUS_AGENT


ControlHandler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass
class Peer:
    """One socket connection: who is on the other end and which project it works in.

    Two pids: ``peer_pid`` (and ``peer_uid``) come from the kernel (SO_PEERCRED) and can be
    trusted; ``claimed_pid`` is what the preamble says, which any process can set. ``pid`` is
    the trusted one whenever the kernel gave it.
    """

    conn_id: int
    agent: str | None
    scope: ProjectScope
    claimed_pid: int | None
    peer_pid: int | None
    peer_uid: int | None
    groups: frozenset[str]
    present_as: str | None = None  # the agent name this connection counts as present for

    @property
    def namespace(self) -> Namespace:
        """The project's namespace; an unscoped connection has none, and asking for it is the
        same refusal its tool calls get (so no code path can write for it by accident)."""
        namespace = self.scope.namespace
        if namespace is None:
            raise NoProjectError(self.scope.missing or "this connection has no project")
        return namespace

    @property
    def project_id(self) -> str | None:
        return self.scope.project_id

    @property
    def project_root(self) -> str | None:
        return self.scope.root

    @property
    def pid(self) -> int | None:
        return self.peer_pid if self.peer_pid is not None else self.claimed_pid

    @property
    def pid_mismatch(self) -> bool:
        """The preamble claims a pid the kernel does not confirm."""
        claimed, real = self.claimed_pid, self.peer_pid
        return claimed is not None and real is not None and claimed != real

    def describe(self) -> dict[str, Any]:
        """The connection as ``coordinatord status`` shows it."""
        return {
            "conn": self.conn_id,
            "agent": self.present_as or self.agent,
            "project": self.project_id,
            "root": self.project_root,
            "no_project": self.scope.missing,
            "cwd": self.scope.cwd,
            "pid": self.pid,
            "peer_pid": self.peer_pid,
            "peer_uid": self.peer_uid,
            "claimed_pid": self.claimed_pid,
        }


@dataclass
class Services:
    kv: KvService
    sessions: SessionService
    tasks: TaskService
    agents: AgentService
    locks: LockService
    ratelimits: RateLimitService
    memory_bank: MemoryBankService


class InFlight:
    """Counts requests being handled, so that shutdown can wait for them to finish and
    scheduled jobs can step aside for them (:meth:`coordinatord.jobs.JobContext.pause`).

    Its events are made only when someone waits: this runs twice per tool call.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_entered = 0.0
        """When the newest request was read (``time.monotonic()``, the event loop's clock)."""
        self._idle: anyio.Event | None = None
        self._answered: anyio.Event | None = None

    def enter(self) -> None:
        self.count += 1
        self.last_entered = time.monotonic()

    def leave(self) -> None:
        self.count -= 1
        if self._answered is not None:
            self._answered.set()
            self._answered = None
        if self.count == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        if self.count == 0:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        await self._idle.wait()

    async def wait_answered(self) -> None:
        """Return once the next request (any of those in flight) has been answered."""
        if self._answered is None:
            self._answered = anyio.Event()
        await self._answered.wait()


class App:
    """The daemon's shared state: one store, one set of services, one registry."""

    def __init__(self, settings: Settings, store: Store, clock: Clock = system_clock) -> None:
        from coordinatord.tools import build_registry

        self.settings = settings
        self.store = store
        self.presence = Presence()
        limits = settings.limits
        rules = KeyRules(limits.max_key_bytes, limits.max_value_bytes, limits.max_keys_per_call)
        ttl = TtlPolicy(settings.ttl.default_s, settings.ttl.max_s, settings.ttl.prefixes)
        self.services = Services(
            kv=KvService(store, rules, ttl, limits.keys_result_max),
            sessions=SessionService(store, settings.sessions, clock),
            tasks=TaskService(store, settings.tasks, clock),
            agents=AgentService(store, settings.agents, self.presence, clock),
            locks=LockService(store, settings.locks, clock),
            ratelimits=RateLimitService(store, settings.ratelimits),
            memory_bank=MemoryBankService(store, settings.memory_bank),
        )
        self.activity = ActivityLog(store, settings.activity, clock)
        self.projects = ProjectRegistry(store, settings.projects, clock)
        self.registry = build_registry()
        unknown = set(settings.tools.groups) - self.registry.groups
        if unknown:
            from coordinatord.errors import ConfigError

            raise ConfigError(
                f"tools.groups names unknown group(s) {sorted(unknown)}; "
                f"known: {sorted(self.registry.groups)}"
            )
        self.default_groups = frozenset(settings.tools.groups)
        self.in_flight = InFlight()
        # Operator commands served over the socket (see coordinatord.control), by name.
        self.control_handlers: dict[str, ControlHandler] = {}

    def mark_present(self, peer: Peer, agent: str) -> None:
        """The connection's agent counts as present (once known: preamble or first call); an
        unscoped connection is present in no project."""
        namespace = peer.scope.namespace
        if peer.present_as is None and namespace is not None:
            peer.present_as = agent
            self.presence.enter(namespace.project_id, agent)

    def connection_opened(self, peer: Peer) -> None:
        """Log the new connection with both pids, warn when they disagree, and record it in
        the project's activity (an unscoped connection writes nothing anywhere)."""
        scope = peer.scope
        fields: dict[str, Any] = {
            "conn": peer.conn_id,
            "agent": peer.agent,
            "project": scope.project_id,
            "root": scope.root,
            "pid": peer.pid,
            "peer_pid": peer.peer_pid,
            "peer_uid": peer.peer_uid,
            "claimed_pid": peer.claimed_pid,
        }
        if scope.namespace is None:
            fields.update(reason="no_project", cwd=scope.cwd)
        log.info("connection_opened", **fields)
        if peer.pid_mismatch:
            log.warning(
                "connection_pid_mismatch",
                conn=peer.conn_id,
                agent=peer.agent,
                project=scope.project_id,
                peer_pid=peer.peer_pid,
                claimed_pid=peer.claimed_pid,
                peer_uid=peer.peer_uid,
            )
        self._record_connection(peer, "connection_opened", peer.agent)
        if peer.agent:
            self.mark_present(peer, peer.agent)

    def connection_closed(self, peer: Peer) -> None:
        agent = peer.present_as or peer.agent
        if peer.present_as is not None:
            self.presence.leave(peer.namespace.project_id, peer.present_as)
            peer.present_as = None
        log.info("connection_closed", conn=peer.conn_id, agent=agent, project=peer.project_id)
        self._record_connection(peer, "connection_closed", agent)

    def _record_connection(self, peer: Peer, name: str, agent: str | None) -> None:
        namespace = peer.scope.namespace
        if namespace is None:
            return
        self.activity.record(
            namespace,
            kind=CONNECTION_KIND,
            name=name,
            agent=agent,
            outcome="pid_mismatch" if peer.pid_mismatch else "ok",
            extra=connection_facts(peer.peer_pid, peer.peer_uid, peer.claimed_pid),
        )


@dataclass
class CallContext:
    """One tool call: the services, the caller, and what to log about it."""

    app: App
    peer: Peer
    agent: str
    log_key: str | None = None

    @property
    def services(self) -> Services:
        return self.app.services

    @property
    def namespace(self) -> Namespace:
        return self.peer.namespace
