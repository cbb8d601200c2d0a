"""Argument checking of all tools, compared with a committed snapshot of outcomes.

For every parameter of every tool, a fixed set of probes (missing, null, each JSON type, values
at and below a minimum, an unknown choice, an unknown extra argument) is checked, and the outcome
— the error text, or the parsed arguments — must stay what it was when the snapshot was taken
from the per-parameter parsers this registry replaced. Regenerate with
``.venv/bin/python -m tests.unit.test_tool_argument_checks`` only for a noted change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coordinatord.errors import InvalidArgumentError
from coordinatord.tool_groups import GROUPS
from coordinatord.tools import build_registry

SNAPSHOT = Path(__file__).parent / "snapshots" / "tool_argument_checks.json"
SCHEMAS = Path(__file__).parent / "snapshots" / "tool_input_schemas.json"

# Values of every JSON type, plus the edge cases the integer and array rules care about.
PROBES: list[Any] = [None, "s", "", 5, 0, -1, 3600.0, 1.5, True, False, [], ["a"], ["a", 2], {}, {"a": 1}]


def _valid(schema: dict[str, Any]) -> Any:
    """A value each parameter accepts, to fill the others while one is probed."""
    kind = schema["type"]
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "string" or isinstance(kind, list):
        return "x"
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return ["x"]
    return {"a": 1}


def cases() -> list[tuple[str, dict[str, Any]]]:
    schemas: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    found: list[tuple[str, dict[str, Any]]] = []
    for tool, schema in schemas.items():
        properties: dict[str, Any] = schema["properties"]
        base = {name: _valid(p) for name, p in properties.items() if name in schema.get("required", [])}
        found.append((tool, dict(base)))
        found.append((tool, {**base, "unknown_one": 1}))
        found.append((tool, {**base, "unknown_one": None}))
        # Several wrong at once: the unknown argument is named first, then parameters in order.
        wrong = {name: 1.5 for name in properties}
        found.append((tool, wrong))
        found.append((tool, {**wrong, "unknown_one": 1}))
        for name, prop in properties.items():
            without = {k: v for k, v in base.items() if k != name}
            found.append((tool, without))
            for probe in PROBES:
                found.append((tool, {**base, name: probe}))
            if "minimum" in prop:
                found.append((tool, {**base, name: prop["minimum"] - 1}))
            if "enum" in prop:
                found.append((tool, {**base, name: "no-such-choice"}))
    return found


def outcome(tool: str, arguments: dict[str, Any]) -> Any:
    """The error text, or the parsed arguments as a JSON-able dict."""
    spec = build_registry().get(tool, frozenset(GROUPS))
    assert spec is not None
    try:
        parsed: Any = spec.parse_arguments(arguments)
    except InvalidArgumentError as exc:
        return {"error": str(exc)}
    if isinstance(parsed, BaseModel):
        parsed = parsed.model_dump()
    return {"parsed": parsed}


def current() -> str:
    rows = [{"tool": t, "arguments": a, **outcome(t, a)} for t, a in cases()]
    return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"


def test_argument_checks_match_the_snapshot() -> None:
    """Every probe is refused with the same text, or parsed to the same values, as before."""
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    actual = json.loads(current())
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert got == want


if __name__ == "__main__":
    SNAPSHOT.write_text(current(), encoding="utf-8")
