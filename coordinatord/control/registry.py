"""The operator commands a daemon answers, by name, and the one reply line each gets.

Built once, with every handler, before the server starts (see
:func:`coordinatord.control.handlers.build_commands`); the server's front door hands it a
control request's command and arguments and sends back the line :meth:`ControlCommands.answer`
makes. A handler's :class:`~coordinatord.errors.CoordinatordError` is the operator's error
message; anything else is a bug, logged, and answered without its details.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from coordinatord.errors import CoordinatordError

# The events keep the logger they had when the server answered control requests itself.
log = structlog.get_logger("coordinatord.server")

ControlHandler = Callable[[dict[str, Any]], Awaitable[Any]]
"""One command: its arguments (a JSON object) in, its JSON-serialisable result out."""

Connections = Callable[[], list[dict[str, Any]]]
"""The open connections as ``status`` describes them
(:meth:`coordinatord.server.connections.OpenConnections.describe`)."""


class ControlCommands:
    def __init__(self, handlers: Mapping[str, ControlHandler]) -> None:
        self._handlers = dict(handlers)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    async def answer(self, conn_id: int, command: str, args: dict[str, Any]) -> bytes:
        """The reply line to one control request: ``{"ok": true, "result": …}`` or
        ``{"ok": false, "error": …}``."""
        handler = self._handlers.get(command)
        if handler is None:
            reply: dict[str, Any] = {
                "ok": False,
                "error": f"unknown control command {command!r}; known: {', '.join(self.names)}",
            }
        else:
            try:
                reply = {"ok": True, "result": await handler(args)}
            except CoordinatordError as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception:
                log.exception("control_command_failed", conn=conn_id, command=command)
                reply = {"ok": False, "error": f"{command} failed; see the daemon's log"}
        log.info("control_command", conn=conn_id, command=command, ok=reply["ok"])
        return json.dumps(reply, default=str).encode() + b"\n"
