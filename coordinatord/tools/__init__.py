"""The tool registry: every tool the daemon serves, by group."""

from __future__ import annotations

from coordinatord.tools import agents, kv, locks, ratelimits, sessions, tasks
from coordinatord.tools.registry import Param, ToolRegistry, ToolReply, ToolSpec

__all__ = ["Param", "ToolRegistry", "ToolReply", "ToolSpec", "build_registry"]

# Groups exist even before their tools do, so that config and --tools can name them.
GROUPS = frozenset({"kv", "sessions", "tasks", "agents", "locks", "ratelimit"})


def build_registry() -> ToolRegistry:
    return ToolRegistry(
        (*kv.TOOLS, *sessions.TOOLS, *tasks.TOOLS, *agents.TOOLS, *locks.TOOLS, *ratelimits.TOOLS),
        groups=GROUPS,
    )
