"""Which agents have an open connection to this daemon, per project.

"Present" is a fact about connections, not heartbeats: an editor whose shim is connected counts
as active even if its agent never calls agent_heartbeat. Kept in the daemon's memory: a
connection lives and dies with this process.
"""

from __future__ import annotations

from collections import Counter


class Presence:
    def __init__(self) -> None:
        self._connections: Counter[tuple[str, str]] = Counter()

    def enter(self, project_id: str, agent: str) -> None:
        self._connections[(project_id, agent)] += 1

    def leave(self, project_id: str, agent: str) -> None:
        key = (project_id, agent)
        self._connections[key] -= 1
        if self._connections[key] <= 0:
            del self._connections[key]

    def is_connected(self, project_id: str, agent: str) -> bool:
        return self._connections[(project_id, agent)] > 0

    def connected(self, project_id: str) -> set[str]:
        return {
            agent for (project, agent), count in self._connections.items() if project == project_id and count
        }

    def all(self) -> list[tuple[str, str, int]]:
        """(project id, agent, open connections), for status displays."""
        return [(project, agent, count) for (project, agent), count in sorted(self._connections.items())]
