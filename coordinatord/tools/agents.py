"""Agent presence tools. The agent acted for is always the calling connection's own identity:
no tool here takes an agent name, so no agent can speak for another.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.agents import AgentInfo, AgentList
from coordinatord.tools.registry import NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "agents"


# Sizes and item counts are settings (agents.*), so the service checks them.
class AgentRegisterArgs(ToolArgs):
    capabilities: list[str] | None = Field(None, description='What you can do, e.g. ["python", "review"]')
    mode: str | None = Field(None, description="Your editor mode, e.g. architect, code, debug")


class AgentHeartbeatArgs(ToolArgs):
    current_task: str | None = Field(
        None, description='What you are working on now (a task id or a short phrase); "" clears it'
    )
    files_open: list[str] | None = Field(None, description="Files you have open or are editing; [] clears")


class AgentListArgs(ToolArgs):
    include_inactive: bool = Field(
        False,
        description="Also list agents no longer active but seen recently "
        "(within agents.forget_after_s, 1 h by default)",
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
        "Call when you start work on this project, so other agents can see you and what you can "
        "do; starts a fresh status (no current task, no open files).",
        AgentRegisterArgs,
        agent_register,
        idempotent=False,  # re-registering starts the status afresh (startedAt)
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_heartbeat",
        GROUP,
        "Announce what you are working on and which files you have open, so other agents avoid "
        "conflicting edits; call every few minutes (omitted fields keep their value).",
        AgentHeartbeatArgs,
        agent_heartbeat,
        idempotent=False,  # each call moves lastHeartbeat on
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_unregister",
        GROUP,
        "Call when you stop working on this project, so others no longer count on you; "
        "returns the status that was removed.",
        NoArgs,
        agent_unregister,
        destructive=True,
        idempotent=True,
        output=AgentInfo,
    ),
    ToolSpec(
        "agent_list",
        GROUP,
        "Before editing shared files or picking up work, see which other agents are active, "
        "what they are working on and which files they have open.",
        AgentListArgs,
        agent_list,
        read_only=True,
        idempotent=True,
        output=AgentList,
    ),
)
