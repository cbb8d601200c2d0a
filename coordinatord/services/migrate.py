"""Copy every key of one project namespace into another: ``coordinatord projects migrate OLD NEW``.

What it is for: a project whose id was its path hash (``app-1a2b3c4d5e``) is ``github.com/org/app``
once ids come from the repository, and its locks, tasks, sessions and activity must not be left
behind in the old namespace.

How it copies, and why so:

- SCAN page by page over ``coord:{OLD}:*`` (never KEYS), each key read with plain commands
  (``TYPE``, ``PTTL``, then ``GET``, ``HSCAN``, ``SSCAN``, ``ZSCAN``, ``LRANGE`` or ``XRANGE`` in
  pages) and written into ``coord:{NEW}:…`` one page at a time by one script on the new key alone
  (``lua/migrate_page.lua``). Never RENAME, COPY or a script touching both: on Redis Cluster the
  two namespaces are two hash tags, so two slots, often on two nodes. Not DUMP/RESTORE either:
  the stores decode every reply as text, and a DUMP payload is binary; coordinatord's own values
  are all text, so reading them by type loses nothing, on every backend (Upstash REST included).
- The TTL goes with the key: the remaining ``PTTL`` is set in the same script call that writes the
  key's first page, so no key of the new namespace is ever left without its TTL, even by a
  migration cut short.
- The new namespace's own keys win, key by key: a string, list or stream it already holds is kept
  (``kept``); a hash, set or sorted set gets the fields and members it lacks (``merged``: indexes
  of both namespaces stay true), with the longer TTL; a counter (``_seq:*``, the fencing counter)
  takes the larger number, so fencing tokens never go back. ``--force`` is what allows a new
  namespace that holds keys; without it the migration is refused.

Not atomic, as nothing spanning two slots can be: a key written in the old namespace after it
was copied is not copied. The control command refuses while a connection of this daemon works in
the old namespace, and says what happens to live locks (see :mod:`coordinatord.control.projects`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from coordinatord.keyspace import Namespace, is_counter_key, is_write_record
from coordinatord.services.shared import lua
from coordinatord.store import Store

SCAN_PAGE = 200
"""Keys per SCAN step of the old namespace."""
PAGE = 500
"""Fields, members, elements or entries per read of one key and per script call writing it."""
UNSUPPORTED_LISTED = 20

_PAGE_SCRIPT = lua("migrate_page")
_COLLECTIONS = frozenset({"hash", "set", "zset"})


@dataclass
class MigrationCounts:
    """What one migration did, key by key of the old namespace."""

    copied: int = 0
    """Keys written into the new namespace, which did not hold them."""
    merged: int = 0
    """Hashes, sets and sorted sets added to keys the new namespace held (and counters raised)."""
    kept: int = 0
    """Keys the new namespace held already and kept as they were."""
    vanished: int = 0
    """Keys that expired or were deleted between the scan and their reading."""
    unsupported: list[str] = field(default_factory=list)
    """Keys of a type no coordinatord service writes (a module's), left out (the first few)."""
    unsupported_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "copied": self.copied,
            "merged": self.merged,
            "kept": self.kept,
            "vanished": self.vanished,
            "unsupported": self.unsupported_count,
            "unsupported_keys": list(self.unsupported),
        }


class NamespaceMigration:
    """Copies namespaces on one store (see the module)."""

    def __init__(self, store: Store, scan_page: int = SCAN_PAGE, page: int = PAGE) -> None:
        self._store = store
        self._write = store.script(_PAGE_SCRIPT)
        self._scan_page = scan_page
        self._page = page

    async def count(self, ns: Namespace, limit: int) -> tuple[int, bool]:
        """How many keys ``ns`` holds, counted up to ``limit``, and whether there are more."""
        found, more = await self._store.scan(ns.pattern("*"), limit)
        return len(found), more

    async def copy(self, old: Namespace, new: Namespace) -> MigrationCounts:
        """Copy every key of ``old`` into ``new`` (``old`` is left as it was)."""
        counts = MigrationCounts()
        seen: set[str] = set()
        cursor = "0"
        while True:
            cursor, keys = await self._store.scan_page(cursor, old.pattern("*"), self._scan_page)
            for full in keys:
                local = old.local_key(full)
                if local is None or full in seen:  # SCAN may return a key twice
                    continue
                if is_write_record(local):
                    continue  # another call's write record: transport state, useless elsewhere
                seen.add(full)
                await self._copy_key(full, new.key(local), is_counter_key(local), counts)
            if cursor == "0":
                return counts

    async def _copy_key(self, source: str, target: str, counter: bool, counts: MigrationCounts) -> None:
        kind = str(await self._store.execute("TYPE", source))
        ttl = await self._store.pttl(source)
        if kind == "none" or ttl == -2:
            counts.vanished += 1
            return
        if kind not in ("string", "list", "stream") and kind not in _COLLECTIONS:
            counts.unsupported_count += 1
            if len(counts.unsupported) < UNSUPPORTED_LISTED:
                counts.unsupported.append(source)
            return
        if kind in _COLLECTIONS:
            first_mode = "merge"
        elif kind == "string" and counter:
            first_mode = "max"
        else:
            first_mode = "create"
        outcome: str | None = None
        async for page in self._pages(kind, source):
            mode = first_mode if outcome is None or kind in _COLLECTIONS else "append"
            result = str(await self._write([target], [kind, ttl, mode, *page]))
            if outcome is None:
                outcome = result
                if result == "kept":
                    break  # the new namespace holds this key: its own value wins
        if outcome is None:
            counts.vanished += 1  # gone (or an empty stream) by the time it was read
        elif outcome == "copied":
            counts.copied += 1
        elif outcome == "merged":
            counts.merged += 1
        else:
            counts.kept += 1

    async def _pages(self, kind: str, key: str) -> AsyncIterator[list[str]]:
        """The key's content, page by page, as ``migrate_page.lua`` takes it."""
        execute = self._store.execute
        size = self._page
        if kind == "string":
            value = await self._store.get(key)
            if value is not None:
                yield [value]
        elif kind in _COLLECTIONS:
            command = {"hash": "HSCAN", "set": "SSCAN", "zset": "ZSCAN"}[kind]
            cursor = "0"
            while True:
                reply = await execute(command, key, cursor, "COUNT", size)
                cursor, flat = str(reply[0]), [str(item) for item in reply[1]]
                if kind == "zset":  # member, score pairs to ZADD's score, member
                    flat = [item for pair in zip(flat[1::2], flat[0::2], strict=True) for item in pair]
                if flat:
                    yield flat
                if cursor == "0":
                    return
        elif kind == "list":
            start = 0
            while True:
                items = [str(item) for item in await execute("LRANGE", key, start, start + size - 1)]
                if items:
                    yield items
                if len(items) < size:
                    return
                start += size
        else:  # stream
            low = "-"
            while True:
                entries = await execute("XRANGE", key, low, "+", "COUNT", size)
                page: list[str] = []
                for entry_id, fields in entries or []:
                    page += [str(entry_id), str(len(fields) // 2), *(str(item) for item in fields)]
                if page:
                    yield page
                if not entries or len(entries) < size:
                    return
                low = "(" + str(entries[-1][0])
