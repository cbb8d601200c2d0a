"""The operator's channel to a running daemon: one request line, one reply line, over the
daemon's own socket. Standard library only, like the shim: ``coordinatord status`` must answer
quickly and must work when the daemon (or the backend) is down.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coordinatord import socket_trust
from coordinatord.control.wire import control_request
from coordinatord.errors import DaemonError
from coordinatord.paths import serve_command


class DaemonNotRunningError(DaemonError):
    """No daemon answers on the socket."""


def request(
    socket_path: Path, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0
) -> Any:
    """Send one control command and return its result; raise :class:`DaemonError` on failure
    (:class:`~coordinatord.errors.ForeignServerError` when another uid serves the socket: it
    is sent nothing)."""
    try:
        sock = socket_trust.connect(socket_path, timeout)
    except OSError as exc:
        raise DaemonNotRunningError(
            f"no coordinatord daemon answers at {socket_path} ({exc.strerror or exc})\n"
            f"start it with: {serve_command(socket_path)}"
        ) from None
    try:
        sock.sendall(control_request(command, args))
        with sock.makefile("rb") as reader:
            line = reader.readline()
    except TimeoutError:
        raise DaemonError(
            f"the daemon at {socket_path} did not answer {command!r} within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise DaemonError(f"the daemon at {socket_path} closed the connection: {exc}") from None
    finally:
        sock.close()
    if not line:
        raise DaemonError(f"the daemon at {socket_path} closed the connection without answering {command!r}")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise DaemonError(str(reply.get("error", "the daemon refused the command")))
    return reply.get("result")
