"""Connecting to the daemon's socket, and refusing a server that is not ours before a byte is
sent to it. Every client of the socket connects through :func:`connect`: the shim, the operator
commands (the control client), the git hook, and the daemon's own probe of a stale socket.

A path names a socket, not who serves it: a process of another uid that got to the path first
(in a folder it could write, or where ours was removed) would be handed the preamble (project,
agent) and every call. So right after ``connect`` and before anything is written, the kernel is
asked who is listening (``SO_PEERCRED``: the credentials the server had when it called
``listen``, which it cannot forge), and a server whose uid is not ours is refused, root's
included: a client running as root refuses a server of any other uid, and a user's client
refuses root's server as well. The daemon checks the same of every client it accepts
(:mod:`coordinatord.server.front_door`).

Standard library only, like the shim that imports it.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from coordinatord import private_folder
from coordinatord.errors import ForeignServerError

_CREDENTIALS = struct.Struct("3i")
"""``struct ucred``: pid, uid, gid."""


def connect(path: Path, timeout: float | None) -> socket.socket:
    """A stream socket connected to ``path`` whose server runs as our uid, with ``timeout`` set.

    Raises ``OSError`` when nothing accepts there (as ``socket.connect`` does: no file, nobody
    listening, a path too long), and :class:`ForeignServerError` when a process of another uid
    listens there; nothing has been sent then, and the socket is closed.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        pid, uid = server_credentials(sock)
        if uid != os.geteuid():
            raise refusal(path, pid, uid)
    except BaseException:
        sock.close()
        raise
    return sock


def server_credentials(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a connected Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    pid, uid, _gid = _CREDENTIALS.unpack(data)
    return pid, uid


def refusal(path: Path, pid: int, uid: int) -> ForeignServerError:
    """The error a client raises when it refuses the server at ``path``: who serves it, who
    owns its folder (and that folder's mode), and the fix."""
    folder = Path(path).parent
    try:
        owner = private_folder.describe(os.lstat(folder))
    except OSError as exc:
        owner = f"cannot be examined ({exc.strerror or exc})"
    finding = (
        f"refused the server at {path}: it runs as {private_folder.who(uid)} (pid {pid}), not as you "
        f"({private_folder.who(os.geteuid())}), so nothing was sent to it; its folder {folder} is "
        f"{owner}. Another local user may be standing in for the coordinatord daemon"
    )
    fix = (
        f"remove {folder} (if it is not yours, its owner or root must) and start the daemon again, or "
        "give a socket in a private folder of your own (--socket, COORDINATORD_SOCKET or the config "
        "file's socket)"
    )
    return ForeignServerError(finding, fix)
