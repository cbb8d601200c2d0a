"""Agent presence tools. The agent acted for is always the calling connection's own identity:
no tool here takes an agent name, so no agent can speak for another.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.agents import AgentInfo, AgentList
from coordinatord.tools.registry import NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "agents"


# Sizes and item counts are settings (agents.*), so the service checks them.
class AgentRegisterArgs(ToolArgs):
    content: ClassVar[frozenset[str]] = frozenset({"capabilities", "mode"})  # AgentService scans them

    capabilities: list[str] | None = Field(None, description='e.g. ["python", "review"]')
    mode: str | None = Field(None, description="Editor mode, e.g. code")


class AgentHeartbeatArgs(ToolArgs):
    # What the agent says it works on: status text, shown to others, scanned by AgentService.
    content: ClassVar[frozenset[str]] = frozenset({"current_task", "files_open"})

    current_task: str | None = Field(None, description='Task id or phrase; "" clears, omitted keeps')
    files_open: list[str] | None = Field(None, description="[] clears")


class AgentListArgs(ToolArgs):
    include_inactive: bool = Field(
        False,
        description="Also agents seen recently",
    )


async def agent_register(call: CallContext, args: AgentRegisterArgs) -> ToolReply:
    call.log_key = call.agent
    info = await call.services.agents.register(call.namespace, call.agent, args.capabilities, args.mode)
    return ToolReply.data(info)


async def agent_heartbeat(call: CallContext, args: AgentHeartbeatArgs) -> ToolReply:
    call.log_key = call.agent
    info = await call.services.agents.heartbeat(
        call.namespace, call.agent, args.current_task, args.files_open
    )
    return ToolReply.data(info)


async def agent_unregister(call: CallContext, args: NoArgs) -> ToolReply:
    call.log_key = call.agent
    return ToolReply.data(await call.services.agents.unregister(call.namespace, call.agent))


async def agent_list(call: CallContext, args: AgentListArgs) -> ToolReply:
    return ToolReply.data(await call.services.agents.list_agents(call.namespace, args.include_inactive))


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "agent_register",
        GROUP,
        "Announce yourself, and what you can do, when you start work here.",
        AgentRegisterArgs,
        agent_register,
        idempotent=False,  # re-registering starts the status afresh (startedAt)
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_heartbeat",
        GROUP,
        "Say what you work on and which files are open; call every few minutes.",
        AgentHeartbeatArgs,
        agent_heartbeat,
        idempotent=False,  # each call moves lastHeartbeat on
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_unregister",
        GROUP,
        "Leave when you stop working here.",
        NoArgs,
        agent_unregister,
        destructive=True,
        idempotent=True,
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_list",
        GROUP,
        "Active agents, what each works on and its open files.",
        AgentListArgs,
        agent_list,
        read_only=True,
        idempotent=True,
        output=AgentList,
    ),
)
