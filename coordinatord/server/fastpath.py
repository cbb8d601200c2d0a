"""The fast path: ``tools/call`` on an initialised handshake-era connection, without the SDK.

Profiling showed most of a call's time in the SDK's generic machinery (validating the whole
message, the dispatcher's task and streams, per-request context and session objects, validating
and re-dumping the result), not in the tool. Once a connection has completed the ``initialize``
handshake, a well-formed ``tools/call`` is answered here instead: read off the
:class:`~coordinatord.server.framing.Call` frame :mod:`coordinatord.server.framing` made of the
line (no model is built), run by the same
:func:`coordinatord.server.calls.invoke` as the SDK handler, and written back directly.
Everything else — the handshake, the 2026-07-28 era, ``tools/list``, malformed calls — still goes
through the SDK, which stays the reference for what is valid.

Each call runs in a plain asyncio task (calls on one connection run concurrently, as in the
SDK), not an anyio task-group child: the child's cancel scope and events cost more than a
``redis_get``. ``notifications/cancelled`` cancels the task; :meth:`FastPath.close` cancels
and awaits what is left when the connection ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from coordinatord.app import App
from coordinatord.context import Peer, agent_name
from coordinatord.server.calls import invoke

UNKNOWN_TOOL = -32602

log = structlog.get_logger("coordinatord.fastpath")


class FastPath:
    """Per-connection state: whether the handshake is done, and the calls running here."""

    def __init__(
        self,
        app: App,
        peer: Peer,
        send: Callable[[bytes], Awaitable[None]],
        done: Callable[[str | int], None],
    ) -> None:
        """``send`` writes a reply; ``done`` is told when a call is over (answered, withdrawn
        or cancelled), even one cancelled before it started."""
        self._app = app
        self._peer = peer
        self._send = send
        self._done = done
        self._initialize_id: str | int | None = None
        self._offered_name: str | None = None
        self._client_name: str | None = None
        self.enabled = False
        self._running: dict[str | int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._withdrawn: set[asyncio.Task[None]] = set()

    def saw_initialize(self, request_id: str | int, params: Any) -> None:
        """The client's ``initialize`` request went to the SDK; remember who the client says it
        is, which counts once the SDK accepts the handshake."""
        self._initialize_id = request_id
        info = params.get("clientInfo") if isinstance(params, dict) else None
        name = info.get("name") if isinstance(info, dict) else None
        self._offered_name = name if isinstance(name, str) and name else None

    def saw_reply(self, request_id: str | int | None, ok: bool) -> None:
        """The SDK answered a request; a successful ``initialize`` answer opens the fast path
        (a refused one, even a second one on an open connection, changes nothing)."""
        if ok and request_id is not None and request_id == self._initialize_id:
            self._client_name = self._offered_name
            self.enabled = True

    def cancel(self, request_id: str | int) -> None:
        """Apply a ``notifications/cancelled`` of ``request_id`` to a fast-path call; the SDK
        never saw that call."""
        task = self._running.get(request_id)
        if task is not None:
            self._withdrawn.add(task)
            task.cancel()

    def start(self, request_id: str | int, name: str, arguments: dict[str, Any] | None) -> None:
        """Run one call in its own task; its reply goes out through ``send``."""
        task = asyncio.get_running_loop().create_task(self.serve(request_id, name, arguments))
        self._running[request_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda finished: self._finished(request_id, finished))

    def _finished(self, request_id: str | int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._withdrawn.discard(task)
        if self._running.get(request_id) is task:
            del self._running[request_id]
        self._done(request_id)
        if not task.cancelled() and (error := task.exception()) is not None:
            # serve() turns every tool failure into a reply; this is a bug in the path itself.
            log.error("fast_path_failed", exc_info=error)

    async def close(self) -> None:
        """The connection is over: cancel the calls still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def serve(self, request_id: str | int, name: str, arguments: dict[str, Any] | None) -> None:
        agent = agent_name(self._peer.agent, self._client_name)
        try:
            reply = await invoke(self._app, self._peer, agent, name, arguments)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task not in self._withdrawn:
                raise
            task.uncancel()  # handled: the client withdrew the call, and gets no reply
            return
        if reply is None:
            error = {"code": UNKNOWN_TOOL, "message": f"Unknown tool: {name}"}
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "error": error}
        else:
            body = {"jsonrpc": "2.0", "id": request_id, "result": reply.to_wire()}
        await self._send(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
