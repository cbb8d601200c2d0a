"""Every registered tool's identifier arguments, and arguments its checks accept, for the tests
that call every tool with a secret or a near-miss in each identifier: built from the registry,
so a tool added later is covered without editing a test."""

from __future__ import annotations

from typing import Any

from coordinatord import tool_groups
from coordinatord.tools import build_registry
from coordinatord.tools.registry import ToolSpec

EVERY_GROUP = frozenset(tool_groups.GROUPS)


def specs() -> list[ToolSpec[Any]]:
    """Every tool of the registry (all groups)."""
    registry = build_registry()
    found = [registry.get(tool["name"], EVERY_GROUP) for tool in registry.listing(EVERY_GROUP)]
    return [spec for spec in found if spec is not None]


def identifier_cases() -> list[tuple[str, str]]:
    """``(tool, argument)`` for every identifier argument of every tool."""
    return [(spec.name, name) for spec in specs() for name in spec.identifiers]


def content_cases() -> list[tuple[str, str]]:
    """``(tool, argument)`` for every argument a tool declares content (its service scans it)."""
    return [(spec.name, name) for spec in specs() for name in sorted(spec.args.content)]


def _plain(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema["type"]
    kind = kind[0] if isinstance(kind, list) else kind
    return {
        "string": "plain-name",
        "array": ["plain-name"],
        "integer": max(schema.get("minimum", 1), 1),
        "object": {"note": "plain"},
        "boolean": False,
    }[kind]


def plain_arguments(spec: ToolSpec[Any]) -> dict[str, Any]:
    """Arguments the tool's checks accept: each required one with a plain value of its listed
    type (its first choice for a choice, its minimum for an integer)."""
    schema = spec.definition()["inputSchema"]
    return {name: _plain(schema["properties"][name]) for name in schema.get("required", [])}


def with_text(spec: ToolSpec[Any], argument: str, text: str) -> dict[str, Any]:
    """:func:`plain_arguments` with ``text`` in ``argument`` (the one item of an array, the
    one value of an object)."""
    kind = spec.definition()["inputSchema"]["properties"][argument]["type"]
    value = [text] if kind == "array" else {"note": text} if kind == "object" else text
    return {**plain_arguments(spec), argument: value}
