"""What the daemon shares across connections (:class:`App`) and what one connection and one
call know (:class:`Peer`, :class:`CallContext`). No MCP and no Redis types here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from coordinatord.keyspace import DEFAULT_PROJECT_ID, KeyRules, Namespace, TtlPolicy, project_id_for
from coordinatord.services.kv import KvService
from coordinatord.settings import Settings
from coordinatord.store import Store

ANONYMOUS_AGENT = "anonymous"


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

    def __post_init__(self) -> None:
        project_id = project_id_for(self.project_root) if self.project_root else DEFAULT_PROJECT_ID
        self.namespace = Namespace(project_id)


@dataclass
class Services:
    kv: KvService


class InFlight:
    """Counts requests being handled, so that shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = anyio.Event()
        self._idle.set()

    def enter(self) -> None:
        if self.count == 0:
            self._idle = anyio.Event()
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class App:
    """The daemon's shared state: one store, one set of services, one registry."""

    def __init__(self, settings: Settings, store: Store) -> None:
        from coordinatord.tools import build_registry

        self.settings = settings
        self.store = store
        limits = settings.limits
        rules = KeyRules(limits.max_key_bytes, limits.max_value_bytes, limits.max_keys_per_call)
        ttl = TtlPolicy(settings.ttl.default_s, settings.ttl.max_s, settings.ttl.prefixes)
        self.services = Services(kv=KvService(store, rules, ttl, limits.keys_result_max))
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
