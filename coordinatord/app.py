"""What the daemon shares across connections (:class:`App`) and what one connection and one
call know (:class:`Peer`, :class:`CallContext`). No MCP and no Redis types here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from coordinatord.clock import Clock, system_clock
from coordinatord.keyspace import DEFAULT_PROJECT_ID, KeyRules, Namespace, TtlPolicy, project_id_for
from coordinatord.presence import Presence
from coordinatord.services.activity import ActivityLog
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
    """One socket connection: who is on the other end and which project it works in."""

    conn_id: int
    agent: str | None
    project_root: str | None
    shim_pid: int | None
    peer_pid: int | None
    peer_uid: int | None
    groups: frozenset[str]
    namespace: Namespace = field(init=False)
    present_as: str | None = None  # the agent name this connection counts as present for

    def __post_init__(self) -> None:
        project_id = project_id_for(self.project_root) if self.project_root else DEFAULT_PROJECT_ID
        self.namespace = Namespace(project_id)


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
        """The connection's agent counts as present (once known: preamble or first call)."""
        if peer.present_as is None:
            peer.present_as = agent
            self.presence.enter(peer.namespace.project_id, agent)

    def connection_closed(self, peer: Peer) -> None:
        if peer.present_as is not None:
            self.presence.leave(peer.namespace.project_id, peer.present_as)
            peer.present_as = None


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
