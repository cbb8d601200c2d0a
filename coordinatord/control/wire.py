"""The control channel's request line, both ends: what a client sends instead of a preamble,
and how the daemon's front door tells it from one. Standard library only (the client's path)."""

from __future__ import annotations

import json

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONTROL_MARKER = "coordinatord-control"
VERSION = 1


def control_request(command: str, args: dict[str, Any] | None = None) -> bytes:
    """The one line a control client (``coordinatord status`` …) sends instead of a preamble."""
    body = {"type": CONTROL_MARKER, "v": VERSION, "command": command, "args": args or {}}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def parse_control(data: object) -> tuple[str, dict[str, Any]] | None:
    """``(command, args)`` when ``data`` (a first line, already parsed from JSON) is a control
    request, else ``None``."""
    if not isinstance(data, dict) or data.get("type") != CONTROL_MARKER:
        return None
    command, args = data.get("command"), data.get("args")
    if not isinstance(command, str) or not isinstance(args, dict):
        return ("", {})  # a malformed control request: the daemon answers with an error
    return command, args
