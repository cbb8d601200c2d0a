"""The tool registry: every tool the daemon serves, by group."""

from __future__ import annotations

from coordinatord.tools import kv
from coordinatord.tools.registry import Param, ToolRegistry, ToolReply, ToolSpec

__all__ = ["Param", "ToolRegistry", "ToolReply", "ToolSpec", "build_registry"]


def build_registry() -> ToolRegistry:
    return ToolRegistry(kv.TOOLS)
