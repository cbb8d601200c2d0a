"""The MCP face of the daemon: one low-level ``Server`` whose handlers dispatch to the registry.

This and :mod:`coordinatord.server` are the only modules that import the MCP SDK. Tool errors
become ``isError`` results the agent can read and correct; only an unknown tool is a protocol
error. Every call is logged once, with its agent, project, tool, key, duration and outcome —
never a value.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolRequestParams, ListToolsResult, PaginatedRequestParams, Tool

from coordinatord import __version__
from coordinatord.app import ANONYMOUS_AGENT, App, CallContext, Peer
from coordinatord.errors import BackendError, ToolError
from coordinatord.tools.registry import ToolReply

log = structlog.get_logger("coordinatord.calls")

Ctx = ServerRequestContext[Peer, Any]

INSTRUCTIONS = (
    "coordinatord: state shared by every AI agent working on this project (sessions, tasks, "
    "locks, notes), kept between sessions. Keys are scoped to this project automatically."
)


def build_server(app: App) -> Server[Peer]:
    """The low-level server. Its lifespan state is the connection's :class:`Peer`."""

    listings: dict[frozenset[str], ListToolsResult] = {}

    async def list_tools(ctx: Ctx, params: PaginatedRequestParams | None) -> HandlerResult:
        # Built once per group set: schema work is not repeated per request.
        groups = ctx.lifespan_context.groups
        listing = listings.get(groups)
        if listing is None:
            tools = [Tool.model_validate(d, by_name=False) for d in app.registry.listing(groups)]
            listing = listings[groups] = ListToolsResult(tools=tools)
        return listing

    async def call_tool(ctx: Ctx, params: CallToolRequestParams) -> HandlerResult:
        peer = ctx.lifespan_context
        spec = app.registry.get(params.name, peer.groups)
        if spec is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        call = CallContext(app, peer, _agent_of(ctx))
        app.mark_present(peer, call.agent)
        started = time.perf_counter()
        outcome = "ok"
        try:
            reply = await spec.handler(call, spec.parse_arguments(params.arguments))
        except ToolError as exc:
            outcome = "refused"
            reply = ToolReply(texts=(f"{params.name}: {exc}",), is_error=True)
        except BackendError as exc:
            outcome = "backend_error"
            reply = ToolReply(texts=(f"{params.name}: {exc}",), is_error=True)
        except Exception:
            # A bug, not the caller's fault: keep the trace in the log, not in the agent's context.
            log.exception("tool_crashed", tool=params.name, agent=call.agent)
            outcome = "internal_error"
            reply = ToolReply(texts=(f"{params.name}: internal error; see the daemon's log",), is_error=True)
        log.info(
            "tool_call",
            agent=call.agent,
            project=peer.namespace.project_id,
            tool=params.name,
            key=call.log_key,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            outcome=outcome,
        )
        wire = reply.to_wire()
        # The 2026-07-28 era requires resultType on every result; the handshake era ignores it.
        wire["resultType"] = "complete"
        return wire

    server: Server[Peer] = Server("coordinatord", version=__version__, instructions=INSTRUCTIONS)
    # Registered by method rather than through on_call_tool=: handlers may then return the
    # plain dict result, which skips building and dumping a CallToolResult model per call.
    server.add_request_handler("tools/list", PaginatedRequestParams, list_tools)
    server.add_request_handler("tools/call", CallToolRequestParams, call_tool)

    async def count_in_flight(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        app.in_flight.enter()
        try:
            return await call_next(ctx)
        finally:
            app.in_flight.leave()

    # Replaces the SDK's default OpenTelemetry middleware: it is a no-op without an exporter,
    # and this daemon's calls are traced by its own structured log.
    server.middleware = [count_in_flight]
    return server


def _agent_of(ctx: Ctx) -> str:
    """The shim's ``--agent``, else the MCP client's name, else ``anonymous``."""
    agent = ctx.lifespan_context.agent
    if agent:
        return agent
    client = ctx.session.client_params
    if client is not None and client.client_info.name:
        return client.client_info.name
    return ANONYMOUS_AGENT
