"""The tool registry: every tool the daemon serves, by group."""

from __future__ import annotations

from coordinatord.tool_groups import GROUPS, OUTPUT_SCHEMAS
from coordinatord.tools import activity, agents, files, kv, locks, memory_bank, ratelimits, sessions, tasks
from coordinatord.tools import messages as messages_tools
from coordinatord.tools.registry import NoArgs, ToolArgs, ToolRegistry, ToolReply, ToolSpec

__all__ = ["NoArgs", "ToolArgs", "ToolRegistry", "ToolReply", "ToolSpec", "build_registry"]


def build_registry() -> ToolRegistry:
    return ToolRegistry(
        (
            *kv.TOOLS,
            *sessions.TOOLS,
            *tasks.TOOLS,
            *agents.TOOLS,
            *locks.TOOLS,
            *ratelimits.TOOLS,
            *activity.TOOLS,
            *memory_bank.TOOLS,
            *messages_tools.TOOLS,
            *files.TOOLS,
        ),
        # output_schemas is a selection name too: no tool may take it.
        groups=frozenset((*GROUPS, OUTPUT_SCHEMAS)),
    )
