"""Tool definitions and argument checking: built once, errors name the argument."""

from __future__ import annotations

from typing import Any

import pytest

from coordinatord.errors import InvalidArgumentError
from coordinatord.tools import build_registry
from coordinatord.tools.registry import Param

REGISTRY = build_registry()
SEED_TOOLS = [
    "redis_get", "redis_set", "redis_del", "redis_keys",
    "redis_exists", "redis_ttl", "redis_expire", "redis_ping",
]  # fmt: skip


def spec(name: str) -> Any:
    found = REGISTRY.get(name, frozenset({"kv"}))
    assert found is not None
    return found


def test_the_seed_tools_are_listed_with_their_parameters() -> None:
    """The eight tools keep the seed's names and parameters."""
    listing = {tool["name"]: tool for tool in REGISTRY.listing(frozenset({"kv"}))}
    assert list(listing) == SEED_TOOLS
    assert listing["redis_set"]["inputSchema"]["required"] == ["key", "value"]
    assert set(listing["redis_set"]["inputSchema"]["properties"]) == {"key", "value", "ttl"}
    assert listing["redis_del"]["inputSchema"]["properties"]["keys"]["type"] == "array"
    assert listing["redis_expire"]["inputSchema"]["required"] == ["key", "seconds"]
    assert listing["redis_ping"]["inputSchema"]["properties"] == {}


def test_annotations_are_true() -> None:
    """Read-only tools say so; redis_del is the destructive one."""
    listing = {tool["name"]: tool["annotations"] for tool in REGISTRY.listing(frozenset({"kv"}))}
    read_only = {name for name, ann in listing.items() if ann["readOnlyHint"]}
    assert read_only == {"redis_get", "redis_keys", "redis_exists", "redis_ttl", "redis_ping"}
    assert {name for name, ann in listing.items() if ann["destructiveHint"]} == {"redis_del"}


def test_groups_filter_tools() -> None:
    """A connection only sees and calls tools of its groups."""
    assert REGISTRY.listing(frozenset()) == []
    assert REGISTRY.get("redis_get", frozenset()) is None


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("redis_get", {}, "argument 'key' is required"),
        ("redis_get", {"key": 5}, "argument 'key' must be a string, got the number 5"),
        ("redis_set", {"key": "k", "value": "v", "ttl": "60"}, "'ttl' must be an integer, got a string"),
        ("redis_set", {"key": "k", "value": "v", "ttl": 1.5}, "'ttl' must be an integer"),
        ("redis_set", {"key": "k", "value": "v", "ttl": True}, "'ttl' must be an integer, got a boolean"),
        ("redis_del", {"keys": "k"}, "'keys' must be an array of strings, got a string"),
        ("redis_del", {"keys": ["a", 2]}, "item 1 is the number 2"),
        ("redis_get", {"key": "k", "extra": 1}, "unknown argument 'extra'"),
    ],
)
def test_bad_arguments_are_named(tool: str, arguments: dict[str, Any], message: str) -> None:
    """Each wrong argument gets an error that names it and says what was expected."""
    with pytest.raises(InvalidArgumentError, match=message):
        spec(tool).parse_arguments(arguments)


def test_integral_floats_and_defaults() -> None:
    """JSON numbers like 3600.0 are accepted as integers; optional arguments take defaults."""
    assert spec("redis_set").parse_arguments({"key": "k", "value": "v", "ttl": 3600.0})["ttl"] == 3600
    assert spec("redis_set").parse_arguments({"key": "k", "value": "v"})["ttl"] is None
    assert spec("redis_keys").parse_arguments({})["pattern"] == "*"


def test_param_schema_carries_description_and_default() -> None:
    """The schema an agent sees is derived from the same Param that checks arguments."""
    param = Param("pattern", "string", "Glob", required=False, default="*")
    assert param.schema() == {"type": "string", "description": "Glob", "default": "*"}


def test_every_tool_is_in_a_group_the_shim_knows() -> None:
    """The shim checks --tools against tool_groups.GROUPS: every tool's group must be there."""
    from coordinatord.tool_groups import GROUPS

    assert REGISTRY.groups == frozenset(GROUPS)
