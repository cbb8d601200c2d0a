"""Every test function under tests/ says in a docstring what behaviour it checks."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def undocumented() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name.startswith("test_")
                and not ast.get_docstring(node)
            ):
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} {node.name}")
    return found


def test_every_test_has_a_docstring() -> None:
    """No ``test_*`` function in tests/ lacks a docstring, so a new test without one fails here with its
    file, line and name."""
    assert undocumented() == []
