"""Tool definitions: parameters, schemas, annotations, groups — built once, not per call.

A tool is a :class:`ToolSpec` with one :class:`ToolArgs` model: the model's fields give the
JSON schema (computed when the registry is built) and the typed arguments its handler takes;
pydantic checks them, and :meth:`ToolSpec._argument_error` turns its errors into ours, which
name the argument. Nothing here does I/O or imports the MCP SDK.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from coordinatord.errors import InvalidArgumentError
from coordinatord.tool_groups import OUTPUT_SCHEMAS

if TYPE_CHECKING:
    from coordinatord.context import CallContext

ParamKind = Literal[
    "string", "integer", "boolean", "string_array", "object", "string_or_integer", "string_or_string_array"
]

_JSON_TYPES: Mapping[ParamKind, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string_array": {"type": "array", "items": {"type": "string"}},
    "object": {"type": "object"},
    "string_or_integer": {"type": ["string", "integer"]},
    "string_or_string_array": {"type": ["string", "array"], "items": {"type": "string"}},
}
_KIND_NAMES: Mapping[ParamKind, str] = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "string_array": "an array of strings",
    "object": "an object",
    "string_or_integer": "a string or an integer",
    "string_or_string_array": "a string or an array of strings",
}


def _integral(raw: object) -> object:
    """JSON has one number type: 3600.0 is the integer 3600 (1.5, inf and nan are left for the
    strict ``int`` check to refuse)."""
    if type(raw) is float and raw.is_integer():
        return int(raw)
    return raw


Integer = Annotated[int, BeforeValidator(_integral)]
"""An integer argument: strict (no ``"60"``, no ``true``) except that integral floats count."""


class ToolArgs(BaseModel):
    """A tool's arguments. Subclass it once per tool: its fields are the tool's parameters, in
    order, each with ``Field(description=...)`` (``""`` where the name and type say it all: every
    byte of it is in every model's context; plus ``ge=`` for a static minimum); the
    ``tools/list`` schema and the argument checks both come from it.

    Allowed field types (so that the schema stays the plain one agents know): ``str``,
    :data:`Integer`, ``bool``, ``list[str]``, ``dict[str, Any]``, ``str | int``, ``str | list[str]`` and a
    ``Literal`` of strings, each optionally ``| None`` for an optional argument without default.
    Strict: no coercion, unknown arguments refused; frozen: a handler cannot change its input.
    ``refused`` names unknown arguments worth a reason of their own when refused (e.g. a
    sender: the caller is always the connection's agent).

    Secrets: every string argument is an *identifier* (a key, an id, a name, a path, a filter,
    a choice) that :func:`coordinatord.server.calls.invoke` scans before the call runs or is
    logged (:attr:`ToolSpec.identifiers`), unless ``content`` names it: content is what an agent
    stores (a value, a message, a context), scanned by the service that writes it, where
    ``secrets.policy = "redact"`` can store it redacted. So a new argument is covered unless it
    is declared content, and declaring it content means its service must scan it (the
    integration test ``test_secrets_identifiers`` checks each declared one through the daemon).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    refused: ClassVar[Mapping[str, str]] = {}
    content: ClassVar[frozenset[str]] = frozenset()


class NoArgs(ToolArgs):
    """The arguments of a tool that takes none."""


@dataclass(frozen=True)
class _Param:
    """One field of a :class:`ToolArgs` model as the schema and the error messages see it."""

    name: str
    kind: ParamKind
    schema: dict[str, Any]
    required: bool
    choices: tuple[str, ...]


_TEXT_KINDS: frozenset[ParamKind] = frozenset(
    {"string", "string_array", "string_or_integer", "string_or_string_array"}
)
"""The kinds that can carry text an agent typed: an identifier unless declared content."""


def _is_integer(metadata: Iterable[object]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is _integral for m in metadata)


def _kind_of(annotation: Any, integral: bool) -> tuple[ParamKind, tuple[str, ...], bool]:
    """``(kind, choices, optional)`` of a field's annotation; anything else is a definition bug."""
    optional = False
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007 - built at runtime
        args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        integral = integral or _is_integer(args[1:])
        annotation = args[0]
        args = get_args(annotation)
    origin = get_origin(annotation)
    if annotation is str:
        return "string", (), optional
    if annotation is int:
        # Plain int would refuse 3600.0, which every other integer argument takes.
        if not integral:
            raise TypeError("type integer arguments as Integer, not int")
        return "integer", (), optional
    if annotation is bool:
        return "boolean", (), optional
    if origin is list and args == (str,):
        return "string_array", (), optional
    if origin is dict and args == (str, Any):
        return "object", (), optional
    if origin in (Union, UnionType) and set(args) == {str, int}:
        return "string_or_integer", (), optional
    if origin in (Union, UnionType) and len(args) == 2 and str in args and list[str] in args:
        return "string_or_string_array", (), optional
    if origin is Literal and all(isinstance(a, str) for a in args):
        return "string", tuple(args), optional
    raise TypeError(f"unsupported tool argument type {annotation!r}")


def _params_of(model: type[ToolArgs]) -> tuple[_Param, ...]:
    params = []
    for name, info in model.model_fields.items():
        # A top-level Annotated's metadata is in info.metadata (pydantic moves it there).
        kind, choices, nullable = _kind_of(info.annotation, _is_integer(info.metadata))
        required = info.is_required()
        if nullable != (not required and info.default is None):
            # null means "not given", so only an optional argument without a default (None) is
            # typed "| None"; anything else would make the schema and the checks disagree.
            raise TypeError(f"{model.__name__}.{name}: type it X | None = None, or X with a default, or X")
        if info.description is None:
            # Deliberate either way: description="" where the name and type say it all.
            raise TypeError(f"{model.__name__}.{name} has no description")
        schema: dict[str, Any] = dict(_JSON_TYPES[kind])
        if info.description:
            schema["description"] = info.description
        if choices:
            schema["enum"] = list(choices)
        for constraint in info.metadata:
            if isinstance(constraint, BeforeValidator):
                continue  # Integer's float rule: no trace in the schema
            minimum = getattr(constraint, "ge", None)  # annotated_types.Ge, from Field(ge=...)
            if not isinstance(minimum, int):
                raise TypeError(f"{model.__name__}.{name}: unsupported constraint {constraint!r}")
            schema["minimum"] = minimum
        if not required and info.default is not None:
            schema["default"] = info.default
        if kind == "object" and name not in model.content:
            # An object is stored, not named: only its service can scan (and redact) it.
            raise TypeError(f"{model.__name__}.{name}: an object argument must be declared content")
        params.append(_Param(name, kind, schema, required, choices))
    unknown = model.content - model.model_fields.keys()
    if unknown:
        raise TypeError(f"{model.__name__}.content names no argument(s) {sorted(unknown)}")
    return tuple(params)


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


A = TypeVar("A", bound=ToolArgs)
Handler = Callable[["CallContext", A], Awaitable[ToolReply]]


@dataclass(frozen=True)
class ToolSpec(Generic[A]):
    """A tool: ``args`` is its :class:`ToolArgs` model, ``handler`` takes an instance of it."""

    name: str
    group: str
    description: str
    args: type[A]
    handler: Handler[A]
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    title: str | None = None
    output: type[BaseModel] | None = None
    needs_project: bool = True
    """False only for tools that touch no project's keys (``redis_ping``): they also work on a
    connection whose shim named no project."""
    _params: Mapping[str, _Param] = field(init=False, repr=False, compare=False)
    identifiers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The arguments scanned for secrets before the call runs: every text argument that the
    model does not declare content (see :class:`ToolArgs`)."""

    def __post_init__(self) -> None:
        params = _params_of(self.args)
        object.__setattr__(self, "_params", {p.name: p for p in params})
        content = self.args.content
        identifiers = tuple(p.name for p in params if p.kind in _TEXT_KINDS and p.name not in content)
        object.__setattr__(self, "identifiers", identifiers)

    def identifier_texts(self, arguments: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        """``(argument, text)`` for each string given in an identifier argument (a list's items
        as ``name[i]``), read from the raw arguments: before they are checked, so that no check's
        error can echo a secret. A string is taken wherever it is given (a list's place too);
        other values are the check's to refuse."""
        if not arguments:
            return []
        texts: list[tuple[str, str]] = []
        for name in self.identifiers:
            value = arguments.get(name)
            if isinstance(value, str):
                texts.append((name, value))
            elif isinstance(value, list):
                texts += [(f"{name}[{i}]", item) for i, item in enumerate(value) if isinstance(item, str)]
        return texts

    def definition(self, output_schema: bool = True) -> dict[str, Any]:
        """The tool as ``tools/list`` shows it (with its compacted output schema, if it has one
        and ``output_schema``)."""
        definition: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": {p.name: p.schema for p in self._params.values()},
                "required": [p.name for p in self._params.values() if p.required],
                "additionalProperties": False,
            },
            "annotations": self._annotations(),
        }
        if not definition["inputSchema"]["required"]:
            del definition["inputSchema"]["required"]  # an empty list says nothing
        if self.output is not None and output_schema:
            definition["outputSchema"] = compact_schema(self.output.model_json_schema(mode="serialization"))
        if self.title:
            definition["title"] = self.title
        return definition

    def _annotations(self) -> dict[str, bool]:
        """The hints that differ from MCP's defaults (readOnlyHint false, destructiveHint true,
        idempotentHint false, openWorldHint true): a client reads an absent hint as its default.
        destructiveHint and idempotentHint mean something only for a tool that writes."""
        if self.read_only:
            return {"readOnlyHint": True, "openWorldHint": False}
        hints: dict[str, bool] = {}
        if not self.destructive:
            hints["destructiveHint"] = False
        if self.idempotent:
            hints["idempotentHint"] = True
        hints["openWorldHint"] = False  # every tool acts on this project's store only
        return hints

    def parse_arguments(self, arguments: Mapping[str, Any] | None) -> A:
        """The arguments as the tool's model, or an :class:`InvalidArgumentError` naming one."""
        given = arguments or {}
        if None in given.values():
            # null means "not given" (MCP clients send it for cleared optional fields); a null
            # unknown argument stays, to be refused as unknown.
            given = {k: v for k, v in given.items() if v is not None or k not in self._params}
        try:
            return self.args.model_validate(given)
        except ValidationError as exc:
            raise self._argument_error(given, exc) from None

    def _argument_error(self, given: Mapping[str, Any], exc: ValidationError) -> InvalidArgumentError:
        """The one place pydantic's errors become ours: the first unknown argument, else the
        first bad parameter in parameter order (pydantic reports fields in that order)."""
        errors = exc.errors(include_url=False, include_context=True)
        for error in errors:
            if error["type"] == "extra_forbidden":
                reason = self.args.refused.get(str(error["loc"][0]))
                if reason is not None:
                    return InvalidArgumentError(
                        f"argument {error['loc'][0]!r} is refused by {self.name}: {reason}"
                    )
                expected = ", ".join(self._params) or "none"
                return InvalidArgumentError(
                    f"unknown argument {error['loc'][0]!r} for {self.name} (it takes: {expected})"
                )
        error = errors[0]
        loc = error["loc"]
        param = self._params[str(loc[0])]
        name = param.name
        if error["type"] == "missing":
            return InvalidArgumentError(f"argument {name!r} is required by {self.name}")
        raw = given[name]
        if error["type"] == "greater_than_equal":
            return InvalidArgumentError(f"argument {name!r} must be at least {error['ctx']['ge']}, got {raw}")
        if param.choices and isinstance(raw, str):
            return InvalidArgumentError(
                f"argument {name!r} must be one of {', '.join(param.choices)}; got {raw[:80]!r}"
            )
        if param.kind == "string_array" and isinstance(raw, list) and len(loc) > 1:
            item = _json_type(error["input"])
            return InvalidArgumentError(
                f"argument {name!r} must be an array of strings; item {loc[1]} is {item}"
            )
        if param.kind == "string_or_string_array" and isinstance(raw, list):
            index, bad = next((i, v) for i, v in enumerate(raw) if not isinstance(v, str))
            item = _json_type(bad)
            return InvalidArgumentError(
                f"argument {name!r} must be a string or an array of strings; item {index} is {item}"
            )
        # Any other failure is the wrong JSON type (strict mode converts nothing).
        expected = _KIND_NAMES[param.kind]
        return InvalidArgumentError(f"argument {name!r} must be {expected}, got {_json_type(raw)}")


class ToolRegistry:
    """All tools, by name and by group; ``tools/list`` results are cached per group set."""

    def __init__(self, specs: Iterable[ToolSpec[Any]], groups: frozenset[str] = frozenset()) -> None:
        self._groups = groups
        self._specs: dict[str, ToolSpec[Any]] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"tool {spec.name} is defined twice")
            self._specs[spec.name] = spec
        # A selection holds group and tool names side by side: they must not collide.
        clash = set(self._specs) & self.groups
        if clash:
            raise ValueError(f"tool(s) {sorted(clash)} are named like a group")
        self._listings: dict[frozenset[str], list[dict[str, Any]]] = {}

    @property
    def groups(self) -> frozenset[str]:
        return self._groups | frozenset(spec.group for spec in self._specs.values())

    def get(self, name: str, groups: frozenset[str]) -> ToolSpec[Any] | None:
        """The tool, if the selection ``groups`` (group and tool names) includes it."""
        spec = self._specs.get(name)
        return spec if spec is not None and _selected(spec, groups) else None

    def listing(self, groups: frozenset[str]) -> list[dict[str, Any]]:
        """``tools/list``'s tools for a selection of group and tool names (a profile expanded by
        :func:`coordinatord.tool_groups.selection`); a name with no tool yet selects nothing.
        Output schemas are listed only when the selection names ``output_schemas``."""
        cached = self._listings.get(groups)
        if cached is None:
            schemas = OUTPUT_SCHEMAS in groups
            cached = [spec.definition(schemas) for spec in self._specs.values() if _selected(spec, groups)]
            self._listings[groups] = cached
        return cached


def _selected(spec: ToolSpec[Any], groups: frozenset[str]) -> bool:
    return spec.group in groups or spec.name in groups


# --- Output schemas ------------------------------------------------------------------------------
# pydantic's model_json_schema is written for documentation: a title on every field, the model
# docstrings and field descriptions, defaults, ``anyOf [X, null]`` for each optional field and a
# ``$defs`` entry per nested model. In tools/list every byte is paid by every model on every
# turn, and a client only needs the shape (the SDK client validates structuredContent against
# it), so the wire keeps the shape and drops the prose; the descriptions stay in the code and
# docs/tools.md explains the fields.

_PROSE = frozenset({"title", "description", "default", "examples"})
_NAMED = frozenset({"properties", "$defs", "patternProperties"})
"""Keywords whose value maps names to schemas (a field may be called "title")."""


def compact_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (a pydantic JSON schema, draft 2020-12) without titles, descriptions and
    defaults, ``anyOf [X, null]`` folded into X's ``type`` (and ``enum``), and each ``$defs``
    entry used once inlined where it is used; the instances it accepts are the same."""
    defs = dict(schema.get("$defs", {}))
    uses: dict[str, int] = {}
    _count_refs(schema, uses)
    inline = {name for name in defs if uses.get(name, 0) == 1 and not _refers(defs[name], name, defs)}
    compacted = _compact(schema, defs, inline)
    kept = {name: compacted["$defs"][name] for name in compacted.get("$defs", {}) if name not in inline}
    compacted.pop("$defs", None)
    if kept:
        compacted["$defs"] = kept
    return compacted


def _ref_name(ref: str) -> str:
    return ref.removeprefix("#/$defs/")


def _count_refs(node: Any, uses: dict[str, int]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            uses[_ref_name(ref)] = uses.get(_ref_name(ref), 0) + 1
        for value in node.values():
            _count_refs(value, uses)
    elif isinstance(node, list):
        for value in node:
            _count_refs(value, uses)


def _refers(node: Any, name: str, defs: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``node`` reaches the definition ``name`` (a recursive one must stay a $ref)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = _ref_name(ref)
            if target == name:
                return True
            if target not in seen and _refers(defs.get(target), name, defs, seen | {target}):
                return True
        return any(_refers(value, name, defs, seen) for value in node.values())
    if isinstance(node, list):
        return any(_refers(value, name, defs, seen) for value in node)
    return False


def _compact(node: Mapping[str, Any], defs: Mapping[str, Any], inline: set[str]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and _ref_name(ref) in inline:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**_compact(defs[_ref_name(ref)], defs, inline), **_compact(siblings, defs, inline)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _PROSE:
            continue
        if key in _NAMED:
            out[key] = {name: _compact(sub, defs, inline) for name, sub in value.items()}
        elif isinstance(value, dict):
            out[key] = _compact(value, defs, inline)
        elif isinstance(value, list) and key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = [_compact(sub, defs, inline) for sub in value]
        else:
            out[key] = value
    return _fold_null(out)


def _fold_null(node: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [X, {"type": "null"}]}`` as X with "null" among its types, when X has a
    ``type`` to extend (a bare ``$ref`` or a union of several stays an anyOf)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    [other] = [b for b in branches if b != {"type": "null"}]
    kind = other.get("type")
    if kind is None or "$ref" in other or any(k in other for k in ("anyOf", "oneOf", "allOf", "const")):
        return node
    folded = {k: v for k, v in node.items() if k != "anyOf"}
    folded.update(other)
    folded["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in other:
        # enum applies to every instance: null must be one of its values too.
        folded["enum"] = [*other["enum"], None]
    return folded
