"""The front door: every accepted connection up to its first line, then handed to its relay.

A connection starts with an optional identity preamble line (see :mod:`coordinatord.preamble`),
then carries newline-delimited JSON-RPC (one MCP session per connection, all sharing one
:class:`~coordinatord.app.App`). Lines are read by :mod:`coordinatord.server.line_reader` and
decoded once into frames by :mod:`coordinatord.server.framing`: the first line's frame is a
preamble, a control request (answered by :mod:`coordinatord.control`, one reply line) or MCP
traffic, which goes to the relay (:mod:`coordinatord.server.relay`) as it is. A line that
cannot be served, the first one included, gets a JSON-RPC error reply and the connection lives
on. A first line that cannot be parsed is no preamble: the connection is served as a plain
client (default project), and the line answered. Whatever goes wrong in one connection is
logged and ends that connection only, never the listener.

The daemon closes a connection on purpose only at its first line, after one error line that
says so in its ``data`` (built by :func:`coordinatord.server.framing.refusal`), so that a shim can
tell a refusal from a crash and not reconnect in a loop:

=====================================  ======  ===================================================
refused because                        code    ``error.data``
=====================================  ======  ===================================================
too many connections                   -32001  ``{"refused": true, "retry": true}`` (try later)
a malformed preamble                   -32600  ``{"refused": true, "retry": false}``
unknown tool groups in the preamble    -32600  ``{"refused": true, "retry": false}``
=====================================  ======  ===================================================

(A peer of another uid is closed on without a word; a control request gets its one reply.)
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from dataclasses import dataclass

import anyio
import anyio.abc
import structlog
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_dual_era_loop
from mcp.shared.message import SessionMessage

from coordinatord import preamble
from coordinatord.app import App
from coordinatord.context import Peer
from coordinatord.control.registry import ControlCommands
from coordinatord.control.wire import parse_control
from coordinatord.errors import CoordinatordError, FileRefusedError, SecretFoundError
from coordinatord.scope import ProjectScope
from coordinatord.server import framing
from coordinatord.server.connections import OpenConnections
from coordinatord.server.framing import BadLine, Frame
from coordinatord.server.in_flight import InFlight
from coordinatord.server.line_reader import LineReader, OverlongLine
from coordinatord.server.relay import Relay
from coordinatord.server.sockio import ProtocolStream
from coordinatord.tool_groups import PROFILES, selection, unknown_tools_message

log = structlog.get_logger("coordinatord.server")


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(raw: socket.socket) -> PeerCredentials | None:
    try:
        data = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid, uid, gid = struct.unpack("3i", data)
    return PeerCredentials(pid, uid, gid)


class ConnectionServer:
    """Serves every accepted connection until the daemon shuts down."""

    def __init__(
        self,
        app: App,
        mcp: Server[Peer],
        in_flight: InFlight,
        connections: OpenConnections,
        control: ControlCommands,
    ) -> None:
        """``in_flight``: the daemon's count of requests read and not yet answered;
        ``connections``: where the open connections are kept; ``control``: the operator
        commands a first line may ask for."""
        self._app = app
        self._mcp = mcp
        self._in_flight = in_flight
        self._connections = connections
        self._control = control
        self._init_options: InitializationOptions = mcp.create_initialization_options()
        self._ids = itertools.count(1)
        self._settings = app.settings.server
        self._fast_path = app.settings.server.fast_path
        # The SDK's stamp for 2026-07-28 results, made once: it is fixed for the daemon's life.
        self._server_info = mcp.server_info_stamp

    async def accept_forever(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except OSError as exc:  # EMFILE and friends: log, breathe, keep serving
                    log.error("accept_failed", error=str(exc))
                    await anyio.sleep(0.1)
                    continue
                tg.start_soon(self.serve_connection, stream)

    async def serve_connection(self, accepted: anyio.abc.SocketStream) -> None:
        conn_id = next(self._ids)
        self._connections.opened()
        try:
            # From here on the asyncio transport owns the socket (and closes it).
            raw: socket.socket = accepted.extra(anyio.abc.SocketAttribute.raw_socket)
            async with await ProtocolStream.wrap(raw) as stream:
                await self._serve(conn_id, stream)
        except Exception:
            # One connection's failure must never reach the listener's task group.
            log.exception("connection_failed", conn=conn_id)
        finally:
            self._connections.closed()

    async def _scope(self, identity: preamble.Preamble | None) -> ProjectScope:
        """The connection's scope. Its root is resolved, and the repository's files read, among
        that project's reads (bounded in time, never the threads other projects need); a root
        whose files do not answer in time is served with no project, saying which file."""
        if identity is None:
            return ProjectScope.default()  # a raw MCP client: nothing to read
        # Without a project, the message names the canonical cwd: resolved on disk too.
        root = identity.project if identity.project is not None else identity.cwd
        try:
            return await self._app.project_reads.run(root, ProjectScope.of, identity)
        except FileRefusedError as exc:
            log.warning("project_files_refused", root=root, error=str(exc))
            return ProjectScope.unreadable(exc, identity.cwd)

    async def _announce(self, peer: Peer) -> None:
        """Remember the project for the jobs; a backend that is down only delays that."""
        assert peer.project_root is not None
        try:
            await self._app.projects.announce(peer.namespace.project_id, peer.project_root)
        except CoordinatordError as exc:
            log.warning("project_announce_failed", project=peer.namespace.project_id, error=str(exc))

    async def _serve(self, conn_id: int, stream: ProtocolStream) -> None:
        creds = peer_credentials(stream.raw_socket)
        if creds is not None and creds.uid not in (os.getuid(), 0):
            log.warning("connection_refused_foreign_uid", conn=conn_id, uid=creds.uid)
            await stream.send(framing.refusal(f"this daemon serves uid {os.getuid()} only", retry=False))
            return
        sender = stream
        if self._connections.count > self._settings.max_connections:
            await sender.send(framing.refusal("too many connections (server.max_connections)", retry=True))
            return
        lines = LineReader(stream, self._settings.max_line_bytes)
        first: bytes | OverlongLine | None = None
        with anyio.move_on_after(self._settings.preamble_timeout_s):
            first = await _first_line(lines)
        if first is None:
            return
        opening: Frame = framing.decode_frame(first)
        identity: preamble.Preamble | None = None
        if not isinstance(opening, BadLine):  # a line that cannot be parsed is MCP traffic, answered
            control = parse_control(opening.value)
            if control is not None:
                # One operator command (``coordinatord status`` …): one JSON line back, then close.
                await sender.send(await self._control.answer(conn_id, *control))
                return
            try:
                identity = preamble.parse(opening.value)
            except ValueError as exc:
                await sender.send(framing.refusal(f"bad coordinatord preamble: {exc}", retry=False))
                return
        if identity is not None:
            try:
                # Before connection_opened logs and records the name (secret_guard.py).
                self._app.secret_guard.check_agent(identity.agent)
            except SecretFoundError as exc:
                log.warning("connection_refused_secret_agent", conn=conn_id)
                await sender.send(framing.refusal(str(exc), retry=False))
                return
        groups = self._app.default_groups
        if identity is not None and identity.tools is not None:
            unknown = sorted(set(identity.tools) - self._app.registry.groups - set(PROFILES))
            if unknown:
                await sender.send(framing.refusal(unknown_tools_message(unknown), retry=False))
                log.warning("connection_refused_unknown_groups", conn=conn_id, groups=unknown)
                return
            groups = selection(identity.tools)  # profiles expanded to group and tool names
        peer = Peer(
            conn_id=conn_id,
            agent=identity.agent if identity else None,
            scope=await self._scope(identity),
            claimed_pid=identity.pid if identity else None,
            peer_pid=creds.pid if creds else None,
            peer_uid=creds.uid if creds else None,
            groups=groups,
        )
        self._app.connection_opened(peer)  # logs it (both pids) and counts the agent present
        relay = Relay(
            self._app,
            self._in_flight,
            peer,
            lines,
            sender,
            stream,
            self._settings.drain_timeout_s,
            self._fast_path,
            self._server_info,
            self._settings.max_calls_in_flight,
        )
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)
        self._connections.serving(relay)
        try:
            async with anyio.create_task_group() as tg:
                if peer.project_root:
                    tg.start_soon(self._announce, peer)
                tg.start_soon(relay.read_frames, read_send, () if identity else (opening,))
                tg.start_soon(relay.write_frames, write_recv)
                await serve_dual_era_loop(
                    self._mcp, read_recv, write_send, lifespan_state=peer, init_options=self._init_options
                )
        finally:
            self._connections.done(relay)
            await relay.close()
            self._app.connection_closed(peer)  # logs it


async def _first_line(lines: LineReader) -> bytes | OverlongLine | None:
    """The first line that is not blank (an over-long one counts), or ``None`` at the end."""
    while True:
        line = await lines.next_line()
        if line is None or isinstance(line, OverlongLine) or line.strip():
            return line
