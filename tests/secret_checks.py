"""Where the secrets tests look for a secret that must not be there: the parts of a corpus
entry the detector finds, everything stored under a namespace, a Valkey's append-only file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from coordinatord.keyspace import Namespace
from coordinatord.secrets_scan import SecretScanner
from coordinatord.store import Store


def secret_parts(text: str) -> list[str]:
    """The secret substrings of a corpus entry (not the name before a keyword's value)."""
    return [text[f.start : f.end] for f in SecretScanner().scan(text)]


def leaked(haystack: str | bytes, secrets: Iterable[str]) -> list[str]:
    """The secret parts of ``secrets`` (corpus entries) that occur in ``haystack``."""
    text = haystack.decode(errors="replace") if isinstance(haystack, bytes) else haystack
    # A part's first characters say which it was, and the failure shows no whole secret.
    return [part[:12] + "…" for secret in secrets for part in secret_parts(secret) if part in text]


def aof_bytes(directory: Path) -> bytes:
    """The append-only file(s) in a Valkey data dir (appendonlydir/ on Valkey 7+)."""
    files = [p for p in directory.rglob("*") if p.is_file() and "aof" in p.name]
    assert files, "no AOF written"
    return b"".join(p.read_bytes() for p in files)


async def dump_namespace(store: Store, ns: Namespace) -> str:
    """Everything stored under the namespace, as one text: every key's contents by type."""
    keys, _ = await store.scan(ns.pattern("*"), 100_000)
    parts: list[str] = []
    for key in keys:
        kind = await store.execute("TYPE", key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        command = {
            "string": ("GET", key),
            "list": ("LRANGE", key, 0, -1),
            "hash": ("HGETALL", key),
            "zset": ("ZRANGE", key, 0, -1),
            "set": ("SMEMBERS", key),
            "stream": ("XRANGE", key, "-", "+"),
        }[kind]
        parts.append(key + "=" + repr(await store.execute(*command)))
    return "\n".join(parts)
