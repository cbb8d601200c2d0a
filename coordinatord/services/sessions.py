"""Sessions: an agent's saved context plus its conversation history, resumable and archivable.

Keys (inside the project namespace, names from :mod:`coordinatord.keyspace`):

- ``agent:context:<id>`` — the context document, a JSON string (``redis_get`` shows it)::

      {"sessionId": "s1", "version": 3, "ttl": 86400,
       "createdAt": "2026-02-13T04:00:00.000Z", "updatedAt": "…",
       "createdBy": "kilocode", "lastAgent": "cline", "context": {…}}

  ``version`` rises by one with every ``session_save``; ``updatedAt``/``lastAgent`` describe the
  last save; ``ttl`` is the session's own TTL (the last ``ttl`` given to ``session_save``, else
  ``sessions.ttl_s``), which every later write refreshes. The service always writes the fields
  in this order, so a script can read ``ttl`` from the document's first bytes (``GETRANGE``).
  A document written by hand in the seed's style (a plain JSON object) is read as a context at
  version 0 and converted on the next save.
- ``agent:context:<id>:history`` — a LIST of turns, JSON ``{"role", "message", "ts", "agent"}``,
  oldest first. ``session_append`` is one ``RPUSH``: the document is never rewritten.
- ``_idx:sessions`` — a ZSET, member = session id, score = last save/append (ms), for
  ``session_list``; entries whose document has gone are dropped lazily when listing.

A session exists while its document exists. Every write refreshes the TTL of the document, the
history and (never shortening it) the index, in the same script.

Atomicity:

- ``session_save`` merges in Python — Lua's cjson would turn ``[]`` into ``{}`` and round big
  integers to 14 digits (checked on Redis 7.0 and Valkey) — and writes with a compare-and-set:
  the script replaces the document only if its SHA-1 is still that of the document the merge
  started from (or it is still absent), else the service re-reads and retries (bounded, with
  jittered backoff; :class:`ConflictError` when it keeps losing). Nested values pass through
  Python's ``json`` untouched: arrays, empty objects, unicode and big integers survive.
- ``session_append`` checks the turn limit, creates the session if absent (the seed's
  ``addConversationTurn`` returned null there; an agent's first turn should not be lost) and
  pushes, in one script. Past ``sessions.max_turns`` it refuses and says to call
  ``session_end``: history is never dropped silently.
- ``session_end`` reads document and whole history in one script, writes the archive (see
  :mod:`coordinatord.services.archive` for the format and the durability argument), then deletes
  by compare-and-delete: only if the document's SHA-1 and the history length are still those
  archived (history only grows while a session lives, so equal length means equal history).
  If the session changed meanwhile it archives again (the newer state may replace the older
  file) — up to :data:`END_ATTEMPTS` times, then :class:`ConflictError` with nothing deleted.
  If the archive cannot be written, nothing is deleted.
- ``session_restore`` writes the document, the whole history and the index entry in one
  script; it refuses when the session is live unless ``force``, which replaces it. The
  archive file is kept; ending the session again replaces it with the later state.

Timestamps (``ts``, ``createdAt``, ``updatedAt``, index scores) come from the service's clock,
so tests can move time (the daemon's is the backend's time, :mod:`coordinatord.clock`: the
archiver of any daemon judges idleness on the clock the writer used); expiry is Redis's own TTL.

Archiving without deleting (the scheduled archiver and ``coordinatord archive``):
:meth:`SessionService.due_for_archive` walks the index with ZSCAN in batches (one pipelined
``TTL``/``GETRANGE``/``LLEN`` round trip per batch) and yields the sessions idle past a limit or
whose TTL ends within a horizon; :meth:`SessionService.archive` writes one session's consistent
snapshot (the same read script as ``session_end``) to its archive file and leaves it in the
store. An archive already holding the same ``(version, turns)`` is not rewritten, and
:func:`~coordinatord.services.archive.write_archive` never replaces a later state. Archive
files' states are remembered by (inode, size, mtime), so an unchanged file is parsed once, not
on every run.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict

from coordinatord import heap
from coordinatord.clock import Clock, system_clock
from coordinatord.errors import (
    ArchiveError,
    ConflictError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
)
from coordinatord.keyspace import (
    SESSIONS_INDEX,
    Namespace,
    check_id,
    session_history_key,
    session_host_key,
    session_key,
)
from coordinatord.project_reads import ProjectReads
from coordinatord.services.archive import (
    archive_data,
    archive_order,
    archive_path,
    document_from_archive,
    read_archive,
    write_archive,
)
from coordinatord.services.secret_guard import SecretGuard
from coordinatord.services.session_rules import (
    Role,
    SessionDocument,
    dumps,
    encode_turn,
    next_document,
    turn_record,
)
from coordinatord.services.shared import backoff, iso_timestamp, lua
from coordinatord.settings import ProjectFileSettings, SessionSettings
from coordinatord.store import Batch, Store

SAVE_ATTEMPTS = 50  # compare-and-set rounds before a save gives up with ConflictError
END_ATTEMPTS = 3  # archive-then-delete rounds before session_end gives up
LIST_LIMIT = 1000  # sessions per session_list reply (most recently active first)
E = TypeVar("E")
R = TypeVar("R")

PIPELINE_CHUNK = 500  # commands per round trip when walking many sessions (see due_for_archive)
ARCHIVE_STATES_MAX = 100_000  # archive files whose parsed state is remembered (see archived_state)
HEAD_BYTES = 256  # covers '{"sessionId":"<128 chars>","version":N,"ttl":N,' with room to spare

# Python's twin of the pattern in session_append.lua.
_HEAD = re.compile(r'^\{"sessionId":"[^"]*","version":(\d+),"ttl":(\d+)[,}]')


# --- Results --------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class SaveResult(_Result):
    session_id: str
    version: int
    expires_in: int


class LoadResult(_Result):
    session_id: str
    found: bool
    context: dict[str, Any]
    version: int
    history_length: int
    expires_in: int  # seconds; 0 when not found, -1 if the document was given no expiry


class AppendResult(_Result):
    session_id: str
    history_length: int
    expires_in: int


class Turn(_Result):
    role: str
    message: str
    ts: str
    agent: str | None = None


class HistoryResult(_Result):
    session_id: str
    turns: list[Turn]


class SessionSummary(_Result):
    session_id: str
    last_activity: str
    expires_in: int
    version: int | None  # None for a document not written by the session tools
    history_length: int


class ListResult(_Result):
    sessions: list[SessionSummary]
    truncated: bool  # more than LIST_LIMIT sessions: the least recently active were left out


class EndResult(_Result):
    session_id: str
    archived_to: str
    version: int
    history_length: int


class RestoreResult(_Result):
    session_id: str
    version: int
    history_length: int
    restored_from: str
    expires_in: int


class ArchiveCandidate(_Result):
    """A live session the archiver should look at (from :meth:`SessionService.due_for_archive`)."""

    session_id: str
    version: int  # 0 for a document not written by the session tools
    history_length: int
    expires_in: int  # seconds; -1 when the document has no expiry
    last_activity_ms: int
    reason: str  # "expiring": its TTL ends within the horizon; "idle": no write for idle_s
    host: str | None = None  # the host id of the daemon that last wrote it (None: not recorded)


class ArchiveResult(_Result):
    session_id: str
    archived_to: str
    written: bool  # False: the file already held this state, so it was left as it is
    version: int
    history_length: int


# The pure document logic is in session_rules.py, the archive files and their mapping to and
# from documents in archive.py; this module is the service over the store.


def turn_of(record: Mapping[str, Any]) -> Turn:
    """A stored turn record as the tools return it."""
    agent = record.get("agent")
    return Turn(
        role=record["role"],
        message=record["message"],
        ts=record["ts"],
        agent=agent if isinstance(agent, str) else None,
    )


# --- The service ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    exists: bool
    document: str
    sha: str
    length: int
    ttl: int
    turns: list[str]


class SessionService:
    def __init__(
        self,
        store: Store,
        settings: SessionSettings,
        clock: Clock = system_clock,
        host: str | None = None,
        guard: SecretGuard | None = None,
        reads: ProjectReads | None = None,
    ) -> None:
        """``host``: this daemon's host id, recorded with every session it writes (the archiver
        writes a session's archive on the host that last wrote it); None records nothing.
        ``guard``: secrets.policy for writes, and the redaction of archive files. ``reads``: where
        the archive folder's reads and writes run (per project, bounded in time)."""
        self._store = store
        self.reads = reads or ProjectReads(ProjectFileSettings())
        self._guard = guard or SecretGuard()
        self._host = host or ""
        self._settings = settings
        self._clock = clock
        self._max_ttl = settings.max_ttl_s
        self._read = store.script(lua("session_read"), exactly_once=False)  # reads only
        self._save = store.script(lua("session_save"))
        self._append = store.script(lua("session_append"))
        self._end = store.script(lua("session_end"))
        self._restore = store.script(lua("session_restore"))
        self._prune = store.script(lua("session_prune"))
        # path -> ((inode, size, mtime_ns), (version, turns)); read and written in worker threads.
        self._archive_states: dict[Path, tuple[tuple[int, int, int], tuple[int, int]]] = {}

    # -- helpers --

    async def _archive_path(self, project_root: str | None, session_id: str) -> Path:
        """The session's archive file (resolving the folder touches the disk: among the project's reads)."""
        return await self.reads.run(
            project_root, archive_path, project_root, self._settings.archive_dir, session_id
        )

    @staticmethod
    def _keys(ns: Namespace, session_id: str) -> list[str]:
        check_id(session_id, "session_id")
        return [
            ns.key(session_key(session_id)),
            ns.key(session_history_key(session_id)),
            ns.key(SESSIONS_INDEX),
            ns.key(session_host_key(session_id)),
        ]

    def _now(self) -> tuple[str, int, int]:
        """Now as an ISO timestamp, in ms (the index score), and the index's prune threshold."""
        seconds = self._clock()
        ms = int(seconds * 1000)
        return iso_timestamp(seconds), ms, ms - self._max_ttl * 1000

    def check_ttl(self, ttl_s: int) -> int:
        """The configured ceiling; the floor (at least 1 s) is the tool's argument model's."""
        if ttl_s > self._max_ttl:
            raise LimitExceededError(
                f"argument 'ttl' is {ttl_s} s; the limit is sessions.max_ttl_s = {self._max_ttl}"
            )
        return ttl_s

    async def _snapshot(
        self, keys: list[str], *, with_doc: bool, start: str = "", stop: str = ""
    ) -> _Snapshot:
        exists, document, sha, length, ttl, turns = await self._read(
            keys[:2], ["1" if with_doc else "0", start, stop]
        )
        return _Snapshot(bool(exists), document, sha, int(length), int(ttl), list(turns))

    @staticmethod
    def _not_found(session_id: str) -> NotFoundError:
        return NotFoundError(
            f"session {session_id!r} not found in this project (never saved, ended with session_end, "
            "or expired); session_list shows the live ones"
        )

    # -- operations --

    async def save(
        self,
        ns: Namespace,
        session_id: str,
        context: Mapping[str, Any],
        ttl_s: int | None = None,
        agent: str | None = None,
    ) -> SaveResult:
        """Merge ``context`` into the session's context (``None`` removes a field), creating it."""
        keys = self._keys(ns, session_id)
        if not isinstance(context, Mapping):
            raise InvalidArgumentError("argument 'context' must be an object")
        context = self._guard.json(context, "context")
        ttl = None if ttl_s is None else self.check_ttl(ttl_s)
        limit = self._settings.max_context_bytes
        for attempt in range(SAVE_ATTEMPTS):
            snap = await self._snapshot(keys, with_doc=True)
            current = SessionDocument.parse(snap.document, session_id) if snap.exists else None
            now, now_ms, prune_before = self._now()
            doc = next_document(current, session_id, context, ttl, now, agent)
            text, size = doc.encode(self._settings.ttl_s)
            if size > limit:
                raise LimitExceededError(
                    f"session {session_id!r}: the merged context would be {size} bytes; the limit is "
                    f"sessions.max_context_bytes = {limit} (remove fields by setting them to null)"
                )
            effective_ttl = doc.ttl if doc.ttl is not None else self._settings.ttl_s
            applied = int(
                await self._save(
                    keys, [snap.sha, text, effective_ttl, session_id, now_ms, prune_before, self._host]
                )
            )
            if applied >= 0:
                return SaveResult(session_id=session_id, version=doc.version, expires_in=applied)
            # Another save landed between our read and our write: merge again onto it.
            await backoff(attempt, base_s=0.001, cap_s=0.05)
        raise ConflictError(
            f"session {session_id!r} was changed by other writers {SAVE_ATTEMPTS} times while saving; "
            "nothing was written — try again"
        )

    async def load(self, ns: Namespace, session_id: str) -> LoadResult:
        """The session's context and counts; ``found=False`` (not an error) when there is none."""
        keys = self._keys(ns, session_id)
        snap = await self._snapshot(keys, with_doc=True)
        if not snap.exists:
            return LoadResult(
                session_id=session_id, found=False, context={}, version=0, history_length=0, expires_in=0
            )
        doc = SessionDocument.parse(snap.document, session_id)
        return LoadResult(
            session_id=session_id,
            found=True,
            context=doc.context,
            version=doc.version,
            history_length=snap.length,
            expires_in=snap.ttl,
        )

    async def append(
        self, ns: Namespace, session_id: str, role: Role, message: str, agent: str | None = None
    ) -> AppendResult:
        """Append one turn in O(1), creating the session if absent; refuses past the turn limit.
        ``role`` is typed: the tool's argument model refuses any other."""
        keys = self._keys(ns, session_id)
        message = self._guard.text(message, "message")
        size = len(message.encode("utf-8", "surrogatepass"))
        if size > self._settings.max_message_bytes:
            raise LimitExceededError(
                f"argument 'message' is {size} bytes; the limit is sessions.max_message_bytes = "
                f"{self._settings.max_message_bytes}"
            )
        now, now_ms, prune_before = self._now()
        turn = encode_turn(role, message, now, agent)
        fresh, _ = SessionDocument(session_id, 1, None, now, now, agent, agent, {}).encode(
            self._settings.ttl_s
        )
        max_turns = self._settings.max_turns
        reply = await self._append(
            keys, [turn, max_turns, self._settings.ttl_s, fresh, session_id, now_ms, prune_before, self._host]
        )
        if int(reply[0]) < 0:
            raise LimitExceededError(
                f"session {session_id!r} has {reply[1]} turns, the limit (sessions.max_turns = {max_turns}); "
                "end it with session_end (which archives it to the project) and continue in a new "
                "session — history is never dropped silently"
            )
        return AppendResult(session_id=session_id, history_length=int(reply[0]), expires_in=int(reply[1]))

    async def history(self, ns: Namespace, session_id: str, last: int = 50) -> HistoryResult:
        """The last ``last`` (at least 1: the tool's argument model says so) turns, oldest first."""
        keys = self._keys(ns, session_id)
        snap = await self._snapshot(keys, with_doc=False, start=str(-last), stop="-1")
        if not snap.exists:
            raise self._not_found(session_id)
        return HistoryResult(session_id=session_id, turns=[turn_of(turn_record(t)) for t in snap.turns])

    async def live_count(self, ns: Namespace) -> int:
        """How many sessions the project's index holds (some may have expired a moment ago)."""
        return await self._store.zcard(ns.key(SESSIONS_INDEX))

    async def list_sessions(self, ns: Namespace) -> ListResult:
        """Live sessions, most recently active first, from the index (expired entries dropped)."""
        index = ns.key(SESSIONS_INDEX)
        entries = await self._store.zrange_with_scores(index, 0, LIST_LIMIT, rev=True)
        truncated = len(entries) > LIST_LIMIT
        entries = entries[:LIST_LIMIT]
        if not entries:
            return ListResult(sessions=[], truncated=False)
        batch = Batch()
        reads = [
            (
                batch.ttl(ns.key(session_key(session_id))),
                batch.getrange(ns.key(session_key(session_id)), 0, HEAD_BYTES - 1),
                batch.llen(ns.key(session_history_key(session_id))),
            )
            for session_id, _ in entries
        ]
        await self._store.run(batch)
        sessions: list[SessionSummary] = []
        gone: list[str] = []
        for (session_id, score), (ttl_reply, head_reply, length_reply) in zip(entries, reads, strict=True):
            ttl, head, length = ttl_reply.value, head_reply.value, length_reply.value
            if ttl == -2:
                gone.append(session_id)
                continue
            match = _HEAD.match(head)
            sessions.append(
                SessionSummary(
                    session_id=session_id,
                    last_activity=iso_timestamp(score / 1000),
                    expires_in=ttl,
                    version=int(match.group(1)) if match else None,
                    history_length=length,
                )
            )
        if gone:
            await self._prune([index, *(ns.key(session_key(s)) for s in gone)], gone)
        return ListResult(sessions=sessions, truncated=truncated)

    async def end(
        self, ns: Namespace, session_id: str, project_root: str | None, agent: str | None = None
    ) -> EndResult:
        """Archive the session to the project folder, then remove it from the store."""
        keys = self._keys(ns, session_id)
        path = await self._archive_path(project_root, session_id)
        archived: EndResult | None = None
        for _ in range(END_ATTEMPTS):
            snap = await self._snapshot(keys, with_doc=True, start="0", stop="-1")
            if not snap.exists:
                if archived is None:
                    raise self._not_found(session_id)
                # Gone after our archive was written (ended elsewhere, or expired): done.
                return archived
            doc = SessionDocument.parse(snap.document, session_id)
            now, _, _ = self._now()
            history = [turn_record(t) for t in snap.turns]
            data = archive_data(doc, history, ns.project_id, now, agent, self._settings.ttl_s)
            await self.reads.run(project_root, self._write, path, data)
            archived = EndResult(
                session_id=session_id, archived_to=str(path), version=doc.version, history_length=len(history)
            )
            outcome = int(await self._end(keys, [snap.sha, snap.length, session_id]))
            if outcome >= 0:
                return archived
        raise ConflictError(
            f"session {session_id!r} kept changing while it was being archived ({END_ATTEMPTS} attempts); "
            f"{path} holds its latest archived state but nothing was deleted — call session_end "
            "again once other agents stop writing to it"
        )

    async def restore(
        self, ns: Namespace, session_id: str, project_root: str | None, force: bool = False
    ) -> RestoreResult:
        """Load an archive back: context, version, history and TTL; a live session only with ``force``."""
        result, carried = await self._restore_archive(ns, session_id, project_root, force)
        if carried >= heap.TRIM_AFTER_BYTES:
            # The archive, its turns and the command that carried them are garbage only now.
            await anyio.to_thread.run_sync(heap.give_back_freed_memory)
        return result

    async def _restore_archive(
        self, ns: Namespace, session_id: str, project_root: str | None, force: bool
    ) -> tuple[RestoreResult, int]:
        """The restore, and how many bytes of session it carried (its turns and context)."""
        keys = self._keys(ns, session_id)
        path = await self._archive_path(project_root, session_id)
        data = await self.reads.run(project_root, read_archive, path, self._settings.max_archive_bytes)
        if data["session_id"] != session_id:
            raise ArchiveError(
                f"session archive {path} holds session {data['session_id']!r}, not {session_id!r}"
            )
        doc = document_from_archive(data)
        ttl = min(doc.ttl if doc.ttl is not None else self._settings.ttl_s, self._max_ttl)
        doc = replace(doc, ttl=ttl)
        text, _ = doc.encode(ttl)
        turns = [dumps(turn) for turn in data["history"]]
        _, now_ms, prune_before = self._now()
        length = int(
            await self._restore(
                keys,
                ["1" if force else "0", text, ttl, session_id, now_ms, prune_before, self._host, *turns],
            )
        )
        if length < 0:
            raise ConflictError(
                f"session {session_id!r} is live in this project; restoring {path} would replace it — "
                "pass force=true to replace it with the archive, or session_end it first"
            )
        restored = RestoreResult(
            session_id=session_id,
            version=doc.version,
            history_length=length,
            restored_from=str(path),
            expires_in=ttl,
        )
        return restored, len(text) + sum(map(len, turns))

    # -- archiving without deleting (the scheduled archiver, `coordinatord archive`) --

    async def due_for_archive(
        self, ns: Namespace, *, idle_s: float, horizon_s: float, batch_size: int
    ) -> AsyncIterator[list[ArchiveCandidate]]:
        """Live sessions whose TTL ends within ``horizon_s`` or that have been idle for
        ``idle_s`` or more, in batches of about ``batch_size`` (one ZSCAN step each). A session
        may come twice if the index changes during the walk.

        Per batch, one ``TTL`` per session decides which are due, and only those get a
        ``GETRANGE``/``LLEN``; pipelines are cut to :data:`PIPELINE_CHUNK` commands with a
        checkpoint between them, because parsing a few thousand replies at once holds the event
        loop (and every tool call) for tens of milliseconds.
        """
        index = ns.key(SESSIONS_INDEX)
        idle_before_ms = (self._clock() - idle_s) * 1000
        cursor = "0"
        while True:
            cursor, page = await self._store.zscan(index, cursor, batch_size)
            entries = [(sid, score) for sid, score in page if _valid_id(sid)]
            ttls = await self._chunked(entries, lambda batch, entry: batch.ttl(ns.key(session_key(entry[0]))))
            due: list[tuple[str, float, int, str]] = []
            for (session_id, score), ttl_reply in zip(entries, ttls, strict=True):
                ttl = ttl_reply.value
                if ttl == -2:
                    continue  # gone: nothing left to archive
                if 0 <= ttl <= horizon_s:
                    due.append((session_id, score, ttl, "expiring"))
                elif score <= idle_before_ms:
                    due.append((session_id, score, ttl, "idle"))
            details = await self._chunked(
                due,
                lambda batch, entry: (
                    batch.getrange(ns.key(session_key(entry[0])), 0, HEAD_BYTES - 1),
                    batch.llen(ns.key(session_history_key(entry[0]))),
                    batch.get(ns.key(session_host_key(entry[0]))),
                ),
                per_entry=3,
            )
            candidates: list[ArchiveCandidate] = []
            for (session_id, score, ttl, reason), (head_reply, length_reply, host_reply) in zip(
                due, details, strict=True
            ):
                head, length = head_reply.value, length_reply.value
                match = _HEAD.match(head)
                candidates.append(
                    ArchiveCandidate(
                        session_id=session_id,
                        version=int(match.group(1)) if match else 0,
                        history_length=length,
                        expires_in=ttl,
                        last_activity_ms=int(score),
                        reason=reason,
                        host=host_reply.value or None,
                    )
                )
            if candidates:
                yield candidates
            if cursor == "0":
                return

    async def _chunked(
        self, entries: Sequence[E], queue: Callable[[Batch, E], R], per_entry: int = 1
    ) -> list[R]:
        """``queue`` each entry's reads (``per_entry`` commands) in batches of at most
        :data:`PIPELINE_CHUNK` commands; their replies, once run, in the entries' order."""
        replies: list[R] = []
        step = max(1, PIPELINE_CHUNK // per_entry)
        for start in range(0, len(entries), step):
            if start:
                await anyio.lowlevel.checkpoint()
            batch = Batch()
            replies += [queue(batch, entry) for entry in entries[start : start + step]]
            await self._store.run(batch)
        return replies

    def archived_state(self, path: Path) -> tuple[int, int] | None:
        """``(version, turns)`` of the archive at ``path``; None when there is none or it cannot
        be read. Blocking (call it off the event loop); a file is parsed again only when its
        inode, size or mtime changed.
        """
        try:
            stat = os.stat(path)
        except OSError:
            return None
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        known = self._archive_states.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        try:
            state = archive_order(read_archive(path, self._settings.max_archive_bytes))
        except (ArchiveError, NotFoundError):
            return None
        if len(self._archive_states) >= ARCHIVE_STATES_MAX:
            self._archive_states.clear()
        self._archive_states[path] = (signature, state)
        return state

    def archive_directory(self, project_root: str | None) -> Path:
        """The project's resolved archive folder, checked to be inside the root. Blocking."""
        return archive_path(project_root, self._settings.archive_dir, "probe").parent

    def archived_states(
        self, project_root: str | None, session_ids: Sequence[str]
    ) -> dict[str, tuple[int, int] | None]:
        """:meth:`archived_state` of several sessions of one project. Blocking."""
        if not session_ids:
            return {}
        directory = self.archive_directory(project_root)
        return {
            sid: self.archived_state(directory / f"{check_id(sid, 'session_id')}.json") for sid in session_ids
        }

    async def archive(
        self, ns: Namespace, session_id: str, project_root: str | None, agent: str | None = None
    ) -> ArchiveResult:
        """Write the session's current state to its archive file and keep it in the store.

        The file is left as it is when it already holds this ``(version, turns)``; a file holding
        a later state is never replaced (:class:`OlderStateError`). A failed write leaves the old
        file, or none (:class:`ArchiveError`).
        """
        keys = self._keys(ns, session_id)
        path = await self._archive_path(project_root, session_id)
        snap = await self._snapshot(keys, with_doc=True, start="0", stop="-1")
        if not snap.exists:
            raise self._not_found(session_id)
        doc = SessionDocument.parse(snap.document, session_id)
        history = [turn_record(t) for t in snap.turns]
        now, _, _ = self._now()
        data = archive_data(doc, history, ns.project_id, now, agent, self._settings.ttl_s)
        written = await self.reads.run(project_root, self._write_unless_same, path, data)
        return ArchiveResult(
            session_id=session_id,
            archived_to=str(path),
            written=written,
            version=doc.version,
            history_length=len(history),
        )

    def _write_unless_same(self, path: Path, data: Mapping[str, Any]) -> bool:
        if self.archived_state(path) == archive_order(data):
            return False
        self._write(path, data)
        return True

    def _write(self, path: Path, data: Mapping[str, Any]) -> None:
        # One place for the folder's .gitignore setting: session_end and the archiver alike.
        # ... and one place for the archive's redaction (secrets.archive), for the same reason.
        write_archive(
            path,
            self._guard.for_archive(data),
            gitignore=self._settings.archive_gitignore,
            max_bytes=self._settings.max_archive_bytes,
        )


def _valid_id(value: str) -> bool:
    try:
        check_id(value, "session_id")
    except InvalidArgumentError:
        return False
    return True
