"""The JSONC span editor: parses what JSON/JSONC allows, refuses the rest with line and column,
and changes one member without touching any other byte."""

from __future__ import annotations

import json
from typing import Any

import json5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinatord.editors import jsonc

ENTRY = {"command": "/bin/coordinatord", "args": ["shim", "--agent", "x"]}


def roundtrip(text: str, path: tuple[str, ...] = ("mcpServers",), strict: bool = False) -> str:
    """Add ENTRY as `redis`, check the result, remove it again and return that text."""
    added = jsonc.set_member(jsonc.parse(text, strict), path, "redis", ENTRY)
    data: Any = json5.loads(added)
    for key in path:
        data = data[key]
    assert data["redis"] == ENTRY
    if strict:
        json.loads(added)
    return jsonc.remove_member(jsonc.parse(added, strict), path, "redis")


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "mcpServers": {\n    "other": {"command": "node"}\n  }\n}\n',
        '{\n  "mcpServers": {\n    "other": {"command": "node"},\n  },\n}\n',
        '{\n  "mcpServers": {\n    "other": {"command": "node"} // trailing comment\n  }\n}\n',
        '{\n  "mcpServers": {\n    "other": {"command": "node"}, // trailing comment\n  }\n}\n',
        '{\n\t"mcpServers": {\n\t\t"other": {"command": "node"}\n\t}\n}',
        '{"mcpServers": {"other": {"command": "node"}}}',
        '{\n  "mcpServers": {}\n}\n',
        '{"mcpServers": {}}',
        '{\n  // only a comment\n  "mcpServers": {\n    /* nothing yet */\n  }\n}\n',
        '/* head */\n{\n    "a": 1, /* x */ "mcpServers": {"b": [1, 2.5e3, true, null, "s\\"q"]}\n}\n',
    ],
)
def test_an_appended_member_comes_out_byte_for_byte(text: str) -> None:
    """For files with comments, trailing commas, tabs or one-line layouts, adding a member and removing it
    again gives back the original text exactly."""
    assert roundtrip(text) == text


def test_missing_objects_are_created_and_removal_leaves_them() -> None:
    """Adding under an object the file lacks creates it and keeps the comments; removing the member leaves
    the new object, empty."""
    text = '{\n  // theme\n  "theme": "dark"\n}\n'
    added = jsonc.set_member(jsonc.parse(text), ("context_servers",), "redis", ENTRY)
    assert "// theme" in added and json5.loads(added)["context_servers"]["redis"] == ENTRY
    assert jsonc.remove_member(jsonc.parse(added), ("context_servers",), "redis") == text.replace(
        '"dark"', '"dark",\n  "context_servers": {}'
    )


def test_an_empty_file_becomes_a_fresh_document() -> None:
    """An empty or whitespace-only file becomes a valid JSON document holding just the new member."""
    for empty in ("", "\n  \n"):
        created = jsonc.set_member(jsonc.parse(empty), ("mcp",), "redis", ENTRY)
        assert json.loads(created) == {"mcp": {"redis": ENTRY}}


def test_replacing_a_value_keeps_its_neighbours_and_comments() -> None:
    """Replacing an existing member's value keeps the comments around it and the members beside it."""
    text = '{\n  "servers": {\n    // ours\n    "redis": {"command": "old"}, // old one\n    "z": 1\n  }\n}\n'
    out = jsonc.set_member(jsonc.parse(text), ("servers",), "redis", ENTRY)
    assert "// ours" in out and "// old one" in out and '"z": 1' in out
    assert json5.loads(out)["servers"] == {"redis": ENTRY, "z": 1}


def test_removing_a_middle_member() -> None:
    """Removing a member between others, multi-line or inline, takes out its line or text and the comma,
    and nothing else."""
    text = '{\n  "s": {\n    "a": 1,\n    "redis": 2,\n    "b": 3\n  }\n}\n'
    assert jsonc.remove_member(jsonc.parse(text), ("s",), "redis") == text.replace('    "redis": 2,\n', "")
    inline = '{"s": {"redis": 2, "b": 3}}'
    assert jsonc.remove_member(jsonc.parse(inline), ("s",), "redis") == '{"s": {"b": 3}}'


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3, "expected ',' or '}'"),
        ('{\n  "a": tru\n}', 2, 8, "expected a value"),
        ('{"a": 1', 1, 8, "unexpected end"),
        ("{'a': 1}", 1, 2, "expected a key in double quotes"),
        ('{"a": "x\ny"}', 1, 7, "unterminated string"),
        ('{"a": 1} 2', 1, 10, "after the end"),
        ('{"a": 1 /* no end', 1, 9, "unterminated /* comment"),
    ],
)
def test_malformed_text_names_line_and_column(text: str, line: int, column: int, reason: str) -> None:
    """Each kind of syntax error is reported at its 1-based line and column, with a reason saying what was
    expected."""
    with pytest.raises(jsonc.JsoncError) as caught:
        jsonc.parse(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert reason in caught.value.reason


def test_strict_refuses_comments_and_trailing_commas() -> None:
    """Comments and trailing commas parse as JSONC but are refused in strict mode, for editors whose files
    are plain JSON."""
    jsonc.parse('{"a": [1,], // c\n}')
    with pytest.raises(jsonc.JsoncError, match="comments are not allowed"):
        jsonc.parse('{"a": 1 // c\n}', strict=True)
    with pytest.raises(jsonc.JsoncError, match="trailing comma"):
        jsonc.parse('{"a": 1,}', strict=True)


def test_the_last_duplicate_key_wins_as_in_json() -> None:
    """With a key given twice, the parsed value is the last one, as Python's json module reads it."""
    doc = jsonc.parse('{"a": 1, "a": 2}')
    assert jsonc.python(doc.root) == json.loads('{"a": 1, "a": 2}')  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, derandomize=True)
@given(
    data=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "redis"), json_values, max_size=4),
    indent=st.sampled_from([None, 2, 4, "\t"]),
)
def test_any_json_parses_like_json_and_takes_a_member_back_exactly(data: dict[str, Any], indent: Any) -> None:
    """For generated JSON of any indentation, strict parsing gives what json.loads gives, and adding then
    removing a member gives back the exact text."""
    text = json.dumps({"mcpServers": data}, indent=indent)
    assert jsonc.python(jsonc.parse(text, strict=True).root) == json.loads(text)  # type: ignore[arg-type]
    assert roundtrip(text, strict=True) == text
