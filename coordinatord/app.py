"""What the daemon shares across connections, jobs and control commands (:class:`App`): the
store, the services, the tool registry (built by the daemon and handed in) and the connections'
lifecycle. What one connection and one call know is :mod:`coordinatord.context`, below the
tools. No MCP, no server and no Redis types here.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import structlog

from coordinatord.clock import BackendClock, Clock, system_clock
from coordinatord.context import Peer, Services
from coordinatord.errors import ConfigError
from coordinatord.keyspace import KeyRules, TtlPolicy
from coordinatord.presence import Presence
from coordinatord.project_reads import ProjectReads
from coordinatord.services.activity import CONNECTION_KIND, ActivityLog, connection_facts
from coordinatord.services.agents import SWEEP_INDEX_GRACE_S, AgentService
from coordinatord.services.files import FileService
from coordinatord.services.kv import KvService
from coordinatord.services.locks import LockService
from coordinatord.services.memory_bank import MemoryBankService
from coordinatord.services.messages import MessageService
from coordinatord.services.presence import PresenceLeases
from coordinatord.services.projects import ProjectRegistry
from coordinatord.services.ratelimits import RateLimitService
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.sessions import SessionService
from coordinatord.services.tasks import TaskService
from coordinatord.settings import Settings
from coordinatord.store import Store
from coordinatord.tool_groups import PROFILES, selection
from coordinatord.tools.registry import ToolRegistry

log = structlog.get_logger("coordinatord.app")


class App:
    """The daemon's shared state: one store, one set of services, one registry."""

    def __init__(
        self, settings: Settings, store: Store, clock: Clock = system_clock, *, registry: ToolRegistry
    ) -> None:
        """``registry``: the tools (:func:`coordinatord.tools.build_registry`), built by the daemon
        and handed in, so that the app (which the tools' context is kept apart from) never imports
        the tools' modules. ``clock``: "now" for every service; the daemon's is a
        :class:`~coordinatord.clock.BackendClock` (the backend's time), tests give a fake one."""
        self.settings = settings
        self.store = store
        self.clock = clock
        # The backend-anchored clock, when that is the clock: jobs refresh it, status shows its skew.
        self.backend_clock = clock if isinstance(clock, BackendClock) else None
        self.host = settings.daemon.host_id
        # Names this process among all daemons sharing the backend: leader leases and presence
        # records carry it (the host id first, so that a reader sees where it runs).
        self.daemon_id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.presence = Presence()
        self.presence_leases = PresenceLeases(
            store, self.presence, settings.presence, self.daemon_id, self.host
        )
        limits = settings.limits
        rules = KeyRules(limits.max_key_bytes, limits.max_value_bytes, limits.max_keys_per_call)
        ttl = TtlPolicy(settings.ttl.default_s, settings.ttl.max_s, settings.ttl.prefixes)
        # One detector, compiled once, for every write path and every call's identifiers.
        guard = self.secret_guard = SecretGuard(settings.secrets)
        # One runner for every read of a project's files: one per-project bound for them all.
        self.project_reads = ProjectReads(settings.project_files)
        self.services = Services(
            kv=KvService(store, rules, ttl, limits.keys_result_max, guard),
            sessions=SessionService(
                store, settings.sessions, clock, host=self.host, guard=guard, reads=self.project_reads
            ),
            tasks=TaskService(
                store,
                settings.tasks,
                clock,
                # The heartbeat sweep's active index, when a claim creates it, lives as agent writes make it.
                sweep_index_ttl_s=settings.agents.forget_after_s + SWEEP_INDEX_GRACE_S,
                guard=guard,
            ),
            agents=AgentService(store, settings.agents, self.presence, clock, host=self.host, guard=guard),
            locks=LockService(store, settings.locks, clock),
            files=FileService(store, settings.files, guard),
            ratelimits=RateLimitService(store, settings.ratelimits),
            memory_bank=MemoryBankService(store, settings.memory_bank, clock, reads=self.project_reads),
            messages=MessageService(store, settings.messages, guard),
        )
        self.activity = ActivityLog(store, settings.activity, clock)
        self.projects = ProjectRegistry(
            store, settings.projects, clock, host=self.host, reads=self.project_reads
        )
        self.registry = registry
        unknown = set(settings.tools.groups) - self.registry.groups - set(PROFILES)
        if unknown:
            raise ConfigError(
                f"tools.groups names unknown group(s) {sorted(unknown)}; "
                f"known: {sorted(self.registry.groups)}; profiles: {sorted(PROFILES)}"
            )
        self.default_groups = selection(settings.tools.groups)

    def mark_present(self, peer: Peer, agent: str) -> None:
        """The connection's agent counts as present (once known: preamble or first call); an
        unscoped connection is present in no project."""
        namespace = peer.scope.namespace
        if peer.present_as is None and namespace is not None:
            peer.present_as = agent
            self.presence.enter(namespace.project_id, agent, peer.conn_id, peer.pid)

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
            self.presence.leave(peer.namespace.project_id, peer.present_as, peer.conn_id)
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
