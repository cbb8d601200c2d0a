"""read_id: the top-level id of a line that cannot be parsed whole, and nothing else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coordinatord.request_id import HEAD_BYTES, read_id, read_id_from_ends

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
ids = st.integers(min_value=-(2**63), max_value=2**63) | st.text()


@given(
    members=st.dictionaries(st.text().filter(lambda k: k != "id"), json_values, max_size=5), request_id=ids
)
def test_finds_the_top_level_id_wherever_it_is(members: dict[str, Any], request_id: str | int) -> None:
    """Among any members, nested "id" keys included, the top-level id is the one read."""
    members = {**members, "params": {"id": "nested", "deep": [{"id": 0}]}}
    for position in range(len(members) + 1):
        items = list(members.items())
        items.insert(position, ("id", request_id))
        line = json.dumps(dict(items)).encode()
        if len(line) <= HEAD_BYTES:
            assert read_id(line) == request_id


@given(members=st.dictionaries(st.text().filter(lambda k: k != "id"), json_values, max_size=5))
def test_no_top_level_id_reads_none(members: dict[str, Any]) -> None:
    """A notification (nested ids only) has no id to read."""
    line = json.dumps({**members, "params": {"id": 3}}).encode()
    assert read_id(line) is None


def test_id_before_a_part_too_deep_to_parse() -> None:
    """The usual order (jsonrpc, id, method, params): the id is read from the head."""
    deep = "[" * 100_000 + "]" * 100_000
    line = (
        f'{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"arguments":{{"a":{deep}}}}}}}'.encode()
    )
    assert read_id(line) == 42


def test_id_after_a_part_too_long_for_the_head() -> None:
    """An id that comes last is read from the end of the line."""
    big = "x" * (5 * HEAD_BYTES)
    line = json.dumps(
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"v": big}, "id": "req-7"}
    ).encode()
    assert read_id(line) == "req-7"
    nested_last = json.dumps({"params": {"v": big, "id": 9}}).encode()
    assert read_id(nested_last) is None


def test_ids_of_other_types_or_out_of_reach_read_none() -> None:
    """null, floats, booleans, objects, a 5 000-digit integer, a batch, garbage: no id."""
    for line in (
        b'{"id": null, "method": "x"}',
        b'{"id": 1.5, "method": "x"}',
        b'{"id": true, "method": "x"}',
        b'{"id": {"a": 1}, "method": "x"}',
        b'{"id": ' + b"7" * 5000 + b', "method": "x"}',
        b'[{"id": 1}]',
        b"\xff\xfe garbage",
        b'{"id"',
        b'{"method": "' + b"a" * (2 * HEAD_BYTES),
    ):
        assert read_id(line) is None, line[:40]


def test_escaped_key_and_invalid_utf8_elsewhere() -> None:
    """An escaped "id" key counts; bytes that are not UTF-8 elsewhere in the line do not matter."""
    assert read_id(b'{"\\u0069d": 5, "method": "x"}') == 5
    assert read_id(b'{"id": "a\\"b", "junk": "\xff\xfe"}') == 'a"b'


@given(request_id=ids, size=st.integers(min_value=0, max_value=4 * HEAD_BYTES))
def test_the_two_ends_of_a_line_give_what_the_whole_line_gives(request_id: str | int, size: int) -> None:
    """A skipped line kept only by its ends yields the id read_id finds in the whole line, id
    first or id last."""
    filler = "x" * size
    for members in (
        {"jsonrpc": "2.0", "id": request_id, "method": "m", "params": {"v": filler}},
        {"jsonrpc": "2.0", "method": "m", "params": {"v": filler}, "id": request_id},
    ):
        line = json.dumps(members).encode()
        tail = line[-HEAD_BYTES:] if len(line) > HEAD_BYTES else b""
        assert read_id_from_ends(line[:HEAD_BYTES], tail) == read_id(line)
        if len(line) <= HEAD_BYTES or len(json.dumps(request_id)) < HEAD_BYTES // 2:
            assert read_id(line) == request_id


def test_ends_longer_than_head_bytes_are_cut() -> None:
    """Given more than HEAD_BYTES at either end, only HEAD_BYTES of each are looked at."""
    far = b'{"params":{"v":"' + b"x" * HEAD_BYTES + b'"},"id":1,"z":2}'
    assert read_id_from_ends(far, b"") is None
    assert read_id_from_ends(b"{", b'"id": 3}' + b" " * (2 * HEAD_BYTES)) is None
    assert read_id_from_ends(b'{"params":{"v":"xx', b'xx"}, "id": 3}') == 3
