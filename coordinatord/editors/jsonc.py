"""A small span editor for JSON and JSONC (JSON with ``//`` and ``/* */`` comments and trailing
commas): parse a file into a tree of nodes that know their byte spans, then change one member of
one object by splicing text, so every other byte of the file (comments, indentation, key order,
blank lines, number spellings) stays as it was.

Why not a library: the maintained Python JSON5/JSONC parsers (``json5``, ``pyjson5``,
``commentjson``) return plain values and write files anew, which drops every comment; the
round-trip ones (``json5kit``) have not been released for years. Editors' MCP files need exactly
two operations (set one member, delete one member), which is little code to own and test.

``strict=True`` refuses comments and trailing commas, for files their editor reads with a plain
JSON parser (writing one there would break the editor, and accepting one would hide a problem).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class JsoncError(ValueError):
    """The text is not valid JSON/JSONC; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


@dataclass
class Node:
    start: int
    end: int
    value: Any = None  # the Python value (for objects and arrays: built on demand by python())


@dataclass
class Member:
    key: str
    key_start: int
    value: Node
    comma: int | None = None  # offset of the comma after the value, if any


@dataclass
class ObjectNode(Node):
    members: list[Member] = field(default_factory=list)

    def get(self, key: str) -> Member | None:
        """The member named ``key`` (the last one, as JSON parsers take duplicates)."""
        found = None
        for member in self.members:
            if member.key == key:
                found = member
        return found


@dataclass
class ArrayNode(Node):
    items: list[Node] = field(default_factory=list)


def python(node: Node) -> Any:
    """The node's value as Python data."""
    if isinstance(node, ObjectNode):
        return {m.key: python(m.value) for m in node.members}
    if isinstance(node, ArrayNode):
        return [python(item) for item in node.items]
    return node.value


@dataclass
class Document:
    text: str
    root: Node | None  # None: the text holds no value (empty, or only whitespace and comments)
    strict: bool


def parse(text: str, strict: bool = False) -> Document:
    """Parse ``text``; raise :class:`JsoncError` with the line and column of the first problem."""
    parser = _Parser(text, strict)
    parser.skip()
    if parser.pos == len(text):
        return Document(text, None, strict)
    root = parser.value()
    parser.skip()
    if parser.pos != len(text):
        parser.fail("unexpected text after the end of the document")
    return Document(text, root, strict)


class _Parser:
    def __init__(self, text: str, strict: bool) -> None:
        self.text = text
        self.strict = strict
        self.pos = 0

    def fail(self, message: str, at: int | None = None) -> None:
        offset = self.pos if at is None else at
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        raise JsoncError(message, line, column)

    def skip(self) -> None:
        """Whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos) or text.startswith("/*", self.pos):
                if self.strict:
                    self.fail("comments are not allowed in this file (it is read as plain JSON)")
                if text[self.pos + 1] == "/":
                    newline = text.find("\n", self.pos)
                    self.pos = len(text) if newline < 0 else newline
                else:
                    close = text.find("*/", self.pos + 2)
                    if close < 0:
                        self.fail("unterminated /* comment")
                    self.pos = close + 2
            else:
                return

    def value(self) -> Node:
        text = self.text
        if self.pos >= len(text):
            self.fail("unexpected end of the document, expected a value")
        char = text[self.pos]
        if char == "{":
            return self.object()
        if char == "[":
            return self.array()
        if char == '"':
            start = self.pos
            return Node(start, self.string_end(), self.string_value(start))
        for word, literal in _LITERALS.items():
            if text.startswith(word, self.pos):
                start = self.pos
                self.pos += len(word)
                return Node(start, self.pos, literal)
        match = _NUMBER.match(text, self.pos)
        if match:
            self.pos = match.end()
            return Node(match.start(), match.end(), json.loads(match.group()))
        self.fail(f"unexpected {text[self.pos]!r}, expected a value")
        raise AssertionError  # pragma: no cover (fail raises)

    def string_end(self) -> int:
        text = self.text
        index = self.pos + 1
        while index < len(text):
            char = text[index]
            if char == "\\":
                index += 2
            elif char == '"':
                self.pos = index + 1
                return self.pos
            elif char == "\n":
                break
            else:
                index += 1
        self.fail("unterminated string")
        raise AssertionError  # pragma: no cover

    def string_value(self, start: int) -> str:
        try:
            value = json.loads(self.text[start : self.pos])
        except json.JSONDecodeError as exc:
            self.fail(f"invalid string: {exc.msg}", at=start + exc.pos)
        assert isinstance(value, str)
        return value

    def object(self) -> ObjectNode:
        node = ObjectNode(self.pos, -1)
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text):
                self.fail("unexpected end of the document, expected '}'")
            if self.text[self.pos] == "}":
                if node.members and node.members[-1].comma is not None and self.strict:
                    self.fail("trailing comma before '}' (not allowed in plain JSON)", node.members[-1].comma)
                self.pos += 1
                node.end = self.pos
                return node
            if node.members and node.members[-1].comma is None:
                self.fail("expected ',' or '}'")
            if self.text[self.pos] != '"':
                self.fail("expected a key in double quotes")
            key_start = self.pos
            self.string_end()
            key = self.string_value(key_start)
            self.skip()
            if not self.text.startswith(":", self.pos):
                self.fail("expected ':' after the key")
            self.pos += 1
            self.skip()
            member = Member(key, key_start, self.value())
            node.members.append(member)
            self.skip()
            if self.text.startswith(",", self.pos):
                member.comma = self.pos
                self.pos += 1

    def array(self) -> ArrayNode:
        node = ArrayNode(self.pos, -1)
        self.pos += 1
        comma_after_last: int | None = None
        while True:
            self.skip()
            if self.pos >= len(self.text):
                self.fail("unexpected end of the document, expected ']'")
            if self.text[self.pos] == "]":
                if comma_after_last is not None and self.strict:
                    self.fail("trailing comma before ']' (not allowed in plain JSON)", comma_after_last)
                self.pos += 1
                node.end = self.pos
                return node
            if node.items and comma_after_last is None:
                self.fail("expected ',' or ']'")
            node.items.append(self.value())
            self.skip()
            comma_after_last = None
            if self.text.startswith(",", self.pos):
                comma_after_last = self.pos
                self.pos += 1


# --- edits --------------------------------------------------------------------------------------


def lookup(doc: Document, path: tuple[str, ...]) -> Node | None:
    """The node at ``path`` (keys of nested objects), or None when some part is missing."""
    node = doc.root
    for key in path:
        if not isinstance(node, ObjectNode):
            return None
        member = node.get(key)
        if member is None:
            return None
        node = member.value
    return node


def set_member(doc: Document, path: tuple[str, ...], key: str, value: Any) -> str:
    """The text with ``key`` of the object at ``path`` set to ``value``; objects of ``path`` that
    do not exist are created. Raises :class:`ValueError` when something on the way is not an
    object."""
    text = doc.text
    if doc.root is None:
        nested: Any = {key: value}
        for part in reversed(path):
            nested = {part: nested}
        prefix = text.rstrip()
        body = _dump(nested, "  ", "")
        return f"{prefix}\n{body}\n" if prefix else f"{body}\n"
    if not isinstance(doc.root, ObjectNode):
        raise ValueError("the document is not a JSON object")
    node: ObjectNode = doc.root
    for index, part in enumerate(path):
        member = node.get(part)
        if member is None:
            nested = {key: value}
            for later in reversed(path[index + 1 :]):
                nested = {later: nested}
            return _insert(text, node, part, nested)
        if not isinstance(member.value, ObjectNode):
            raise ValueError(f"{'.'.join(path[: index + 1])} is not an object")
        node = member.value
    existing = node.get(key)
    if existing is None:
        return _insert(text, node, key, value)
    indent = _line_indent(text, existing.key_start)
    replacement = _dump(value, _indent_unit(text), indent, inline=_is_inline(text, node))
    return text[: existing.value.start] + replacement + text[existing.value.end :]


def remove_member(doc: Document, path: tuple[str, ...], key: str) -> str:
    """The text without member ``key`` of the object at ``path`` (unchanged when it is not there).

    Removes the member's own lines and the one comma that separated it, so that a member
    :func:`set_member` appended is taken out again byte for byte."""
    text = doc.text
    node = lookup(doc, path)
    if not isinstance(node, ObjectNode):
        return text
    member = node.get(key)
    if member is None:
        return text
    index = node.members.index(member)
    start = _line_start_if_blank_before(text, member.key_start)
    if len(node.members) == 1:
        inner_start, inner_end = node.start + 1, node.end - 1
        end = member.comma + 1 if member.comma is not None else member.value.end
        if not text[inner_start:start].strip() and not text[end:inner_end].strip():
            return text[:inner_start] + text[inner_end:]  # `{ only }` → `{}`
        return text[:start] + text[end:]
    if member.comma is not None:
        end = member.comma + 1
        if start == member.key_start:  # on a line with others: the blanks after it go too
            while end < len(text) and text[end] in " \t":
                end += 1
        return text[:start] + text[end:]
    # The last member, with no comma after it: take out the comma before it instead.
    previous = node.members[index - 1]
    assert previous.comma is not None
    if not text[previous.comma + 1 : member.key_start].strip():
        return text[: previous.comma] + text[member.value.end :]
    cut = text[:start] + text[member.value.end :]
    return cut[: previous.comma] + cut[previous.comma + 1 :]


def _insert(text: str, node: ObjectNode, key: str, value: Any) -> str:
    unit = _indent_unit(text)
    if not node.members:
        inner = text[node.start + 1 : node.end - 1]
        indent = _line_indent(text, node.start)
        member = f"{json.dumps(key)}: {_dump(value, unit, indent + unit)}"
        if not inner.strip():
            return f"{text[: node.start + 1]}\n{indent}{unit}{member}\n{indent}{text[node.end - 1 :]}"
        # Only comments inside: put the member after them, on a line of its own.
        close = _line_start_if_blank_before(text, node.end - 1)
        return f"{text[:close]}\n{indent}{unit}{member}{text[close:]}"
    last = node.members[-1]
    if _is_inline(text, node):
        member = f"{json.dumps(key)}: {_dump(value, unit, '', inline=True)}"
        if last.comma is not None:
            return f"{text[: last.comma + 1]} {member},{text[last.comma + 1 :]}"
        return f"{text[: last.value.end]}, {member}{text[last.value.end :]}"
    indent = _line_indent(text, last.key_start)
    member = f"{json.dumps(key)}: {_dump(value, unit, indent)}"
    after = last.comma + 1 if last.comma is not None else last.value.end
    line_end = _end_of_line(text, after)
    if last.comma is not None:
        # The file ends its members with a comma: so does ours.
        return f"{text[:line_end]}\n{indent}{member},{text[line_end:]}"
    return f"{text[: last.value.end]},{text[last.value.end : line_end]}\n{indent}{member}{text[line_end:]}"


def _end_of_line(text: str, pos: int) -> int:
    """Where the line holding ``pos`` ends, past trailing whitespace and comments; ``pos``
    itself when real text follows on that line."""
    index = pos
    while index < len(text):
        char = text[index]
        if char in " \t\r":
            index += 1
        elif text.startswith("//", index):
            newline = text.find("\n", index)
            return len(text) if newline < 0 else newline
        elif text.startswith("/*", index):
            close = text.find("*/", index + 2)
            if close < 0 or "\n" in text[index:close]:
                return pos
            index = close + 2
        elif char == "\n":
            return index
        else:
            return pos
    return index


def _line_start_if_blank_before(text: str, pos: int) -> int:
    """The newline before ``pos`` when only blanks stand between; else ``pos``."""
    index = pos
    while index > 0 and text[index - 1] in " \t":
        index -= 1
    if index > 0 and text[index - 1] == "\n":
        index -= 1
        if index > 0 and text[index - 1] == "\r":
            index -= 1
        return index
    return pos


def _line_indent(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    line = text[line_start:pos]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _is_inline(text: str, node: ObjectNode) -> bool:
    """Whether the object's members share the line of its ``{`` (a compact object)."""
    if not node.members:
        return False
    return "\n" not in text[node.start : node.members[0].key_start]


def _indent_unit(text: str) -> str:
    """One level of indentation as the file has it: a tab, or the smallest run of spaces that
    starts an indented line (two spaces for a file that has none)."""
    widths: list[int] = []
    for line in text.splitlines():
        stripped = line.lstrip(" \t")
        if not stripped or len(stripped) == len(line):
            continue
        if line.startswith("\t"):
            return "\t"
        widths.append(len(line) - len(line.lstrip(" ")))
    return " " * min(widths) if widths else "  "


def _dump(value: Any, unit: str, indent: str, inline: bool = False) -> str:
    """``value`` as JSON text whose lines after the first start with ``indent``."""
    if inline:
        return json.dumps(value, ensure_ascii=False)
    dumped = json.dumps(value, indent=unit, ensure_ascii=False)
    return dumped.replace("\n", "\n" + indent)
