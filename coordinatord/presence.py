"""Which agents have an open connection to this daemon, per project: the daemon's own view.

"Present" is a fact about connections, not heartbeats: an editor whose shim is connected counts
as active even if its agent never calls agent_heartbeat. This module keeps this daemon's
connections in memory (a connection lives and dies with this process) and remembers what
changed since it was last asked (:meth:`Presence.take_changes`), so that
:class:`~coordinatord.services.presence.PresenceLeases` can write each connection's lease
record to Redis, where every daemon sharing the backend sees it. The sweep reads those records;
this daemon's displays and its own sweep also read this view, which knows a connection the
moment it opens, before its record is written.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connection:
    """One open connection that counts as present: an agent in a project."""

    key: str  # unique within this daemon
    project_id: str
    agent: str
    pid: int | None


class Presence:
    def __init__(self) -> None:
        self._connections: Counter[tuple[str, str]] = Counter()
        self._open: dict[str, Connection] = {}
        self._entered: dict[str, Connection] = {}  # opened since take_changes, record not written
        self._left: dict[str, Connection] = {}  # closed since take_changes, record to remove
        # Open, and no record of it is known to be in Redis yet: the sweep is told of these
        # itself (a short list, unlike every connection of a busy daemon).
        self._unconfirmed: dict[str, Connection] = {}
        self._anonymous = itertools.count(1)
        self.on_change: Callable[[], None] | None = None
        """Called after every enter and leave (the lease writer's wake-up)."""

    def enter(
        self, project_id: str, agent: str, conn: str | int | None = None, pid: int | None = None
    ) -> None:
        """A connection now counts as ``agent`` in ``project_id``. ``conn`` names it (the server's
        connection id); without one (tests), a name is made up."""
        key = f"c{conn}" if conn is not None else f"a{next(self._anonymous)}"
        connection = Connection(key, project_id, agent, pid)
        self._connections[(project_id, agent)] += 1
        self._open[key] = connection
        self._entered[key] = connection
        self._unconfirmed[key] = connection
        self._changed()

    def leave(self, project_id: str, agent: str, conn: str | int | None = None) -> None:
        key = f"c{conn}" if conn is not None else self._any_key(project_id, agent)
        counted = (project_id, agent)
        self._connections[counted] -= 1
        if self._connections[counted] <= 0:
            del self._connections[counted]
        connection = self._open.pop(key, None) if key is not None else None
        if connection is not None:
            self._unconfirmed.pop(connection.key, None)
            # A record never written needs no removal.
            if self._entered.pop(connection.key, None) is None:
                self._left[connection.key] = connection
        self._changed()

    def _any_key(self, project_id: str, agent: str) -> str | None:
        for key, connection in self._open.items():
            if (connection.project_id, connection.agent) == (project_id, agent):
                return key
        return None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def is_connected(self, project_id: str, agent: str) -> bool:
        return self._connections[(project_id, agent)] > 0

    def connected(self, project_id: str) -> set[str]:
        return {
            agent for (project, agent), count in self._connections.items() if project == project_id and count
        }

    def unconfirmed(self, project_id: str) -> set[str]:
        """Agents of connections open here whose records are not known to be written yet."""
        return {c.agent for c in self._unconfirmed.values() if c.project_id == project_id}

    def confirm(self, connections: list[Connection]) -> None:
        """Their records are in Redis now (the lease writer says so after a write)."""
        for connection in connections:
            self._unconfirmed.pop(connection.key, None)

    def all(self) -> list[tuple[str, str, int]]:
        """(project id, agent, open connections), for status displays."""
        return [(project, agent, count) for (project, agent), count in sorted(self._connections.items())]

    def connections(self) -> list[Connection]:
        """Every open connection that counts as present (what a renewal writes)."""
        return list(self._open.values())

    def take_changes(self) -> tuple[list[Connection], list[Connection]]:
        """The connections opened and closed since the last call, which forgets them."""
        entered, left = list(self._entered.values()), list(self._left.values())
        self._entered, self._left = {}, {}
        return entered, left

    def give_back(self, entered: list[Connection], left: list[Connection]) -> None:
        """Changes taken but not written (the backend failed): to be written next time. An
        entered connection closed meanwhile needs nothing written any more."""
        for connection in entered:
            if connection.key in self._open:
                self._entered.setdefault(connection.key, connection)
        for connection in left:
            self._left.setdefault(connection.key, connection)
