"""Session archive files: where they go, what they hold (a session document and its history
mapped to and from the file), written atomically and durably, read back with clear errors.

Plain functions over the filesystem (no Redis, no event loop): ``session_end`` and
``session_restore`` call them from a worker thread, and a scheduled archiver can call them too.

Format ``coordinatord.session/1`` — one UTF-8 JSON object per file,
``<project root>/<sessions.archive_dir>/<session_id>.json``::

    {
      "format": "coordinatord.session/1",
      "session_id": "s1",            # the id the session had (and has again when restored)
      "project_id": "app-1a2b3c4d5e",# the namespace it lived in (informational)
      "archived_at": "2026-02-13T04:00:00.000Z",
      "archived_by": "kilocode",     # the agent that ended it, or null
      "version": 7,                  # the context document's version when archived
      "ttl": 86400,                  # the session's TTL in seconds (restored with it)
      "createdAt": "...", "updatedAt": "...", "createdBy": "...", "lastAgent": "...",
      "context": {...},              # the saved context, exactly as stored
      "history": [{"role": "user", "message": "...", "ts": "...", "agent": "..."}, ...]
    }

A folder this module creates gets a ``.gitignore`` of ``*`` (unless
``sessions.archive_gitignore`` is off): archives hold conversation text, which must not be one
``git add .`` away from a commit. A folder that already existed is left as its owner made it.

Durability: the JSON goes to a temp file in the same directory (created 0600: sessions hold
conversation text), which is flushed and fsynced, renamed over the target, and then the
directory is fsynced, so after a crash the file is either the old one or the new one, whole.

An archive is never replaced by an older state: states are ordered by ``(version, number of
turns)`` — a session's context version only rises and its history only grows while it lives —
and :func:`write_archive` refuses (:class:`OlderStateError`) to replace a file holding a later
state. Writers on this host are serialised by an exclusive ``flock`` on the archive directory,
so the check and the rename cannot interleave with another writer's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from coordinatord import safe_read
from coordinatord.errors import (
    ArchiveError,
    FileRefusedError,
    InvalidArgumentError,
    NotFoundError,
    OlderStateError,
)
from coordinatord.keyspace import check_id
from coordinatord.services.session_rules import SessionDocument, str_or_none

FORMAT = "coordinatord.session/1"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""``sessions.max_archive_bytes``' default."""
FORMAT_FAMILY = "coordinatord.session/"
DIR_MODE = 0o700  # new archive directories: conversation text is private to the user
GITIGNORE = (
    "# Written by coordinatord: session archives hold conversation text; keep them out of git.\n"
    "# (sessions.archive_gitignore = false stops coordinatord adding this to new folders.)\n"
    "*\n"
)


def archive_order(data: Mapping[str, Any]) -> tuple[int, int]:
    """Where a session state stands in its lifetime: ``(version, number of turns)``."""
    version = data.get("version")
    history = data.get("history")
    return (
        version if isinstance(version, int) and not isinstance(version, bool) else 0,
        len(history) if isinstance(history, list) else 0,
    )


def encode_archive(data: Mapping[str, Any]) -> bytes:
    """The file's bytes: indented UTF-8 JSON (lone surrogates kept as ``\\u`` escapes)."""
    try:
        text = json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False)
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; ASCII escapes keep it, losslessly.
        return (json.dumps(data, ensure_ascii=True, indent=2, allow_nan=False) + "\n").encode("ascii")


def write_archive(
    path: Path, data: Mapping[str, Any], *, gitignore: bool = True, max_bytes: int = DEFAULT_MAX_BYTES
) -> None:
    """Write ``data`` to ``path`` atomically and durably, unless ``path`` holds a later state.
    When this creates the folder, it also writes the folder's ``.gitignore`` (``gitignore``).
    ``max_bytes``: the largest existing file read to learn what it holds.

    Raises :class:`OlderStateError` when the existing file is later than ``data`` and
    :class:`ArchiveError` when the directory or file cannot be written (or the existing file
    cannot be understood, which is never overwritten). On any failure ``path`` is unchanged
    and no temp file is left behind.
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"archive data must have format {FORMAT!r}")
    payload = encode_archive(data)
    directory = path.parent
    _create_directory(directory, gitignore)
    with _locked_directory(directory) as dir_fd:
        existing = _existing_state(path, max_bytes)
        new = archive_order(data)
        if existing is not None and existing > new:
            raise OlderStateError(
                f"archive {path} already holds a later state of this session (version {existing[0]}, "
                f"{existing[1]} turns) than the one being written (version {new[0]}, {new[1]} turns); "
                "an archive is never replaced by an older state, so it was left as it is"
            )
        _replace_durably(path, payload, dir_fd)


def _create_directory(directory: Path, gitignore: bool) -> None:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            return
        if gitignore:
            # Written before any archive, so no archive is ever in the folder unignored.
            with open(directory / ".gitignore", "x", encoding="utf-8") as ignore:
                ignore.write(GITIGNORE)
    except OSError as exc:
        raise ArchiveError(
            f"cannot create the archive directory {directory}: {_reason(exc)}; nothing was changed"
        ) from None


def read_archive(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The archive at ``path``, checked for the format this version understands. It must be a
    regular file (not a symlink: archives are files this module writes) of at most
    ``max_bytes`` (``sessions.max_archive_bytes``)."""
    try:
        raw = safe_read.read_bytes(
            path, max_bytes, setting=f"sessions.max_archive_bytes = {max_bytes}", follow_symlinks=False
        )
    except FileNotFoundError:
        raise NotFoundError(f"no session archive at {path}") from None
    except FileRefusedError as exc:
        raise ArchiveError(f"session archive {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read session archive {path}: {_reason(exc)}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArchiveError(f"session archive {path} is not valid UTF-8 JSON: {exc}") from None
    return validate_archive(data, str(path))


def validate_archive(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it is a well-formed ``coordinatord.session/1`` archive; else an error naming
    ``where`` and the first field that is wrong.
    """
    if not isinstance(data, dict):
        raise ArchiveError(f"session archive {where} is not a JSON object")
    fmt = data.get("format")
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith(FORMAT_FAMILY):
            raise ArchiveError(
                f"session archive {where} has format {fmt!r}, which this coordinatord does not read "
                f"(it reads {FORMAT!r}); was it written by a newer version?"
            )
        raise ArchiveError(f"session archive {where} has format {fmt!r}; expected {FORMAT!r}")
    if not isinstance(data.get("session_id"), str) or not data["session_id"]:
        raise ArchiveError(f"session archive {where}: 'session_id' must be a non-empty string")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ArchiveError(f"session archive {where}: 'version' must be a non-negative integer")
    if not isinstance(data.get("context"), dict):
        raise ArchiveError(f"session archive {where}: 'context' must be an object")
    history = data.get("history")
    if not isinstance(history, list):
        raise ArchiveError(f"session archive {where}: 'history' must be an array")
    for index, turn in enumerate(history):
        if not isinstance(turn, dict) or not all(
            isinstance(turn.get(field), str) for field in ("role", "message", "ts")
        ):
            raise ArchiveError(
                f"session archive {where}: history[{index}] must be an object with string "
                "'role', 'message' and 'ts'"
            )
    ttl = data.get("ttl")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
        raise ArchiveError(f"session archive {where}: 'ttl' must be a positive integer when present")
    return data


def _existing_state(path: Path, max_bytes: int) -> tuple[int, int] | None:
    try:
        data = read_archive(path, max_bytes)
    except NotFoundError:
        return None
    except ArchiveError as exc:
        # Never overwritten: it may be somebody's file, or a later version's archive.
        raise ArchiveError(f"{exc}; it was left as it is — move it away to archive this session") from None
    return archive_order(data)


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[int]:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ArchiveError(f"cannot open the archive directory {directory}: {_reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
        yield fd
    finally:
        os.close(fd)


def _replace_durably(path: Path, payload: bytes, dir_fd: int) -> None:
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise ArchiveError(
            f"cannot write session archive {path}: {_reason(exc)}; the previous file (if any) "
            "was left as it is"
        ) from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    try:
        # The rename is durable only once the directory entry is on disk.
        os.fsync(dir_fd)
    except OSError as exc:
        raise ArchiveError(
            f"session archive {path} was written, but its directory could not be synced to disk: "
            f"{_reason(exc)}"
        ) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def archive_data(
    doc: SessionDocument,
    history: Sequence[Mapping[str, Any]],
    project_id: str,
    archived_at: str,
    archived_by: str | None,
    default_ttl: int,
) -> dict[str, Any]:
    """The ``coordinatord.session/1`` archive of a session (the format above)."""
    return {
        "format": FORMAT,
        "session_id": doc.session_id,
        "project_id": project_id,
        "archived_at": archived_at,
        "archived_by": archived_by,
        "version": doc.version,
        "ttl": doc.ttl if doc.ttl is not None else default_ttl,
        "createdAt": doc.created_at,
        "updatedAt": doc.updated_at,
        "createdBy": doc.created_by,
        "lastAgent": doc.last_agent,
        "context": doc.context,
        "history": list(history),
    }


def document_from_archive(data: Mapping[str, Any]) -> SessionDocument:
    return SessionDocument(
        session_id=data["session_id"],
        version=data["version"],
        ttl=data.get("ttl"),
        created_at=str_or_none(data.get("createdAt")),
        updated_at=str_or_none(data.get("updatedAt")),
        created_by=str_or_none(data.get("createdBy")),
        last_agent=str_or_none(data.get("lastAgent")),
        context=data["context"],
    )


def archive_path(project_root: str | None, archive_dir: str, session_id: str) -> Path:
    """``<project root>/<archive_dir>/<session_id>.json``, checked to stay inside the root.

    Resolves symlinks, so it touches the filesystem: call it off the event loop.
    """
    if project_root is None:
        raise InvalidArgumentError(
            "this connection has no project root (an anonymous socket client), so there is no "
            f"project folder to archive session {session_id!r} into; connect through the shim "
            "(`coordinatord shim --project DIR`)"
        )
    root = Path(project_root).resolve()
    if not root.is_dir():
        raise ArchiveError(f"the project root {root} is not a directory, so session archives cannot go there")
    directory = (root / archive_dir).resolve()
    if not directory.is_relative_to(root):
        raise ArchiveError(
            f"the session archive directory sessions.archive_dir = {archive_dir!r} resolves to "
            f"{directory}, which is outside the project root {root}; archives stay inside the project"
        )
    return directory / f"{check_id(session_id, 'session_id')}.json"
