"""The tool registry: every tool the daemon serves, by group."""

from __future__ import annotations

from coordinatord.tools import activity, agents, kv, locks, memory_bank, ratelimits, sessions, tasks
from coordinatord.tools.registry import Param, ToolRegistry, ToolReply, ToolSpec

__all__ = ["Param", "ToolRegistry", "ToolReply", "ToolSpec", "build_registry"]

# Groups exist even before their tools do, so that config and --tools can name them.
GROUPS = frozenset({"kv", "sessions", "tasks", "agents", "locks", "ratelimit", "activity", "memory_bank"})


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
        ),
        groups=GROUPS,
    )
