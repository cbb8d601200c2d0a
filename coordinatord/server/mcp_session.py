"""The MCP face of the daemon: one low-level ``Server`` whose handlers dispatch to the registry.

This and the connections' modules of :mod:`coordinatord.server` are the only ones that import the
MCP SDK. Tool errors
become ``isError`` results the agent can read and correct; only an unknown tool is a protocol
error. The call itself runs in :func:`coordinatord.server.calls.invoke`.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    DiscoverResult,
    ListResourcesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    RequestParams,
    Resource,
    TextResourceContents,
    Tool,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from coordinatord import __version__
from coordinatord.app import App
from coordinatord.context import Peer, agent_name
from coordinatord.errors import BackendError, InvalidArgumentError, NotFoundError, ToolError
from coordinatord.server.calls import invoke
from coordinatord.services import memory_bank
from coordinatord.services import messages as messages_service

Ctx = ServerRequestContext[Peer, Any]

INSTRUCTIONS = (
    # Some clients read only the first 512 characters (a unit test holds it to that).
    "Shared state for every AI agent on this project, kept between sessions and scoped to it. "
    "Start with agent_register; agent_heartbeat while you work. Before editing, files_reserve "
    "(or lock_acquire for other resources) and release after. Take work with task_ready and "
    "task_claim; track it with task_*. Talk with message_*. redis_* are raw keys "
    "(agent:context:*, task:progress:*). Other groups by --tools: sessions, ratelimit, "
    "activity, memory_bank, or full."
)


def build_server(app: App) -> Server[Peer]:
    """The low-level server. Its lifespan state is the connection's :class:`Peer`."""

    listings: dict[frozenset[str], dict[str, Any]] = {}
    discovered: dict[str, dict[str, Any]] = {}

    async def list_tools(ctx: Ctx, params: PaginatedRequestParams | None) -> HandlerResult:
        # Built and dumped once per selection (connections share a few): neither the schema
        # work nor the model's dump is repeated per request. The SDK copies the dict it is
        # given and re-dumps it through its per-version surface, so the cache is never aliased
        # into a reply.
        groups = ctx.lifespan_context.groups
        listing = listings.get(groups)
        if listing is None:
            tools = [Tool.model_validate(d, by_name=False) for d in app.registry.listing(groups)]
            listing = ListToolsResult(tools=tools).model_dump(by_alias=True, mode="json", exclude_none=True)
            listings[groups] = listing
        return listing

    async def discover(ctx: Ctx, params: RequestParams | None) -> HandlerResult:
        # What the SDK's default handler answers, made once per protocol version instead of
        # per new-era connection (every mcp.Client in auto mode opens with it). Its capabilities
        # follow the handlers registered, all of them by the first request.
        version = ctx.protocol_version
        answer = discovered.get(version)
        if answer is None:
            result = DiscoverResult(
                supported_versions=list(MODERN_PROTOCOL_VERSIONS),
                capabilities=server.get_capabilities(protocol_version=version),
                instructions=server.instructions,
            )
            answer = discovered[version] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return answer

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
    _add_memory_bank_resources(app, server)
    server.add_request_handler("server/discover", RequestParams, discover)

    # Drops the SDK's default OpenTelemetry middleware: it is a no-op without an exporter, and
    # this daemon's calls are traced by its own structured log.
    server.middleware = []
    return server


def _add_memory_bank_resources(app: App, server: Server[Peer]) -> None:
    """The connection's project's memory-bank files (of every source) as ``memory-bank://<name>``
    resources, named as the index names them (``memory-bank://brief.md``,
    ``memory-bank://AGENTS.md``, ``memory-bank://memory-bank/tech.md``).

    Served to every connection whatever its tool groups (resources cost no tool budget), with
    the same cache and the same confinement to each source as the memory_bank tools. The same
    two handlers also serve the connection's inbox, ``inbox://<agent>`` (messages, below).
    """

    async def list_resources(ctx: Ctx, params: PaginatedRequestParams | None) -> HandlerResult:
        peer = ctx.lifespan_context
        inbox = _inbox_resources(ctx)
        if peer.project_root is None:
            # The default project has no folder; an unscoped connection has no project at all.
            return ListResourcesResult(resources=inbox)
        try:
            index = await app.services.memory_bank.index(peer.namespace, peer.project_root)
        except NotFoundError:
            return ListResourcesResult(resources=inbox)  # no memory-bank folder: nothing to list
        except (ToolError, BackendError) as exc:
            raise _resource_error(exc) from None
        resources = [
            Resource(
                uri=memory_bank.file_uri(name),
                name=name,
                title=f"Memory bank: {name}",
                description=f"from {index.sources.get(name, index.directory)}",
                mime_type=memory_bank.MIME_TYPE,
                size=index.sizes.get(name),
            )
            for name in index.files
        ]
        return ListResourcesResult(resources=resources + inbox)

    async def read_resource(ctx: Ctx, params: ReadResourceRequestParams) -> HandlerResult:
        peer = ctx.lifespan_context
        refusal = peer.scope.refusal(needs_project=True)
        if refusal is not None:
            raise MCPError(code=INVALID_PARAMS, message=f"{params.uri}: {refusal}")
        if params.uri.startswith(messages_service.INBOX_URI_SCHEME):
            return await _read_inbox(app, ctx, params.uri)
        try:
            name = memory_bank.file_from_uri(params.uri, app.services.memory_bank.sources)
            result = await app.services.memory_bank.get(peer.namespace, peer.project_root, name)
        except (ToolError, BackendError) as exc:
            raise _resource_error(exc) from None
        content = TextResourceContents(uri=params.uri, mime_type=memory_bank.MIME_TYPE, text=result.content)
        return ReadResourceResult(contents=[content])

    server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    server.add_request_handler("resources/read", ReadResourceRequestParams, read_resource)


# --- messages: the connection's inbox as inbox://<agent> ----------------------------------------


def _inbox_resources(ctx: Ctx) -> list[Resource]:
    """The connection's own inbox (only its own: see :func:`_read_inbox`), listed when the
    connection serves the messages tools; none without a project."""
    peer = ctx.lifespan_context
    if peer.scope.namespace is None or "messages" not in peer.groups:
        return []
    agent = _agent_of(ctx)
    return [
        Resource(
            uri=messages_service.inbox_uri(agent),
            name=f"inbox-{agent}",
            title=f"Inbox of {agent}",
            mime_type="application/json",
        )
    ]


async def _read_inbox(app: App, ctx: Ctx, uri: str) -> ReadResourceResult:
    """The newest page of the connection's inbox (headers, read and unread), as message_inbox
    gives it; reading marks nothing. Another agent's inbox is refused: the messages tools act
    on the caller's own inbox only, and a resource must not be a way around that."""
    peer = ctx.lifespan_context
    agent = _agent_of(ctx)
    if "messages" not in peer.groups:
        message = f"{uri}: this connection does not serve the messages tools"
        raise MCPError(code=INVALID_PARAMS, message=message)
    try:
        wanted = messages_service.agent_from_uri(uri)
        if wanted != agent:
            raise InvalidArgumentError(
                f"resource {uri[:120]!r} is the inbox of {wanted[:80]!r}; this connection's agent "
                f"{agent!r} can read only its own, {messages_service.inbox_uri(agent)}"
            )
        service = app.services.messages
        page = await service.inbox(peer.namespace, agent, unread_only=False, limit=service.settings.max_page)
    except (ToolError, BackendError) as exc:
        raise _resource_error(exc) from None
    text = page.model_dump_json()
    return ReadResourceResult(
        contents=[TextResourceContents(uri=uri, mime_type="application/json", text=text)]
    )


def _resource_error(exc: ToolError | BackendError) -> MCPError:
    code = INTERNAL_ERROR if isinstance(exc, BackendError) else INVALID_PARAMS
    return MCPError(code=code, message=str(exc))


def _agent_of(ctx: Ctx) -> str:
    """The shim's ``--agent``, else the MCP client's name, else ``anonymous``."""
    client = ctx.session.client_params
    return agent_name(ctx.lifespan_context.agent, client.client_info.name if client is not None else None)
