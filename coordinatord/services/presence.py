"""Presence across daemons: each daemon keeps a lease record in Redis for each of its open
connections that has an agent and a project, so that every daemon sharing the backend (its
heartbeat sweep, ``agent_list``) sees who is connected anywhere.

Keys (inside the project namespace, names from :mod:`coordinatord.keyspace`):

- ``_idx:presence_of:<agent>`` — zset: one member per open connection of the agent, on any
  daemon, a compact JSON ``{"daemon", "conn", "host", "pid"}`` (the same bytes every renewal),
  scored by its expiry (server ms);
- ``_idx:presence`` — zset: agent → the expiry of its latest record. The sweep's scripts
  read it (one ZSCORE per candidate: cheap whatever the number of connections).

Every write is one script per project (``presence_write.lua``), which computes expiries from
the server's clock (every daemon and every sweep use one clock, whatever the hosts' clocks
say), brings the agents' index entries to their latest record and drops what expired. The
records of a connection are added when it starts counting as present, renewed every
``presence.renew_s`` (at most half of ``presence.ttl_s``, so one missed renewal expires
nothing), and removed when it closes; a daemon that dies without removing them (SIGKILL, a
lost host) leaves records that simply expire ``presence.ttl_s`` later, and every key involved
expires with its latest record. A tick's writes are grouped per project into scripts of at most
:data:`OPS_PER_SCRIPT` records, run concurrently, so a renewal costs one round trip whatever
the number of projects. Renewals are every daemon's own (no leader): a daemon vouches for its
own connections only.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence

import anyio
import structlog

from coordinatord.errors import BackendError
from coordinatord.keyspace import PRESENCE_INDEX, Namespace, presence_records_key
from coordinatord.presence import Connection, Presence
from coordinatord.services.shared import lua
from coordinatord.settings import PresenceSettings
from coordinatord.store import Store

log = structlog.get_logger("coordinatord.presence")

OPS_PER_SCRIPT = 250
"""Records per script: a script holds the server while it runs (~5 µs a record)."""
RETRY_S = 1.0
"""After a failed write, the next attempt comes this soon (or at the next renewal if sooner)."""
REMOVE_ON_STOP_S = 2.0
"""How long a stopping daemon spends removing its records (else they expire by themselves)."""


def record_member(daemon_id: str, host: str, connection: Connection) -> str:
    """A connection's record as stored: compact JSON, the same bytes at every renewal."""
    data = {"daemon": daemon_id, "conn": connection.key, "host": host, "pid": connection.pid}
    return json.dumps(data, separators=(",", ":"))


def record_host(member: str) -> str | None:
    """The host a record names (None for a member that is not one of ours)."""
    try:
        data = json.loads(member)
    except ValueError:
        return None
    host = data.get("host") if isinstance(data, dict) else None
    return host if isinstance(host, str) else None


class PresenceLeases:
    """This daemon's connection records in Redis: written as connections come and go, renewed
    on a period, removed on the way out."""

    def __init__(
        self, store: Store, presence: Presence, settings: PresenceSettings, daemon_id: str, host: str
    ) -> None:
        self._store = store
        self._presence = presence
        self._settings = settings
        self._daemon_id = daemon_id
        self._host = host
        # Idempotent by nature: adding a record again only moves its expiry to the server's now +
        # TTL, removing it again removes nothing; the reply (the server's time) is not used.
        self._write_script = store.script(lua("presence_write"), exactly_once=False)
        self._wake: anyio.Event | None = None
        self.renewals = 0  # completed renewal ticks, for status and tests

    @property
    def ttl_ms(self) -> int:
        return int(self._settings.ttl_s * 1000)

    def member(self, connection: Connection) -> str:
        return record_member(self._daemon_id, self._host, connection)

    async def run(self) -> None:
        """Write changes as they happen and renew every record each ``presence.renew_s``,
        until cancelled; then remove this daemon's records (bounded, shielded)."""
        self._wake = anyio.Event()
        self._presence.on_change = self._wake_up
        renew_s = self._settings.renew_s
        next_renewal = time.monotonic()  # at once: a restarted daemon's connections come back
        try:
            while True:
                with anyio.move_on_after(max(0.0, next_renewal - time.monotonic())):
                    await self._wake.wait()
                self._wake = anyio.Event()
                renew = time.monotonic() >= next_renewal
                if renew:
                    next_renewal = time.monotonic() + renew_s
                if not await self.write_changes(renew=renew):
                    next_renewal = min(next_renewal, time.monotonic() + RETRY_S)
        finally:
            self._presence.on_change = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(REMOVE_ON_STOP_S):
                await self.remove_all()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def write_changes(self, *, renew: bool = False) -> bool:
        """Write the connections opened and closed since the last write (with ``renew``, every
        open connection's record too); whether every write went through. What failed is kept
        for the next write."""
        entered, left = self._presence.take_changes()
        ops: dict[str, tuple[str, Connection]] = {c.key: ("-", c) for c in left}
        current = self._presence.connections() if renew else entered
        ops.update({c.key: ("+", c) for c in current})
        if not ops:
            return True
        try:
            await self._write(list(ops.values()))
        except BackendError as exc:
            self._presence.give_back(entered, left)
            log.warning("presence_write_failed", error=str(exc), records=len(ops), renewal=renew)
            return False
        self._presence.confirm([c for op, c in ops.values() if op == "+"])
        if renew:
            self.renewals += 1
        return True

    async def remove_all(self) -> None:
        """Remove the records of every connection this daemon has open (it is stopping)."""
        _, left = self._presence.take_changes()
        ops = [("-", c) for c in [*left, *self._presence.connections()]]
        if not ops:
            return
        try:
            await self._write(ops)
        except BackendError as exc:
            log.warning("presence_remove_failed", error=str(exc), records=len(ops))

    async def _write(self, ops: Sequence[tuple[str, Connection]]) -> None:
        """The ops in one script per project and :data:`OPS_PER_SCRIPT` records, all at once."""
        by_project: dict[str, list[tuple[str, Connection]]] = defaultdict(list)
        for op in ops:
            by_project[op[1].project_id].append(op)
        calls = [
            (project, chunk[start : start + OPS_PER_SCRIPT])
            for project, chunk in by_project.items()
            for start in range(0, len(chunk), OPS_PER_SCRIPT)
        ]
        failures: list[BackendError] = []

        async def one(project: str, chunk: list[tuple[str, Connection]]) -> None:
            ns = Namespace(project)
            keys = [ns.key(PRESENCE_INDEX), *(ns.key(presence_records_key(c.agent)) for _, c in chunk)]
            args: list[str | int] = [self.ttl_ms]
            for op, connection in chunk:
                args += [op, connection.agent, self.member(connection)]
            try:
                await self._write_script(keys, args)
            except BackendError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as group:
            for project, chunk in calls:
                group.start_soon(one, project, chunk)
        if failures:
            raise failures[0]
