"""The fast path: ``tools/call`` without the SDK, on an initialised handshake-era connection
and on a 2026-07-28 one.

Profiling showed most of a call's time in the SDK's generic machinery (validating the whole
message, the dispatcher's task and streams, per-request context and session objects, validating
and re-dumping the result), not in the tool. Once a connection has completed the ``initialize``
handshake, a well-formed ``tools/call`` is answered here instead: read off the
:class:`~coordinatord.server.framing.Call` frame :mod:`coordinatord.server.framing` made of the
line (no model is built), run by the same
:func:`coordinatord.server.calls.invoke` as the SDK handler, and written back directly.

The 2026-07-28 ("new") era has no handshake: each request carries its protocol version, client
info and capabilities in ``params._meta``. Once the SDK has taken a connection for that era (its
first request carried the envelope, see :func:`opens_new_era`), a ``tools/call`` whose envelope
the SDK's own checks accept (:func:`envelope_agent`: the SDK's inbound ladder, then its
per-version params surface) is answered here too, with the result shaped as the SDK shapes a
2026 result (``resultType``, the ``serverInfo`` stamp in ``_meta``). A verdict is kept per
connection for the last envelope seen: a client sends the same one on every request.

Everything else — the handshake, ``server/discover``, ``tools/list``, envelopes the SDK would
refuse (an unsupported version, a malformed ``_meta``: the SDK answers them, so the error is
its own), progress tokens, malformed calls — still goes through the SDK, which stays the
reference for what is valid.

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
from mcp.server.connection import Connection
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types import methods as mcp_methods
from pydantic import ValidationError

from coordinatord.app import App
from coordinatord.context import Peer, agent_name
from coordinatord.server.calls import invoke

UNKNOWN_TOOL = -32602

log = structlog.get_logger("coordinatord.fastpath")

_SERVED_META_KEYS = frozenset(
    {
        PROTOCOL_VERSION_META_KEY,
        CLIENT_INFO_META_KEY,
        CLIENT_CAPABILITIES_META_KEY,
        # Validated by the SDK's surface like the rest; no tool logs to the client, so the
        # level changes nothing a call does.
        LOG_LEVEL_META_KEY,
    }
)
"""The ``_meta`` keys of a new-era call served here. Any other (a progress token, a custom
key) sends the call to the SDK."""


def opens_new_era(method: str, params: Any) -> bool:
    """Whether the SDK serves a connection whose first request is this one in the 2026-07-28
    era: what ``mcp.server.runner.serve_dual_era_loop`` decides (``initialize`` never does; any
    other request whose ``params._meta`` holds the protocol-version key does)."""
    if method == "initialize" or not isinstance(params, dict):
        return False
    meta = params.get("_meta")
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta


def envelope_client_name(meta: Any) -> tuple[bool, str | None]:
    """``(accepted, client name)`` for a new-era ``tools/call``'s ``_meta``.

    Accepted only when the SDK would serve the call: its inbound ladder accepts the envelope
    (the required keys, a supported version) and its per-version surface the params (the
    envelope's shapes). The client name is what the SDK's handler would read from the
    connection it makes of the envelope (``client_params``, which it builds only when both
    client info and capabilities are well-formed), so both paths name the same agent. Anything
    refused is the SDK's to answer: its errors stay its own, to the byte."""
    if not isinstance(meta, dict) or not meta.keys() <= _SERVED_META_KEYS:
        return False, None
    route = classify_inbound_request({"method": "tools/call", "params": {"_meta": meta}})
    if isinstance(route, InboundLadderRejection):
        return False, None
    try:
        # ``name`` stands for the call's own, already known to be a string; the arguments
        # (an object or absent, checked by the frame) take no part in the envelope's verdict.
        mcp_methods.validate_client_request("tools/call", route.protocol_version, {"name": "", "_meta": meta})
    except (KeyError, ValueError, ValidationError):
        return False, None
    version, info, capabilities = route.protocol_version, route.client_info, route.client_capabilities
    params = Connection.from_envelope(version, info, capabilities).client_params
    return True, params.client_info.name if params is not None else None


class FastPath:
    """Per-connection state: whether the handshake is done, and the calls running here."""

    def __init__(
        self,
        app: App,
        peer: Peer,
        send: Callable[[bytes], Awaitable[None]],
        done: Callable[[str | int], None],
        server_info: dict[str, Any],
    ) -> None:
        """``send`` writes a reply; ``done`` is told when a call is over (answered, withdrawn
        or cancelled), even one cancelled before it started. ``server_info`` is the SDK's
        ``serverInfo`` stamp for new-era results (never mutated here)."""
        self._app = app
        self._server_info = server_info
        self.era_decided = False
        self.new_era = False
        self._envelope_key: str | None = None
        self._envelope_agent: str | None = None
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

    def saw_opening(self, method: str, params: Any) -> None:
        """The first request went to the SDK, which serves the connection in the era it opens
        (for good: a later request of the other era is refused by the SDK)."""
        self.era_decided = True
        self.new_era = opens_new_era(method, params)

    def envelope_agent(self, meta: Any) -> str | None:
        """The agent of a new-era call with this ``_meta``, or ``None`` when the call is the
        SDK's (see :func:`envelope_client_name`). The verdict of the last envelope is kept,
        compared by its JSON text (``==`` would take ``1`` for ``true``)."""
        try:
            key = json.dumps(meta, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        if key != self._envelope_key:
            accepted, client_name = envelope_client_name(meta)
            self._envelope_key = key
            self._envelope_agent = agent_name(self._peer.agent, client_name) if accepted else None
        return self._envelope_agent

    def cancel(self, request_id: str | int) -> None:
        """Apply a ``notifications/cancelled`` of ``request_id`` to a fast-path call; the SDK
        never saw that call."""
        task = self._running.get(request_id)
        if task is not None:
            self._withdrawn.add(task)
            task.cancel()

    def start(
        self, request_id: str | int, name: str, arguments: dict[str, Any] | None, agent: str | None = None
    ) -> None:
        """Run one call in its own task; its reply goes out through ``send``. ``agent`` is
        given for a new-era call (:meth:`envelope_agent`), ``None`` for a handshake-era one."""
        task = asyncio.get_running_loop().create_task(self.serve(request_id, name, arguments, agent))
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

    async def serve(
        self, request_id: str | int, name: str, arguments: dict[str, Any] | None, new_era_agent: str | None
    ) -> None:
        agent = new_era_agent or agent_name(self._peer.agent, self._client_name)
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
            result = reply.to_wire()
            if new_era_agent is not None:
                # As the SDK shapes a 2026-07-28 result: resultType is required, and the
                # serverInfo stamp goes in _meta (no tool's reply has a _meta of its own).
                result["resultType"] = "complete"
                result["_meta"] = {SERVER_INFO_META_KEY: self._server_info}
            body = {"jsonrpc": "2.0", "id": request_id, "result": result}
        await self._send(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
