"""Which control commands a daemon answers: every handler, built once from the daemon's parts."""

from __future__ import annotations

from typing import Any

import anyio

from coordinatord.app import App
from coordinatord.control import files, overview, projects, sessions
from coordinatord.control.registry import Connections, ControlCommands
from coordinatord.control.shutdown import shutdown_handler
from coordinatord.control.status import DaemonStatus
from coordinatord.jobs import Jobs


def build_commands(
    app: App,
    jobs: Jobs,
    connections: Connections,
    *,
    started_at: float,
    service: dict[str, Any],
    shutdown: anyio.Event,
    socket_folder: dict[str, Any] | None = None,
) -> ControlCommands:
    """``connections``: the open connections (for ``status``, ``projects_list`` and
    ``overview``); ``service``: how systemd runs the daemon; ``shutdown``: set by the
    ``shutdown`` command; ``socket_folder``: why the socket is where it is (for ``status``)."""
    status = DaemonStatus(
        app, connections, jobs, started_at=started_at, service=service, socket_folder=socket_folder
    )
    return ControlCommands(
        {
            **status.control_handlers(),
            **sessions.handlers(app, jobs),
            **projects.handlers(app, connections),
            "shutdown": shutdown_handler(shutdown, service),
            **overview.handlers(app, connections, started_at),
            **files.handlers(app),
        }
    )
