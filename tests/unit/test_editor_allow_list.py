"""The alwaysAllow list `editor add` writes is exactly the registry's read-only tools, and the
editor command path imports neither pydantic nor mcp."""

from __future__ import annotations

import subprocess
import sys

from coordinatord import tool_groups
from coordinatord.tools import build_registry


def test_read_only_tools_are_the_registrys_read_only_hints() -> None:
    """The always-allow list is exactly the tools the registry marks read-only, each in its group and none
    destructive, so the two cannot drift apart."""
    registry = build_registry()
    listed = registry.listing(frozenset(tool_groups.GROUPS))
    read_only = {tool["name"] for tool in listed if tool["annotations"].get("readOnlyHint", False)}
    assert set(tool_groups.READ_ONLY_TOOLS) == read_only
    for name, group in tool_groups.READ_ONLY_TOOLS.items():
        spec = registry.get(name, frozenset(tool_groups.GROUPS))
        assert spec is not None and spec.group == group and not spec.destructive


def test_the_seeds_eight_are_the_kv_tools() -> None:
    """SEED_TOOLS lists the kv group's tools in the registry's order."""
    kv = [t["name"] for t in build_registry().listing(frozenset({"kv"}))]
    assert list(tool_groups.SEED_TOOLS) == kv


def test_always_allow_follows_the_groups() -> None:
    """The allow list holds only the read-only tools of the chosen groups (the default profile's
    when none are chosen, as a shim without --tools serves), and the seed's eight only when kv is
    chosen with writes allowed."""
    assert tool_groups.always_allow(["locks"], False) == ["lock_list"]
    assert tool_groups.always_allow(["locks"], True) == ["lock_list"]
    with_kv = tool_groups.always_allow(["kv", "tasks"], True)
    assert with_kv == [*tool_groups.SEED_TOOLS, "task_get", "task_list", "task_ready"]
    assert tool_groups.always_allow(None, False) == tool_groups.always_allow(["default"], False)
    assert tool_groups.always_allow(["full"], False) == list(tool_groups.READ_ONLY_TOOLS)


def test_the_editor_command_imports_no_pydantic_nor_mcp() -> None:
    """Importing the CLI and the editor command loads none of pydantic, mcp, tomlkit or redis, so
    ``editor`` commands start fast."""
    code = (
        "import sys; from coordinatord import cli; import coordinatord.commands.editor; "
        "import coordinatord.editors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'mcp', 'tomlkit', 'redis')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
