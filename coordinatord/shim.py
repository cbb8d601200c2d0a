"""The stdio shim: a byte pump between an editor's stdio and the daemon's Unix socket.

Standard library only, and nothing heavy: an editor starts one shim per session, and each
millisecond of start-up is paid every time. The daemon does all MCP work; the shim sends the
identity preamble, then copies bytes both ways without parsing them.

When no daemon answers, the shim stays up and answers every request with a JSON-RPC error
that says how to start the daemon, so the editor shows a useful message instead of
"server exited".
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from pathlib import Path

from coordinatord import paths
from coordinatord.preamble import Preamble

CHUNK = 256 * 1024
NO_DAEMON_CODE = -32000


def run(socket_path: Path, agent: str | None, project: str | None, tools: list[str] | None = None) -> int:
    """Relay until the daemon closes the connection. Returns the process exit code."""
    cwd = Path.cwd()
    found = Path(project) if project else paths.find_project_root(cwd)
    root = paths.canonical_root(found) if found is not None else None
    if root is None:
        sys.stderr.write(f"coordinatord shim: {paths.not_a_project(cwd)}; {paths.SHIM_PROJECT_FIX}\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except OSError as exc:
        sock.close()
        return _serve_errors(no_daemon_message(socket_path), exc)
    with sock:
        sock.sendall(Preamble(agent=agent, project=root, pid=os.getpid(), tools=tools, cwd=str(cwd)).encode())
        stdin_done = threading.Event()
        pump = threading.Thread(target=_stdin_to_socket, args=(sock, stdin_done), daemon=True)
        pump.start()
        _socket_to_stdout(sock)
    if not stdin_done.is_set():
        sys.stderr.write(f"coordinatord shim: the daemon at {socket_path} closed the connection\n")
        return 1
    return 0


def no_daemon_message(socket_path: Path) -> str:
    command = "coordinatord serve"
    if socket_path != paths.default_socket_path():
        command += f" --socket {socket_path}"
    return f"no coordinatord daemon answers at {socket_path}; start it with: {command}"


def _stdin_to_socket(sock: socket.socket, done: threading.Event) -> None:
    try:
        while data := os.read(0, CHUNK):
            sock.sendall(data)
    except OSError:
        pass  # the daemon went away; the other direction sees it and ends the process
    finally:
        done.set()
        # Half-close: the daemon finishes in-flight replies, then closes its side.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def _socket_to_stdout(sock: socket.socket) -> None:
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                written = os.write(1, view)
                view = view[written:]
    except OSError:
        pass  # a reset connection or a closed stdout both end the relay


def _serve_errors(message: str, cause: OSError) -> int:
    """No daemon: answer each request with an error until stdin closes, then exit 1."""
    sys.stderr.write(f"coordinatord shim: {message} ({cause.strerror or cause})\n")
    sys.stderr.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if not isinstance(request, dict) or "id" not in request or "method" not in request:
            continue  # notifications and replies need no answer
        reply = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": NO_DAEMON_CODE, "message": message}}
        try:
            os.write(1, json.dumps(reply).encode() + b"\n")
        except OSError:
            break
    return 1
