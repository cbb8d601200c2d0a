"""The Unix socket server: one MCP session per connection, all sharing one :class:`App`.

A connection starts with an optional identity preamble line (see :mod:`coordinatord.preamble`),
then carries newline-delimited JSON-RPC. Lines are read by :mod:`coordinatord.line_reader` and parsed
once by :mod:`coordinatord.framing`; a line that cannot be served, the first one included, gets
a JSON-RPC error reply and the connection lives on. A first line that cannot be parsed is no
preamble: the connection is served as a plain client (default project), and the line answered.
Whatever goes wrong in one connection is logged and ends that connection only, never the
listener.

The daemon closes a connection on purpose only at its first line, after one error line that
says so in its ``data`` (built by :func:`coordinatord.framing.refusal`), so that a shim can
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

import contextlib
import fcntl
import itertools
import json
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import structlog
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_dual_era_loop
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCRequest, JSONRPCResponse

from coordinatord import framing, preamble
from coordinatord.app import App, InFlight, Peer
from coordinatord.errors import AlreadyRunningError, CoordinatordError, DaemonError
from coordinatord.fastpath import FastPath
from coordinatord.framing import BadLine
from coordinatord.line_reader import LineReader, OverlongLine
from coordinatord.paths import default_socket_path
from coordinatord.scope import ProjectScope
from coordinatord.sockio import ProtocolStream
from coordinatord.tool_groups import unknown_groups_message

log = structlog.get_logger("coordinatord.server")

MAX_UNIX_PATH = 107
INTERNAL_ERROR = -32603


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


class SocketClaim:
    """Owns the socket path for the daemon's lifetime.

    An exclusive ``flock`` on ``<socket>.lock`` decides which daemon owns the path, so two
    daemons started at the same moment cannot both replace a stale socket file and bind. With
    socket activation (``inherited``: the listening socket systemd passed) the lock is taken
    all the same, but the socket file is systemd's: it is neither probed, replaced nor removed.
    """

    def __init__(self, path: Path, inherited: socket.socket | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.inherited = inherited
        self._lock: HeldLock | None = None

    def acquire(self) -> None:
        if len(os.fsencode(self.path)) > MAX_UNIX_PATH:
            raise DaemonError(
                f"socket path {self.path} is longer than {MAX_UNIX_PATH} bytes, the limit of a Unix "
                "socket path; choose a shorter --socket"
            )
        parent = self.path.parent
        if not parent.exists():
            # Only a directory we create is ours to lock down; /tmp or $HOME are not.
            parent.mkdir(parents=True, mode=0o700)
            os.chmod(parent, 0o700)
        self._lock = hold_lock(
            self.lock_path,
            lambda owner: (
                f"another coordinatord daemon (pid {owner.pid}) is already serving on {self.path}; "
                f"{reach_or_stop(self.path)}, or give this one another --socket"
            ),
        )
        if self.inherited is None:
            self._remove_stale_socket()

    def _remove_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise DaemonError(f"{self.path} exists and is not a socket; remove it or choose another --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            log.info("stale_socket_removed", socket=str(self.path))
            self.path.unlink(missing_ok=True)
        else:
            raise AlreadyRunningError(
                f"something is already listening on {self.path}: a coordinatord daemon whose lock is "
                f"elsewhere, or systemd's coordinatord.socket, which starts the daemon of its unit on "
                f"the first connection; {reach_or_stop(self.path)}, or choose another --socket"
            )
        finally:
            probe.close()

    def release(self) -> None:
        """After a clean stop: the socket file (unless systemd's) and the lock file are removed."""
        if self.inherited is None:
            self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release(remove=True)
            self._lock = None


def reach_or_stop(socket_path: Path) -> str:
    """The next steps when another daemon serves ``socket_path``."""
    flag = "" if socket_path == default_socket_path() else f" --socket {socket_path}"
    return f"reach it with `coordinatord status{flag}`, stop it with `coordinatord stop{flag}`"


@dataclass(frozen=True)
class LockOwner:
    """What the holder of a lock wrote in it: its pid and, if it gave one, its socket."""

    pid: str
    socket: str | None


class HeldLock:
    """An exclusive ``flock`` on a file, held until :meth:`release` (or the process's end)."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self, remove: bool = False) -> None:
        """Unlock; with ``remove``, first delete the file, while it is still locked. Whoever
        locks the same inode after that sees that the path no longer leads to it, and tries
        again on a new file (see :func:`hold_lock`), so a removal never lets two hold it."""
        if self._handle is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == os.fstat(self._handle.fileno()).st_ino:
                    self.path.unlink()
        self._handle.close()
        self._handle = None

    def close(self) -> None:
        self.release()


def hold_lock(path: Path, conflict: Callable[[LockOwner], str], socket_path: Path | None = None) -> HeldLock:
    """Take an exclusive ``flock`` on ``path`` (writing our pid in it, and on a second line
    ``socket_path`` when given) or raise :class:`AlreadyRunningError` with ``conflict(owner)``.
    The lock lasts while the file stays open, and the kernel drops it when the process dies, so
    it can never go stale. A lock file removed by its last holder (:meth:`HeldLock.release`)
    between our open and our lock is noticed, and a new one taken.
    """
    while True:
        lock_file = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            lines = lock_file.read().splitlines()
            lock_file.close()
            owner = LockOwner(
                pid=(lines[0].strip() if lines else "") or "unknown",
                socket=lines[1].strip() if len(lines) > 1 and lines[1].strip() else None,
            )
            raise AlreadyRunningError(conflict(owner)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(lock_file.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock_file.close()  # its holder removed it as we opened it: lock the one there now
    os.chmod(path, 0o600)
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()) + (f"\n{socket_path}\n" if socket_path is not None else ""))
    lock_file.flush()
    return HeldLock(path, lock_file)


class ConnectionServer:
    """Serves every accepted connection until the daemon shuts down."""

    def __init__(self, app: App, mcp: Server[Peer]) -> None:
        self._app = app
        self._mcp = mcp
        self._init_options: InitializationOptions = mcp.create_initialization_options()
        self._ids = itertools.count(1)
        self._settings = app.settings.server
        self._fast_path = app.settings.server.fast_path
        self.open_connections = 0
        self._relays: set[_Relay] = set()
        self._all_closed = anyio.Event()
        self._all_closed.set()

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
        if self.open_connections == 0:
            self._all_closed = anyio.Event()
        self.open_connections += 1
        try:
            # From here on the asyncio transport owns the socket (and closes it).
            raw: socket.socket = accepted.extra(anyio.abc.SocketAttribute.raw_socket)
            async with await ProtocolStream.wrap(raw) as stream:
                await self._serve(conn_id, stream)
        except Exception:
            # One connection's failure must never reach the listener's task group.
            log.exception("connection_failed", conn=conn_id)
        finally:
            self.open_connections -= 1
            if self.open_connections == 0:
                self._all_closed.set()

    async def _announce(self, peer: Peer) -> None:
        """Remember the project for the jobs; a backend that is down only delays that."""
        assert peer.project_root is not None
        try:
            await self._app.projects.announce(peer.namespace.project_id, peer.project_root)
        except CoordinatordError as exc:
            log.warning("project_announce_failed", project=peer.namespace.project_id, error=str(exc))

    def describe(self) -> list[dict[str, Any]]:
        """The open MCP connections: who and which project (for ``coordinatord status``)."""
        return [relay.describe() for relay in sorted(self._relays, key=lambda r: r.peer.conn_id)]

    async def close_all(self) -> None:
        """Stop reading on every connection and wait until each has sent its last reply and
        closed. Call after the in-flight calls have drained; bound it with a timeout."""
        for relay in list(self._relays):
            relay.stop_reading()
        await self._all_closed.wait()

    async def _answer_control(
        self, conn_id: int, sender: ProtocolStream, command: str, args: dict[str, Any]
    ) -> None:
        """One operator command (``coordinatord status`` …): one JSON line back, then close."""
        handler = self._app.control_handlers.get(command)
        if handler is None:
            known = ", ".join(sorted(self._app.control_handlers))
            reply: dict[str, Any] = {
                "ok": False,
                "error": f"unknown control command {command!r}; known: {known}",
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
        await sender.send(json.dumps(reply, default=str).encode() + b"\n")

    async def _serve(self, conn_id: int, stream: ProtocolStream) -> None:
        creds = peer_credentials(stream.raw_socket)
        if creds is not None and creds.uid not in (os.getuid(), 0):
            log.warning("connection_refused_foreign_uid", conn=conn_id, uid=creds.uid)
            await stream.send(framing.refusal(f"this daemon serves uid {os.getuid()} only", retry=False))
            return
        sender = stream
        if self.open_connections > self._settings.max_connections:
            await sender.send(framing.refusal("too many connections (server.max_connections)", retry=True))
            return
        lines = LineReader(stream, self._settings.max_line_bytes)
        first: bytes | OverlongLine | None = None
        with anyio.move_on_after(self._settings.preamble_timeout_s):
            first = await _first_line(lines)
        if first is None:
            return
        opening = framing.decode(first)
        identity: preamble.Preamble | None = None
        if not isinstance(opening, BadLine):  # a line that cannot be parsed is MCP traffic, answered
            control = preamble.parse_control(opening)
            if control is not None:
                await self._answer_control(conn_id, sender, *control)
                return
            try:
                identity = preamble.parse(opening)
            except ValueError as exc:
                await sender.send(framing.refusal(f"bad coordinatord preamble: {exc}", retry=False))
                return
        groups = self._app.default_groups
        if identity is not None and identity.tools is not None:
            unknown = sorted(set(identity.tools) - self._app.registry.groups)
            if unknown:
                await sender.send(framing.refusal(unknown_groups_message(unknown), retry=False))
                log.warning("connection_refused_unknown_groups", conn=conn_id, groups=unknown)
                return
            groups = frozenset(identity.tools)
        peer = Peer(
            conn_id=conn_id,
            agent=identity.agent if identity else None,
            # In a worker thread: canonicalising the root resolves it on disk.
            scope=await anyio.to_thread.run_sync(ProjectScope.of, identity),
            claimed_pid=identity.pid if identity else None,
            peer_pid=creds.pid if creds else None,
            peer_uid=creds.uid if creds else None,
            groups=groups,
        )
        self._app.connection_opened(peer)  # logs it (both pids) and counts the agent present
        relay = _Relay(
            self._app, peer, lines, sender, stream, self._settings.drain_timeout_s, self._fast_path
        )
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)
        self._relays.add(relay)
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
            self._relays.discard(relay)
            await relay.close()
            self._app.connection_closed(peer)  # logs it


async def _first_line(lines: LineReader) -> bytes | OverlongLine | None:
    """The first line that is not blank (an over-long one counts), or ``None`` at the end."""
    while True:
        line = await lines.next_line()
        if line is None or isinstance(line, OverlongLine) or line.strip():
            return line


class _Outstanding:
    """Request ids read from a connection and not yet answered.

    The SDK's loop answers "Connection closed" to every request still running when its read
    stream ends, so on the client's EOF the reader waits for this set to empty before ending
    the stream: a shim that half-closes right after its last request still gets the reply.
    The daemon-wide :class:`~coordinatord.app.InFlight` count follows these sets, so a shutdown
    waits until every request read has been answered, not merely handled.
    """

    def __init__(self, in_flight: InFlight) -> None:
        self._ids: set[str | int] = set()
        self._empty: anyio.Event | None = None  # made only when someone waits
        self._in_flight = in_flight

    def add(self, request_id: str | int) -> None:
        if request_id not in self._ids:
            self._ids.add(request_id)
            self._in_flight.enter()

    def discard(self, request_id: str | int | None) -> None:
        if request_id is None or request_id not in self._ids:
            return
        self._ids.discard(request_id)
        self._in_flight.leave()
        if not self._ids and self._empty is not None:
            self._empty.set()
            self._empty = None

    def pending(self) -> list[str | int]:
        return list(self._ids)

    def abandon(self) -> None:
        """The connection is gone: its unanswered requests no longer hold up a shutdown."""
        for request_id in list(self._ids):
            self.discard(request_id)

    async def wait_empty(self) -> None:
        if not self._ids:
            return
        if self._empty is None:
            self._empty = anyio.Event()
        await self._empty.wait()


class _Relay:
    """Moves one connection's frames between the socket and the SDK's loop (or the fast path)."""

    def __init__(
        self,
        app: App,
        peer: Peer,
        lines: LineReader,
        sender: ProtocolStream,
        stream: ProtocolStream,
        drain_timeout_s: float,
        fast_path: bool,
    ) -> None:
        self.peer = peer
        self._lines = lines
        self._sender = sender
        self._stream = stream
        self._drain_timeout_s = drain_timeout_s
        self._outstanding = _Outstanding(app.in_flight)
        self._given_up: set[str | int] = set()  # answered by give_up(): later replies are dropped
        self._reading = anyio.CancelScope()
        self._fast = FastPath(app, peer, self._send_reply, self._outstanding.discard) if fast_path else None

    async def close(self) -> None:
        """The connection is over: fast-path calls still running are cancelled (their client
        is gone; a lock acquired for nobody would only block others), and the unanswered
        requests no longer hold up a shutdown."""
        if self._fast is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._drain_timeout_s):
                await self._fast.close()
        self._outstanding.abandon()

    def describe(self) -> dict[str, Any]:
        return self.peer.describe()

    async def read_frames(
        self, out: anyio.abc.ObjectSendStream[SessionMessage | Exception], opening: tuple[object, ...]
    ) -> None:
        """Dispatch every line until the client's EOF; ``opening`` holds the first line's parsed
        value when it was no preamble."""
        async with out:
            with self._reading:
                for value in opening:
                    await self._dispatch(value, out)
                while (line := await self._lines.next_line()) is not None:
                    if isinstance(line, OverlongLine) or line.strip():
                        await self._dispatch(framing.decode(line), out)
            with anyio.move_on_after(self._drain_timeout_s):
                await self._outstanding.wait_empty()
            await self._give_up()

    async def _give_up(self) -> None:
        """The calls still running after the drain are cancelled, and each is answered under its
        own id with why, instead of the SDK's bare "Connection closed" (or, on the fast path,
        no answer at all): the client, or the shim relaying for it, learns what became of it."""
        pending = self._outstanding.pending()
        if not pending:
            return
        if self._reading.cancel_called:
            why = "the coordinatord daemon is stopping"
        else:
            limit = f"server.drain_timeout_s = {self._drain_timeout_s:g}"
            why = f"the client closed its end and the call ran past {limit}"
        message = f"{why}; this call was cancelled and may or may not have taken effect"
        if self._fast is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._drain_timeout_s):
                await self._fast.close()
        for request_id in pending:
            self._given_up.add(request_id)
            self._outstanding.discard(request_id)
            await self._send_reply(framing.error_line(framing.CANCELLED, message, request_id))
        log.info(
            "calls_given_up", conn=self.peer.conn_id, count=len(pending), stopping=self._reading.cancel_called
        )

    def stop_reading(self) -> None:
        """Shutdown: read no more requests. Replies still due are written, then the daemon
        half-closes, so the client reads every byte before it sees the end."""
        self._reading.cancel()

    async def _dispatch(
        self, value: object, out: anyio.abc.ObjectSendStream[SessionMessage | Exception]
    ) -> None:
        """One parsed line (or the :class:`BadLine` it was) to the fast path, the SDK, or back
        to the client as its error."""
        fast = self._fast
        if fast is not None and isinstance(value, dict):
            call = fast.parse_call(value)
            if call is not None:
                self._outstanding.add(call[0])
                fast.start(*call)
                return
            fast.cancel(value)
        frame = value if isinstance(value, BadLine) else framing.to_message(value)
        if isinstance(frame, BadLine):
            log.warning(
                "bad_frame", conn=self.peer.conn_id, kind=frame.kind, answered=frame.reply is not None
            )
            if frame.reply is not None:
                await self._send_reply(frame.reply)
            return
        message = frame.message
        if isinstance(message, JSONRPCRequest):
            self._outstanding.add(message.id)
            if fast is not None and message.method == "initialize":
                fast.saw_initialize(message.id, message.params)
        await out.send(frame)

    async def _send_reply(self, data: bytes) -> None:
        # A client that left has nowhere for its reply to go.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            await self._sender.send(data)

    async def write_frames(self, frames: anyio.abc.ObjectReceiveStream[SessionMessage]) -> None:
        async with frames:
            try:
                async for frame in frames:
                    message = frame.message
                    if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id in self._given_up:
                        self._given_up.discard(message.id)  # already answered by _give_up
                        continue
                    await self._sender.send(_encode(message))
                    if isinstance(message, JSONRPCResponse | JSONRPCError):
                        self._outstanding.discard(message.id)
                        if self._fast is not None:
                            self._fast.saw_reply(message.id, ok=isinstance(message, JSONRPCResponse))
                # Half-close once every reply is out: the shim sees EOF and exits cleanly.
                with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._stream.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                # The peer went away; drain so the MCP loop never blocks on a dead connection.
                async for _ in frames:
                    pass


@contextlib.asynccontextmanager
async def listening(claim: SocketClaim) -> AsyncIterator[anyio.abc.SocketListener]:
    """Bind the claimed socket path (mode 0600), or serve the socket systemd passed, for as
    long as the block runs. Closing an inherited one closes only our descriptor: systemd's
    stays open, and connections made meanwhile wait in its backlog for the next daemon."""
    if claim.inherited is not None:
        listener: anyio.abc.SocketListener = await anyio.abc.SocketListener.from_socket(claim.inherited)
    else:
        listener = await anyio.create_unix_listener(claim.path, mode=0o600)
    try:
        yield listener
    finally:
        await listener.aclose()


def _encode(message: JSONRPCMessage) -> bytes:
    """A message of the SDK's as one line. Should one ever fail to serialise, its request is
    answered with an internal error instead: a reply that cannot be written must not end the
    connection (the writer's failure would)."""
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    except Exception:
        log.exception("reply_not_serialisable", kind=type(message).__name__)
        request_id = message.id if isinstance(message, JSONRPCResponse | JSONRPCError) else None
        if request_id is None:
            return b""
        return framing.error_line(
            INTERNAL_ERROR, "Internal error: the reply could not be serialised", request_id
        )
