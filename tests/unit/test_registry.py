"""Tool definitions and argument checking: built once, errors name the argument."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field

from coordinatord.errors import InvalidArgumentError
from coordinatord.tools import build_registry
from coordinatord.tools.registry import Integer, NoArgs, ToolArgs, ToolReply, ToolSpec

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
    # Hints are listed only where they differ from MCP's defaults (readOnlyHint false,
    # destructiveHint true, idempotentHint false, openWorldHint true), so read them as a client.
    read_only = {name for name, ann in listing.items() if ann.get("readOnlyHint", False)}
    assert read_only == {"redis_get", "redis_keys", "redis_exists", "redis_ttl", "redis_ping"}
    writers = set(listing) - read_only
    assert {name for name in writers if listing[name].get("destructiveHint", True)} == {"redis_del"}
    assert all(listing[name].get("idempotentHint", False) for name in writers)
    assert all(ann["openWorldHint"] is False for ann in listing.values())


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
    ttl = spec("redis_set").parse_arguments({"key": "k", "value": "v", "ttl": 3600.0}).ttl
    assert ttl == 3600 and type(ttl) is int
    assert spec("redis_set").parse_arguments({"key": "k", "value": "v"}).ttl is None
    assert spec("redis_keys").parse_arguments({}).pattern == "*"
    assert spec("redis_keys").parse_arguments({"pattern": None}).pattern == "*"  # null: not given


async def _nothing(call: Any, args: Any) -> ToolReply:
    return ToolReply.text("")


class _GlobArgs(ToolArgs):
    pattern: str = Field("*", description="Glob")
    mode: Literal["a", "b"] | None = Field(None, description="Mode")
    count: Integer = Field(description="How many", ge=1)


def test_schema_comes_from_the_model_fields() -> None:
    """The schema an agent sees is derived from the same model that checks arguments."""
    schema = ToolSpec("t", "kv", "d", _GlobArgs, _nothing).definition()["inputSchema"]
    assert schema == {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Glob", "default": "*"},
            "mode": {"type": "string", "description": "Mode", "enum": ["a", "b"]},
            "count": {"type": "integer", "description": "How many", "minimum": 1},
        },
        "required": ["count"],
        "additionalProperties": False,
    }
    assert ToolSpec("t", "kv", "d", NoArgs, _nothing).definition()["inputSchema"]["properties"] == {}


def test_field_types_the_schema_cannot_show_are_refused_when_the_tool_is_defined() -> None:
    """A model field of a type or constraint without a plain schema fails at start-up, not on a call."""

    class Floaty(ToolArgs):
        ratio: float = Field(description="r")

    class Capped(ToolArgs):
        n: Integer = Field(description="n", le=5)

    class NullableRequired(ToolArgs):
        s: str | None = Field(description="s")

    class Undescribed(ToolArgs):
        s: str

    class PlainInt(ToolArgs):
        n: int = Field(description="n")

    for model, message in [
        (Floaty, "unsupported tool argument type"),
        (Capped, "unsupported constraint"),
        (NullableRequired, "X | None = None"),
        (Undescribed, "has no description"),
        (PlainInt, "as Integer, not int"),
    ]:
        with pytest.raises(TypeError, match=message):
            ToolSpec("t", "kv", "d", model, _nothing)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"count": 0}, "argument 'count' must be at least 1, got 0"),
        ({"count": 1, "mode": "c"}, "argument 'mode' must be one of a, b; got 'c'"),
        ({"count": 1, "mode": 3}, "argument 'mode' must be a string, got the number 3"),
        ({"count": "1"}, "argument 'count' must be an integer, got a string"),
        (
            {"pattern": 1, "count": "x", "zzz": 1},
            "unknown argument 'zzz' for t \\(it takes: pattern, mode, count\\)",
        ),
        ({"pattern": 1, "count": "x"}, "argument 'pattern' must be a string"),
        ({}, "argument 'count' is required by t"),
    ],
)
def test_pydantic_errors_become_ours(arguments: dict[str, Any], message: str) -> None:
    """Every kind of failure is worded as before: range, choice, type, unknown first, then order."""
    with pytest.raises(InvalidArgumentError, match=message):
        ToolSpec("t", "kv", "d", _GlobArgs, _nothing).parse_arguments(arguments)


def test_every_tool_is_in_a_group_the_shim_knows() -> None:
    """The shim checks --tools against tool_groups.GROUPS: every tool's group must be there (and
    output_schemas, a selection name no tool may take)."""
    from coordinatord.tool_groups import GROUPS, OUTPUT_SCHEMAS

    assert REGISTRY.groups == frozenset((*GROUPS, OUTPUT_SCHEMAS))


def test_every_text_argument_is_an_identifier_unless_declared_content() -> None:
    """A model's string arguments (choices, lists, str | int included) are identifiers, scanned
    before the call; only ``content`` opts one out (its service scans it), so a new argument is
    covered by default. An object must be declared content, and content must name arguments."""

    class Mixed(ToolArgs):
        content: ClassVar[frozenset[str]] = frozenset({"body"})
        name: str = Field(description="")
        names: list[str] = Field(description="")
        step: str | int = Field(description="")
        to: str | list[str] = Field(description="")
        mode: Literal["a", "b"] = Field("a", description="")
        count: Integer = Field(1, description="")
        flag: bool = Field(False, description="")
        body: str = Field(description="")

    class Stored(ToolArgs):
        context: dict[str, Any] = Field(description="")

    class Misnamed(ToolArgs):
        content: ClassVar[frozenset[str]] = frozenset({"vale"})
        value: str = Field(description="")

    mixed = ToolSpec("t", "kv", "d", Mixed, _nothing)
    assert mixed.identifiers == ("name", "names", "step", "to", "mode")
    with pytest.raises(TypeError, match="an object argument must be declared content"):
        ToolSpec("t", "kv", "d", Stored, _nothing)
    with pytest.raises(TypeError, match=r"Misnamed.content names no argument\(s\) \['vale'\]"):
        ToolSpec("t", "kv", "d", Misnamed, _nothing)
    assert spec("redis_set").identifiers == ("key",) and spec("redis_del").identifiers == ("keys",)


def test_identifier_texts_are_read_from_the_raw_arguments() -> None:
    """Before any check: strings and list items (by index) of identifier arguments; content,
    non-strings and unknown arguments are not among them."""

    class Named(ToolArgs):
        content: ClassVar[frozenset[str]] = frozenset({"body"})
        key: str = Field(description="")
        keys: list[str] = Field(description="")
        body: str = Field(description="")

    named = ToolSpec("t", "kv", "d", Named, _nothing)
    raw = {"key": "a", "keys": ["b", 3, "c"], "body": "not an identifier", "zzz": "unknown"}
    assert named.identifier_texts(raw) == [("key", "a"), ("keys[0]", "b"), ("keys[2]", "c")]
    # A wrong type is the check's to refuse; a string is scanned wherever it is given.
    assert named.identifier_texts({"key": 5, "keys": "b"}) == [("keys", "b")]
    assert named.identifier_texts(None) == []
