"""TOML files (Codex's ``config.toml``) through ``tomlkit``, which keeps comments, key order and
spacing of everything it is not asked to change. Imported only for a TOML target."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.items import Table
from tomlkit.toml_document import TOMLDocument


class TomlError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


def parse(text: str) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        reason = str(exc).split(" at line ")[0]
        raise TomlError(reason, exc.line, exc.col) from None


def servers(doc: TOMLDocument, container: tuple[str, ...]) -> dict[str, Any] | None:
    """The table at ``container`` as plain data, None when missing; ValueError when not a table."""
    node: Any = doc
    for key in container:
        if key not in node:
            return None
        node = node[key]
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(container)} is not a table")
    return dict(node.unwrap()) if hasattr(node, "unwrap") else dict(node)


def set_entry(doc: TOMLDocument, container: tuple[str, ...], name: str, value: dict[str, Any]) -> str:
    node: Any = doc
    for key in container:
        if key not in node:
            node[key] = tomlkit.table(is_super_table=True)
        node = node[key]
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(container)} is not a table")
    table = tomlkit.table()
    for key, item in value.items():
        table[key] = item
    node[name] = table
    return tomlkit.dumps(doc)


def remove_entry(doc: TOMLDocument, container: tuple[str, ...], name: str) -> str:
    parents: list[tuple[Any, str]] = []
    node: Any = doc
    for key in container:
        if key not in node:
            return tomlkit.dumps(doc)
        parents.append((node, key))
        node = node[key]
    if name in node:
        del node[name]
    # A super table ([mcp_servers] never written, only [mcp_servers.x]) left empty goes too.
    for parent, key in reversed(parents):
        child = parent[key]
        if isinstance(child, Table) and child.is_super_table() and not child:
            del parent[key]
    return tomlkit.dumps(doc)
