"""What ``coordinatord status`` shows, and the other operator commands a daemon answers.

Served over the daemon's socket by :mod:`coordinatord.control`. Every part is gathered
separately, so a dead backend still leaves the daemon's own facts (pid, uptime, connections,
jobs) visible, with the backend reported unhealthy.
"""

from __future__ import annotations

import os
import time
from typing import Any

from coordinatord import __version__
from coordinatord.app import App, ControlHandler
from coordinatord.errors import BackendError, InvalidArgumentError
from coordinatord.jobs import Jobs
from coordinatord.server import ConnectionServer


class DaemonStatus:
    def __init__(self, app: App, connections: ConnectionServer, jobs: Jobs, started_at: float) -> None:
        self._app = app
        self._connections = connections
        self._jobs = jobs
        self._started_at = started_at

    def control_handlers(self) -> dict[str, ControlHandler]:
        return {"status": self.status, "run_job": self.run_job}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self._app
        backend: dict[str, Any] = {"name": app.store.name}
        started = time.perf_counter()
        try:
            await app.store.ping()
            backend.update(healthy=True, ping_ms=round((time.perf_counter() - started) * 1000, 3))
        except BackendError as exc:
            backend.update(healthy=False, error=str(exc))
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "started_at": self._started_at,
                "uptime_s": round(time.time() - self._started_at, 1),
                "socket": str(app.settings.socket),
                "daemon_id": self._jobs.daemon_id,
            },
            "backend": backend,
            "connections": self._connections.describe(),
            "jobs": self._jobs.status(),
        }

    async def run_job(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if name not in self._jobs.names:
            raise InvalidArgumentError(f"no job named {name!r}; jobs: {', '.join(self._jobs.names)}")
        state = await self._jobs.run_now(str(name))
        return state.as_dict()
