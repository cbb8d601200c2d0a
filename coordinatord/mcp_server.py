"""The MCP face of the daemon: one low-level ``Server`` whose handlers dispatch to the registry.

This and :mod:`coordinatord.server` are the only modules that import the MCP SDK. Tool errors
become ``isError`` results the agent can read and correct; only an unknown tool is a protocol
error. The call itself runs in :func:`coordinatord.calls.invoke`.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolRequestParams, ListToolsResult, PaginatedRequestParams, Tool

from coordinatord import __version__
from coordinatord.app import App, Peer, agent_name
from coordinatord.calls import invoke

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
        reply = await invoke(app, peer, _agent_of(ctx), params.name, params.arguments)
        if reply is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        wire = reply.to_wire()
        # The 2026-07-28 era requires resultType on every result; the handshake era ignores it.
        wire["resultType"] = "complete"
        return wire

    server: Server[Peer] = Server("coordinatord", version=__version__, instructions=INSTRUCTIONS)
    # Registered by method rather than through on_call_tool=: handlers may then return the
    # plain dict result, which skips building and dumping a CallToolResult model per call.
    server.add_request_handler("tools/list", PaginatedRequestParams, list_tools)
    server.add_request_handler("tools/call", CallToolRequestParams, call_tool)

    # Drops the SDK's default OpenTelemetry middleware: it is a no-op without an exporter, and
    # this daemon's calls are traced by its own structured log.
    server.middleware = []
    return server


def _agent_of(ctx: Ctx) -> str:
    """The shim's ``--agent``, else the MCP client's name, else ``anonymous``."""
    client = ctx.session.client_params
    return agent_name(ctx.lifespan_context.agent, client.client_info.name if client is not None else None)
