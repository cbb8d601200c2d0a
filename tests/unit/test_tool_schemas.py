"""``tools/list`` input schemas of all tools, compared byte for byte with a committed snapshot.

The schemas are what agents' prompts and editors were written against (the seed's eight are a
contract), so a change to any of them must be deliberate: regenerate the snapshot with
``.venv/bin/python -m tests.unit.test_tool_schemas`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

from coordinatord.tool_groups import GROUPS
from coordinatord.tools import build_registry

SNAPSHOT = Path(__file__).parent / "snapshots" / "tool_input_schemas.json"


def current() -> str:
    """Every tool's ``inputSchema`` in listing order; no sort_keys, so key order counts too."""
    listing = build_registry().listing(frozenset(GROUPS))
    schemas = {tool["name"]: tool["inputSchema"] for tool in listing}
    return json.dumps(schemas, indent=2, ensure_ascii=False) + "\n"


def test_input_schemas_match_the_snapshot() -> None:
    """Names, types, required lists, descriptions, enums, minimums and defaults are unchanged."""
    assert current() == SNAPSHOT.read_text(encoding="utf-8")


def test_the_snapshot_covers_every_tool() -> None:
    """All 47 tools are in it, so none escapes the comparison."""
    assert len(json.loads(SNAPSHOT.read_text(encoding="utf-8"))) == 47


if __name__ == "__main__":
    SNAPSHOT.write_text(current(), encoding="utf-8")
