"""Tool profiles (``--tools minimal``, ``default``, ``full``): their names are real tools or groups,
the registry selects single tools, and what each profile costs in ``tools/list`` stays within its
budget; the server's instructions fit in the 512 characters some clients read."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import Tool

from coordinatord import tool_groups
from coordinatord.tools import build_registry
from coordinatord.tools.registry import NoArgs, ToolRegistry, ToolReply, ToolSpec

REGISTRY = build_registry()

# Upper bounds on the bytes of the tools array of a tools/list reply, per profile: a size
# regression (a longer description, a bigger output schema) fails here, so that growth is a
# decision. The targets of issue 13: the default list (what a shim serves without --tools)
# at most 16 000 bytes, minimal at most 6 000; full is its size when written (36 522) plus a
# small margin. Measured when written: kv 2 706, minimal 5 959, default 12 112. A merge that
# adds tools raises the bound it needs, in the same commit, and README's table with it.
BUDGET_BYTES = {"minimal": 6_000, "default": 16_000, "full": 37_500}


def tools_list_bytes(registry: ToolRegistry, names: list[str]) -> int:
    """Bytes of the ``tools`` array as the daemon writes it (the SDK's Tool model, dumped
    compactly by alias without unset fields, as coordinatord/server/relay.py does)."""
    listing = registry.listing(tool_groups.selection(names))
    dumped = [
        Tool.model_validate(d, by_name=False).model_dump_json(by_alias=True, exclude_unset=True)
        for d in listing
    ]
    return len(("[" + ",".join(dumped) + "]").encode())


def test_every_profile_entry_is_a_tool_or_a_group() -> None:
    """Each name a profile lists is a group or a registered tool (a renamed tool must not drop
    out of a profile unnoticed), and no profile is named like a tool or a group."""
    tools = {t["name"] for t in REGISTRY.listing(frozenset(tool_groups.GROUPS))}
    for profile, entries in tool_groups.PROFILES.items():
        unknown = set(entries) - tools - REGISTRY.groups
        assert not unknown, f"profile {profile} names {sorted(unknown)}"
    assert not set(tool_groups.PROFILES) & (tools | REGISTRY.groups)


def test_minimal_lists_its_existing_tools_and_full_lists_every_group() -> None:
    """--tools minimal lists exactly the profile's tools; full lists what every group lists, with
    output schemas (the only profile that has them)."""
    minimal = [t["name"] for t in REGISTRY.listing(tool_groups.selection(["minimal"]))]
    assert sorted(minimal) == sorted(tool_groups.PROFILES["minimal"])
    assert "task_update" in minimal and "lock_renew" not in minimal
    every = REGISTRY.listing(frozenset((*tool_groups.GROUPS, tool_groups.OUTPUT_SCHEMAS)))
    assert REGISTRY.listing(tool_groups.selection(["full"])) == every
    assert any("outputSchema" in t for t in every)
    for profile in ("minimal", "default"):
        assert not any("outputSchema" in t for t in REGISTRY.listing(tool_groups.selection([profile])))


def test_the_default_profile_is_the_seeds_eight_and_minimal_made_whole() -> None:
    """What a shim serves without --tools (and tools.groups' default): the kv group first, in the
    seed's order, then minimal, the tasks group and the renew/read tools minimal's workflows need."""
    from coordinatord.settings import ToolSettings

    assert ToolSettings().groups == tool_groups.DEFAULT_TOOLS == ("default",)
    names = [t["name"] for t in REGISTRY.listing(tool_groups.selection(["default"]))]
    assert names[:8] == list(tool_groups.SEED_TOOLS)
    assert set(tool_groups.PROFILES["minimal"]) <= set(names)
    assert {"task_create", "task_get", "message_read", "lock_renew", "files_renew"} <= set(names)
    assert not {"session_save", "ratelimit_hit", "activity_recent", "memory_bank_get"} & set(names)


def test_profiles_and_groups_combine() -> None:
    """A profile and a group may be named together: the selection is their union."""
    names = {t["name"] for t in REGISTRY.listing(tool_groups.selection(["minimal", "memory_bank"]))}
    assert {"memory_bank_index", "memory_bank_get", "agent_register"} <= names
    assert REGISTRY.get("memory_bank_get", tool_groups.selection(["minimal"])) is None
    assert REGISTRY.get("lock_acquire", tool_groups.selection(["minimal"])) is not None


def test_unknown_names_are_named_with_the_profiles_and_groups() -> None:
    """A name that is neither a profile nor a group is refused, the message listing both kinds;
    a tool name is not accepted on its own (only a profile can pick single tools)."""
    assert tool_groups.unknown_tool_names(["minimal", "kv", "minimall", "redis_get"]) == [
        "minimall",
        "redis_get",
    ]
    message = tool_groups.unknown_tools_message(["minimall"])
    assert message.startswith("unknown tool group(s) minimall in --tools")
    assert "full, minimal" in message and "memory_bank" in message


def test_always_allow_follows_the_profile() -> None:
    """editor add --tools minimal allows only the read-only tools minimal selects, and no raw
    redis tools even with --allow-writes (minimal has none); no --tools allows what the default
    profile selects (what the shim then serves); full allows every read-only tool."""
    read_only = ["task_ready", "agent_list", "lock_list", "message_inbox", "files_check"]
    assert tool_groups.always_allow(["minimal"], False) == read_only
    assert tool_groups.always_allow(["minimal"], True) == read_only
    assert tool_groups.always_allow(["default"], True) == tool_groups.always_allow(None, True)
    assert tool_groups.always_allow(["full"], False) == list(tool_groups.READ_ONLY_TOOLS)


def test_a_tool_named_like_a_group_is_refused() -> None:
    """Selections hold group and tool names together, so the registry refuses a clash."""

    async def handler(call: Any, args: NoArgs) -> ToolReply:
        return ToolReply.text("")

    with pytest.raises(ValueError, match="named like a group"):
        ToolRegistry([ToolSpec("kv", "locks", "d", NoArgs, handler)], groups=frozenset({"kv"}))


@pytest.mark.parametrize("profile", sorted(BUDGET_BYTES))
def test_tools_list_stays_within_the_profiles_budget(profile: str) -> None:
    """The bytes each profile costs in tools/list (tokens ~ bytes / 4) stay under its bound."""
    size = tools_list_bytes(REGISTRY, [profile])
    assert 0 < size <= BUDGET_BYTES[profile], f"{profile}: {size} bytes"


def test_the_server_instructions_fit_in_512_characters() -> None:
    """Some clients read only the first 512 characters of the instructions; they name the groups
    a model can ask for."""
    from coordinatord.server.mcp_session import INSTRUCTIONS

    assert len(INSTRUCTIONS) <= 512
    for group in ("sessions", "ratelimit", "activity", "memory_bank", "full"):
        assert group in INSTRUCTIONS
