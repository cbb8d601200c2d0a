"""The id of a JSON-RPC request that cannot be parsed whole: too long, nested too deep, or
broken further on.

A client waits for the reply to each request id it sent, so an error for such a line is only
useful if it carries that id: with ``"id": null`` the client's call hangs until its own
timeout. :func:`read_id` finds the top-level ``"id"`` member by scanning the line's structure
(strings, brackets, colons) without building it, in the first :data:`HEAD_BYTES`; failing
that, as the last member of the object (``..., "id": 7}`` at the very end).
:func:`read_id_from_ends` does the same for a line the daemon skipped and kept only the two
ends of.

Standard library only: the shim uses it too.
"""

from __future__ import annotations

import json
import re

HEAD_BYTES = 16 * 1024
"""How much of a line's start is scanned for the id (and how much of its end is looked at)."""

RequestId = str | int

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
# A complete string, a structural character, or a lone quote (a string cut off by the head).
_TOKEN = re.compile(_STRING + rb'|[{}\[\]:,]|"')
_VALUE = re.compile(rb"\s*(" + _STRING + rb"|-?(?:0|[1-9][0-9]*)|null)\s*[,}]")
_LAST_MEMBER = re.compile(rb'[,{]\s*"id"\s*:\s*(' + _STRING + rb"|-?(?:0|[1-9][0-9]*)|null)\s*\}\s*$")
_ID_KEY = b'"id"'


def read_id(line: bytes) -> RequestId | None:
    """The top-level ``id`` of a JSON-RPC object line (a string or an integer), or ``None``
    when it has none, it is ``null`` or of another type, or it cannot be found."""
    # Past HEAD_BYTES the head scan has not seen the end, so the end is worth a look.
    return read_id_from_ends(line[:HEAD_BYTES], line[-HEAD_BYTES:] if len(line) > HEAD_BYTES else b"")


def read_id_from_ends(head: bytes, tail: bytes) -> RequestId | None:
    """:func:`read_id` of a line known only by its first and its last :data:`HEAD_BYTES` bytes
    (one too long to keep whole): ``head`` is where the line starts, ``tail`` where it ends, or
    empty when ``head`` is the whole line. Longer arguments are cut to those sizes."""
    found, value = _scan_head(head[:HEAD_BYTES])
    if not found and tail:
        match = _LAST_MEMBER.search(tail[-HEAD_BYTES:])
        if match is not None:
            found, value = True, match.group(1)
    return _decode(value) if found and value is not None else None


def _scan_head(head: bytes) -> tuple[bool, bytes | None]:
    start = len(head) - len(head.lstrip())
    if head[start : start + 1] != b"{":
        return False, None  # not an object: a batch, a bare value or garbage has no id
    depth = 0
    previous: bytes | None = None  # the previous token at depth 1, when it was a string
    for match in _TOKEN.finditer(head, start):
        token = match.group()
        if token == b'"':
            return False, None  # a string runs past the head
        first = token[:1]
        if first in b"{[":
            depth += 1
            previous = None
        elif first in b"}]":
            depth -= 1
            if depth <= 0:
                return False, None  # the object ended without an id
            previous = None
        elif token == b":":
            if depth == 1 and previous is not None and _is_id_key(previous):
                value = _VALUE.match(head, match.end())
                return (True, value.group(1)) if value is not None else (False, None)
            previous = None
        elif depth == 1:
            previous = token if first == b'"' else None
    return False, None


def _is_id_key(token: bytes) -> bool:
    if token == _ID_KEY:
        return True
    if b"\\" not in token:
        return False
    try:
        return bool(json.loads(token) == "id")  # "\u0069d" is "id" too
    except ValueError:
        return False


def _decode(raw: bytes) -> RequestId | None:
    try:
        value = json.loads(raw)
    except ValueError:  # includes an integer above the interpreter's digit limit
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value
