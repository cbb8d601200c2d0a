"""The registry's output-schema compactor: what ``tools/list`` lists under ``outputSchema`` (with
``output_schemas``, as ``full`` has it) is valid JSON Schema without prose, and accepts and refuses
what pydantic's full schema does."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # the SDK client validates with it; no stubs
from pydantic import BaseModel, Field

from coordinatord import tool_groups
from coordinatord.tools import build_registry
from coordinatord.tools.registry import compact_schema

FULL = build_registry().listing(tool_groups.selection(["full"]))


class Peer(BaseModel):
    """A nested model used once: inlined."""

    pid: int | None = Field(description="a pid")


class Step(BaseModel):
    """A nested model used twice: kept in $defs."""

    name: str
    status: Literal["pending", "done"]


class Node(BaseModel):
    """A recursive model: must stay a $ref."""

    label: str
    children: list[Node] = []


class Sample(BaseModel):
    """Optional scalars, an optional enum, nested models once, twice and recursively."""

    title: str = Field(description="a field called title is a field, not prose")
    note: str | None = None
    mode: Literal["a", "b"] | None = None
    peer: Peer | None = None
    first: Step
    rest: list[Step] = []
    tree: Node | None = None


@pytest.mark.parametrize("tool", [t for t in FULL if "outputSchema" in t], ids=lambda t: t["name"])
def test_every_listed_output_schema_is_valid_and_without_prose(tool: dict[str, Any]) -> None:
    """Each output schema in full's listing is valid draft 2020-12, an object schema, and carries no
    titles, descriptions, defaults, or anyOf with null around a typed schema."""
    schema = tool["outputSchema"]
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    text = json.dumps(schema)
    for word in ('"title":', '"description":', '"default":'):
        # The word may be a property name (followed by a schema object), never a keyword.
        assert f"{word} {{" in text or word not in text, (tool["name"], word)


def test_compacting_keeps_what_is_valid() -> None:
    """The compact schema accepts pydantic's dumps (fields null or set) and refuses what the full
    schema refuses; titles, defaults and single-use $defs are gone, shared and recursive ones kept."""
    full = Sample.model_json_schema(mode="serialization")
    compact = compact_schema(full)
    Draft202012Validator.check_schema(compact)
    assert set(compact["$defs"]) == {"Step", "Node"}  # Peer, used once, is inlined
    assert compact["properties"]["note"] == {"type": ["string", "null"]}
    assert compact["properties"]["mode"] == {"enum": ["a", "b", None], "type": ["string", "null"]}
    assert "title" in compact["properties"]  # the field of that name stays
    samples = [
        Sample(title="t", first=Step(name="s", status="done")),
        Sample(
            title="t",
            note="n",
            mode="b",
            peer=Peer(pid=3),
            first=Step(name="s", status="pending"),
            rest=[Step(name="r", status="done")],
            tree=Node(label="x", children=[Node(label="y")]),
        ),
    ]
    bad = [
        {"title": "t", "first": {"name": "s", "status": "nope"}},
        {"title": "t", "first": {"name": "s", "status": "done"}, "mode": "c"},
        {"title": "t", "first": {"name": "s", "status": "done"}, "peer": {"pid": "3"}},
        {"title": "t", "first": {"name": "s", "status": "done"}, "tree": {"label": 1}},
        {"first": {"name": "s", "status": "done"}},
    ]
    full_check, compact_check = Draft202012Validator(full), Draft202012Validator(compact)
    for sample in samples:
        dumped = sample.model_dump(mode="json")
        assert full_check.is_valid(dumped) and compact_check.is_valid(dumped)
    for instance in bad:
        assert not full_check.is_valid(instance) and not compact_check.is_valid(instance), instance


def test_output_schemas_cost_about_as_much_as_the_rest_of_the_list() -> None:
    """output_schemas roughly doubles the list (why only full names it): the sizes stay honest."""
    every = tool_groups.selection(list(tool_groups.GROUPS))
    plain = len(json.dumps(build_registry().listing(every), separators=(",", ":")))
    with_schemas = len(json.dumps(FULL, separators=(",", ":")))
    assert 1.5 * plain < with_schemas < 3 * plain
