"""Tool definitions: parameters, schemas, annotations, groups — built once, not per call.

A tool is a :class:`ToolSpec`: its JSON schema and MCP definition are computed when the
registry is built, and arguments are checked by small per-parameter parsers whose errors
name the argument. Nothing here does I/O or imports the MCP SDK.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from coordinatord.errors import InvalidArgumentError

if TYPE_CHECKING:
    from coordinatord.context import CallContext

ParamKind = Literal["string", "integer", "boolean", "string_array", "object", "string_or_integer"]

_JSON_TYPES: Mapping[ParamKind, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string_array": {"type": "array", "items": {"type": "string"}},
    "object": {"type": "object"},
    "string_or_integer": {"type": ["string", "integer"]},
}
_KIND_NAMES: Mapping[ParamKind, str] = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "string_array": "an array of strings",
    "object": "an object",
    "string_or_integer": "a string or an integer",
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    description: str
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()  # for strings: the allowed values (an enum in the schema)
    minimum: int | None = None  # for integers

    def schema(self) -> dict[str, Any]:
        schema = {**_JSON_TYPES[self.kind], "description": self.description}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if not self.required and self.default is not None:
            schema["default"] = self.default
        return schema

    def parse(self, raw: Any) -> Any:
        """The argument's value, or an :class:`InvalidArgumentError` naming it."""
        value = self._parse_type(raw)
        if self.choices and value not in self.choices:
            raise InvalidArgumentError(
                f"argument {self.name!r} must be one of {', '.join(self.choices)}; got {str(value)[:80]!r}"
            )
        if self.minimum is not None and isinstance(value, int) and value < self.minimum:
            raise InvalidArgumentError(f"argument {self.name!r} must be at least {self.minimum}, got {value}")
        return value

    def _parse_type(self, raw: Any) -> Any:
        if self.kind == "string_or_integer":
            if isinstance(raw, str):
                return raw
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
        elif self.kind == "boolean":
            if isinstance(raw, bool):
                return raw
        elif self.kind == "string":
            if isinstance(raw, str):
                return raw
        elif self.kind == "integer":
            # JSON has one number type: accept 3600.0 but not 1.5, nor true/false.
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
                return int(raw)
        elif self.kind == "string_array":
            if isinstance(raw, list):
                for index, item in enumerate(raw):
                    if not isinstance(item, str):
                        raise InvalidArgumentError(
                            f"argument {self.name!r} must be an array of strings; "
                            f"item {index} is {_json_type(item)}"
                        )
                return raw
        elif isinstance(raw, dict):
            return raw
        raise InvalidArgumentError(
            f"argument {self.name!r} must be {_KIND_NAMES[self.kind]}, got {_json_type(raw)}"
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class ToolReply:
    """What a tool returns: text blocks for the agent, optional structured content."""

    texts: tuple[str, ...]
    structured: dict[str, Any] | None = None
    is_error: bool = False

    @classmethod
    def text(cls, *texts: str) -> ToolReply:
        return cls(texts=texts)

    @classmethod
    def data(cls, result: BaseModel) -> ToolReply:
        """A structured result: ``structuredContent`` and the same JSON as text."""
        structured = result.model_dump(mode="json")
        return cls(
            texts=(json.dumps(structured, ensure_ascii=False, separators=(",", ":")),), structured=structured
        )

    def to_wire(self) -> dict[str, Any]:
        result: dict[str, Any] = {"content": [{"type": "text", "text": t} for t in self.texts]}
        if self.structured is not None:
            result["structuredContent"] = self.structured
        if self.is_error:
            result["isError"] = True
        return result


Handler = Callable[["CallContext", dict[str, Any]], Awaitable[ToolReply]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    group: str
    description: str
    params: tuple[Param, ...]
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    title: str | None = None
    output: type[BaseModel] | None = None
    needs_project: bool = True
    """False only for tools that touch no project's keys (``redis_ping``): they also work on a
    connection whose shim named no project."""
    _by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def definition(self) -> dict[str, Any]:
        """The tool as ``tools/list`` shows it."""
        definition: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": {p.name: p.schema() for p in self.params},
                "required": [p.name for p in self.params if p.required],
                "additionalProperties": False,
            },
            "annotations": {
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent,
                "openWorldHint": False,
            },
        }
        if self.output is not None:
            definition["outputSchema"] = self.output.model_json_schema(mode="serialization")
        if self.title:
            definition["title"] = self.title
            definition["annotations"]["title"] = self.title
        return definition

    def parse_arguments(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        given = arguments or {}
        unknown = [name for name in given if name not in self._by_name]
        if unknown:
            expected = ", ".join(p.name for p in self.params) or "none"
            raise InvalidArgumentError(
                f"unknown argument {unknown[0]!r} for {self.name} (it takes: {expected})"
            )
        parsed: dict[str, Any] = {}
        for param in self.params:
            raw = given.get(param.name)
            if raw is None:
                if param.required:
                    raise InvalidArgumentError(f"argument {param.name!r} is required by {self.name}")
                parsed[param.name] = param.default
            else:
                parsed[param.name] = param.parse(raw)
        return parsed


class ToolRegistry:
    """All tools, by name and by group; ``tools/list`` results are cached per group set."""

    def __init__(self, specs: Iterable[ToolSpec], groups: frozenset[str] = frozenset()) -> None:
        self._groups = groups
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"tool {spec.name} is defined twice")
            self._specs[spec.name] = spec
        self._listings: dict[frozenset[str], list[dict[str, Any]]] = {}

    @property
    def groups(self) -> frozenset[str]:
        return self._groups | frozenset(spec.group for spec in self._specs.values())

    def get(self, name: str, groups: frozenset[str]) -> ToolSpec | None:
        spec = self._specs.get(name)
        return spec if spec is not None and spec.group in groups else None

    def listing(self, groups: frozenset[str]) -> list[dict[str, Any]]:
        cached = self._listings.get(groups)
        if cached is None:
            cached = [spec.definition() for spec in self._specs.values() if spec.group in groups]
            self._listings[groups] = cached
        return cached
