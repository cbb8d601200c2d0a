"""Placeholder: being written."""

from __future__ import annotations

from coordinatord.tools.registry import ToolSpec

TOOLS: tuple[ToolSpec, ...] = ()
