"""The memory bank: a project's knowledge files, from every editor's place for them, cached in Redis.

Sources (``memory_bank.sources``, in order; see :class:`Sources`): paths relative to the project
root, each a folder (its ``*.md`` files), a single file, or ``<folder>/*.<ext>``. The default
reads Kilo Code's ``.kilocode/rules/memory-bank/`` (the seed's), Cline's ``memory-bank/``,
``AGENTS.md``, ``CLAUDE.md``, Cline's ``.clinerules`` (a file or a folder) and Cursor's
``.cursor/rules/*.mdc``. A file's *name* (in the index, the keys, ``memory_bank_get`` and the
``memory-bank://<name>`` resources) is its path from the project root, except in the first
source's folder, whose files keep their bare names (``brief.md``): the seed's agents ask for
those. Names are therefore unambiguous but for one case, a bare name in the first folder equal
to a root file's (``AGENTS.md`` in both): the first source wins, the other is skipped as
shadowed, and ``memory_bank_get`` reads the same one the index lists.

Keys (inside the project namespace, names from :mod:`coordinatord.keyspace`), each with TTL
``memory_bank.ttl_s`` (the seed's 1 h):

- ``cache:memory-bank:<name>`` — JSON ``{"sha256", "file", "source", "size", "mtime",
  "content"}``, in that order: the SHA-256 of the file's bytes sits in the first bytes, so a
  refresh learns what is cached with one ``GETRANGE`` per file instead of fetching whole files.
- ``cache:memory-bank:index`` — the seed's index shape plus what the refresh compares::

      {"files": ["AGENTS.md", "brief.md", "memory-bank/tech.md", ...],
       "lastUpdated": "2026-02-13T04:00:00.000Z",
       "hashes": {"brief.md": "<sha256>", ...}, "sizes": {"brief.md": 1234, ...},
       "sources": {"AGENTS.md": "AGENTS.md", "brief.md": ".kilocode/rules/memory-bank",
                   "memory-bank/tech.md": "memory-bank", ...},
       "skipped": ["huge.md"], "directory": ".kilocode/rules/memory-bank"}

  ``sources`` tags each file with the source (as configured) it came from; ``directory`` is the
  first source.

  ``lastUpdated`` is when the index last changed, not when it was last checked.

Refresh (:meth:`MemoryBankService.refresh`, run by the ``memory_bank_refresh`` job and on an
index miss): read the folder, hash every file, learn the cached hashes (the index and a
``GETRANGE`` of each file key, one round trip), then in one more round trip ``SET`` only the
files whose hash changed, ``DEL`` the files that are gone, rewrite the index only if it changed,
and ``EXPIRE`` everything unchanged. That last part is why unchanged entries never run out
between runs: while a daemon refreshes every ``jobs.memory_bank_refresh_s`` (60 s) their TTL
(3600 s) is renewed at each run, for the price of one ``EXPIRE`` each; when no daemon refreshes
any more, the cache goes away after one TTL. An ``EXPIRE`` that finds its key already gone
(expired between the two round trips) is followed by a ``SET``.

Reads (:meth:`~MemoryBankService.get`, :meth:`~MemoryBankService.index`) are served from the
cache; on a miss the file (or folder) is read and the cache refilled. A file refill uses
``SET NX``, so it never replaces what a concurrent refresh wrote; a refresh is a derived copy of
the folder, so if it races a change of the files, the next refresh (which compares with what is
actually cached) sets it right. No read-modify-write of a cache entry happens in Python.

Confinement, the same for every source: a name must be one a source can give (a plain entry
name of letters, digits, ``.``, ``_``, ``-`` with the source's suffix; no ``..``, no NUL, no
absolute path), the source's folder (a single file's parent folder) must resolve inside the
project root, and the file must resolve to an entry directly inside that folder (a symlink to
elsewhere is refused). It is then read relative to the folder, never through a symlink, by
:mod:`coordinatord.safe_read`: it must be a regular file (a FIFO, a device, a socket is
refused without being opened or read) of at most ``memory_bank.max_file_bytes``. The reads run
among the project's own (:mod:`coordinatord.project_reads`), bounded in time. A source that
escapes the root is skipped, not fatal.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict

from coordinatord import safe_read
from coordinatord.clock import Clock, system_clock
from coordinatord.errors import FileRefusedError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.keyspace import MEMORY_BANK_INDEX, Namespace, memory_bank_key
from coordinatord.project_reads import ProjectReads
from coordinatord.services.shared import iso_timestamp
from coordinatord.settings import MEMORY_BANK_SOURCES, MemoryBankSettings, ProjectFileSettings
from coordinatord.store import Batch, Reply, Store

log = structlog.get_logger("coordinatord.memory_bank")

URI_SCHEME = "memory-bank://"
MIME_TYPE = "text/markdown"
SHA_HEAD = '{"sha256":"'
HEAD_BYTES = len(SHA_HEAD) + 64 + 1  # through the closing quote

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,196}\.md")
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,196}")
_CACHED_SHA = re.compile(r'\{"sha256":"([0-9a-f]{64})"')


# --- Results --------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class IndexResult(_Result):
    files: list[str]
    lastUpdated: str
    hashes: dict[str, str]
    sizes: dict[str, int]
    sources: dict[str, str]  # file -> the source (as memory_bank.sources spells it) it came from
    skipped: list[str]  # files left out: too large, unreadable, escaping, beyond max_files, shadowed
    directory: str  # the first source
    cached: bool  # False: the sources were read because the cache had no index


class FileResult(_Result):
    file: str
    source: str
    content: str
    sha256: str
    cached: bool  # False: the file was read from disk and the cache refilled


class RefreshResult(_Result):
    exists: bool  # whether any source exists in the project
    files: int
    changed: int
    removed: int
    skipped: int
    index: dict[str, Any] | None  # the index now cached (None when there is no folder)
    changed_files: list[str]  # entries written
    removed_files: list[str]  # entries deleted


# --- Pure logic -----------------------------------------------------------------------------


def check_file_name(name: str, argument: str = "file") -> str:
    """A plain memory-bank file name: ``brief.md``, never a path."""
    if "\x00" in name or "/" in name or "\\" in name or ".." in name or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"argument {argument!r} must be the name of a .md file in the memory-bank folder, "
            f"e.g. 'brief.md' (letters, digits, '.', '_', '-'; no '/' or '..'); got {name[:80]!r}"
        )
    return name


def file_uri(name: str) -> str:
    return URI_SCHEME + name


def file_from_uri(uri: str, sources: Sources | None = None) -> str:
    """The file a ``memory-bank://<name>`` URI names, checked like a tool argument."""
    sources = sources or DEFAULT_SOURCES
    try:
        if uri.startswith(URI_SCHEME):
            return sources.check_name(uri[len(URI_SCHEME) :], "uri")
    except InvalidArgumentError:
        pass
    raise InvalidArgumentError(
        f"resource URI {uri[:120]!r} is not memory-bank://<name> with a name memory_bank_index "
        "lists, e.g. memory-bank://brief.md or memory-bank://AGENTS.md"
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BankFile:
    name: str
    content: str
    sha256: str
    size: int
    mtime: float
    source: str = MEMORY_BANK_SOURCES[0]


def encode_entry(bank_file: BankFile) -> str:
    """A file's cache entry, with its hash first (see the module docstring)."""
    return json.dumps(
        {
            "sha256": bank_file.sha256,
            "file": bank_file.name,
            "source": bank_file.source,
            "size": bank_file.size,
            "mtime": iso_timestamp(bank_file.mtime),
            "content": bank_file.content,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def cached_sha(head: str | None) -> str | None:
    """The hash at the start of a cache entry (``None`` if absent or not an entry)."""
    match = _CACHED_SHA.match(head or "")
    return match.group(1) if match else None


def _json_object(raw: str | None) -> dict[str, Any] | None:
    """A cached JSON object, or ``None`` when missing or not an object."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_entry(
    raw: str | None, name: str, default_source: str = MEMORY_BANK_SOURCES[0]
) -> FileResult | None:
    """A cached entry as a result, or ``None`` when missing or not an entry of ``name``. An entry
    without ``source`` was written before there were sources: it is of the first one."""
    value = _json_object(raw)
    if not (
        value is not None
        and value.get("file") == name
        and isinstance(value.get("content"), str)
        and isinstance(value.get("sha256"), str)
    ):
        return None
    source = value.get("source")
    return FileResult(
        file=name,
        source=source if isinstance(source, str) else default_source,
        content=value["content"],
        sha256=value["sha256"],
        cached=True,
    )


def build_index(
    files: list[BankFile], skipped: list[str], directory: str, last_updated: str
) -> dict[str, Any]:
    ordered = sorted(files, key=lambda f: f.name)
    return {
        "files": [f.name for f in ordered],
        "lastUpdated": last_updated,
        "hashes": {f.name: f.sha256 for f in ordered},
        "sizes": {f.name: f.size for f in ordered},
        "sources": {f.name: f.source for f in ordered},
        "skipped": sorted(skipped),
        "directory": directory,
    }


def parse_index(raw: str | None) -> dict[str, Any] | None:
    """A cached index, or ``None`` when missing or not in the shape this module writes."""
    value = _json_object(raw)
    if not (
        value is not None
        and isinstance(value.get("files"), list)
        and all(isinstance(f, str) for f in value["files"])
        and isinstance(value.get("hashes"), dict)
        and isinstance(value.get("sizes"), dict)
        and isinstance(value.get("sources"), dict)  # an index from before sources: refreshed
        and isinstance(value.get("skipped"), list)
        and isinstance(value.get("lastUpdated"), str)
        and isinstance(value.get("directory"), str)
    ):
        return None
    return value


def same_index(stored: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether ``stored`` describes the same files as ``new`` (``lastUpdated`` aside)."""
    if stored is None:
        return False
    return all(
        stored.get(field) == new[field]
        for field in ("files", "hashes", "sizes", "sources", "skipped", "directory")
    )


def index_result(index: dict[str, Any], cached: bool) -> IndexResult:
    return IndexResult(
        files=index["files"],
        lastUpdated=index["lastUpdated"],
        hashes=index["hashes"],
        sizes=index["sizes"],
        sources=index["sources"],
        skipped=index["skipped"],
        directory=index["directory"],
        cached=cached,
    )


# --- Sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One entry of ``memory_bank.sources`` (checked by the settings), as the scans use it."""

    spec: str  # as configured: the tag each of its files carries
    path: str  # the folder, or the single file, relative to the project root
    suffix: str  # of a folder's files: ".md", or the <ext> of "<folder>/*.<ext>"
    folder_only: bool  # given as "<folder>/*.<ext>": never a single file
    bare: bool  # the first source: its folder's files are named without the folder

    @classmethod
    def parse(cls, spec: str, first: bool) -> Source:
        folder, _, last = spec.rpartition("/")
        if last.startswith("*."):
            return cls(spec, folder, last[1:], folder_only=True, bare=first)
        return cls(spec, spec, ".md", folder_only=False, bare=first)

    def name_of(self, entry: str) -> str:
        """The public name of an entry of this source's folder."""
        return entry if self.bare else f"{self.path}/{entry}"

    def locate(self, name: str) -> tuple[str, str] | None:
        """``(folder, entry)`` (the folder relative to the root) this source would read for
        ``name``, judged by the name's form only; ``None``: not a name this source gives."""
        if not self.folder_only and name == self.path:
            parent, _, entry = self.path.rpartition("/")
            return parent or ".", entry
        prefix = "" if self.bare else self.path + "/"
        entry = name[len(prefix) :] if name.startswith(prefix) else ""
        return (self.path, entry) if entry_ok(entry, self.suffix) else None


def entry_ok(entry: str, suffix: str) -> bool:
    """A plain entry name of a folder source: no path, no '..', the source's suffix."""
    stem = entry[: -len(suffix)]
    return entry.endswith(suffix) and ".." not in entry and _STEM.fullmatch(stem) is not None


class Sources:
    """The configured sources, in order: the first that can give a name owns it."""

    def __init__(self, specs: tuple[str, ...]) -> None:
        self.specs = specs
        self.all = tuple(Source.parse(spec, first=i == 0) for i, spec in enumerate(specs))

    @property
    def first(self) -> Source:
        return self.all[0]

    def candidates(self, name: str) -> list[tuple[Source, str, str]]:
        """``(source, folder, entry)`` for each source that could give ``name``, in order."""
        found = []
        for source in self.all:
            where = source.locate(name)
            if where is not None:
                found.append((source, *where))
        return found

    def check_name(self, name: str, argument: str = "file") -> str:
        """A name some source gives (``brief.md``, ``AGENTS.md``, ``memory-bank/tech.md``), never
        a path of anything else."""
        if "\x00" in name or "\\" in name or name.startswith("/") or not self.candidates(name):
            raise InvalidArgumentError(
                f"argument {argument!r} must be the name of a file memory_bank_index lists: a "
                f"memory-bank file such as 'brief.md', or a path from another source "
                f"({', '.join(self.specs)}) such as 'AGENTS.md' or 'memory-bank/context.md' "
                f"(letters, digits, '.', '_', '-'; no '..'); got {name[:80]!r}"
            )
        return name

    def could_name(self, name: str) -> bool:
        try:
            self.check_name(name)
        except InvalidArgumentError:
            return False
        return True


DEFAULT_SOURCES = Sources(MEMORY_BANK_SOURCES)


# --- The files (blocking: call these off the event loop) --------------------------------------


def _require_root(project_root: str | None) -> str:
    if project_root is None:
        raise InvalidArgumentError(
            "this connection has no project root (an anonymous socket client), so there is no "
            "memory bank to read; connect through the shim (`coordinatord shim --project DIR`)"
        )
    return project_root


def memory_bank_folder(project_root: str | None, directory: str) -> Path:
    """The resolved folder of a source (it may not exist), checked to stay inside the project root."""
    root = Path(_require_root(project_root)).resolve()
    folder = (root / directory).resolve()
    if not folder.is_relative_to(root):
        raise InvalidArgumentError(
            f"the memory-bank source {directory!r} resolves to {folder}, outside the project root "
            f"{root}; the memory bank is read only inside the project"
        )
    return folder


def read_bank_file(folder: Path, name: str, max_bytes: int) -> BankFile:
    """One file of the first source's folder, by its bare name (see :func:`read_entry`)."""
    check_file_name(name)
    return read_entry(folder, name, name, max_bytes)


def read_entry(
    folder: Path, entry: str, name: str, max_bytes: int, source: str = MEMORY_BANK_SOURCES[0]
) -> BankFile:
    """The entry ``entry`` directly inside the resolved ``folder``, confined to it (see the
    module docstring); ``name`` is what the result and the errors call it."""
    try:
        resolved = (folder / entry).resolve(strict=True)
    except FileNotFoundError:
        raise NotFoundError(
            f"memory-bank file {name!r} not found in {folder}; memory_bank_index lists the files"
        ) from None
    except RuntimeError:  # a symlink loop (Python < 3.13; later ones raise ELOOP)
        raise safe_read.symlink_loop(str(folder / entry)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise safe_read.symlink_loop(str(folder / entry)) from None
        raise InvalidArgumentError(f"memory-bank file {name!r} cannot be resolved: {exc}") from None
    if resolved.parent != folder:
        raise InvalidArgumentError(
            f"memory-bank file {name!r} resolves to {resolved}, outside the memory-bank folder "
            f"{folder}; files outside it are never read"
        )
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Relative to the folder it was confined to, never through a symlink.
            data, info = safe_read.read_with_stat(
                resolved.name,
                max_bytes,
                setting=f"memory_bank.max_file_bytes = {max_bytes}",
                follow_symlinks=False,
                dir_fd=dir_fd,
                shown_as=str(resolved),
            )
        finally:
            os.close(dir_fd)
    except FileNotFoundError:
        raise NotFoundError(f"memory-bank file {name!r} not found in {folder}") from None
    except OSError as exc:
        raise InvalidArgumentError(
            f"memory-bank file {name!r} cannot be opened: {exc.strerror or exc}"
        ) from None
    return BankFile(
        name=name,
        content=data.decode("utf-8", errors="replace"),
        sha256=sha256_hex(data),
        size=len(data),
        mtime=info.st_mtime,
        source=source,
    )


@dataclass(frozen=True)
class FolderScan:
    exists: bool
    files: list[BankFile]
    skipped: dict[str, str]  # name -> why


def scan_folder(folder: Path, max_bytes: int, max_files: int, source: Source | None = None) -> FolderScan:
    """Every file of a folder source that can be cached (``*.md`` by default), the first
    ``max_files`` in name order; the others with the reason."""
    source = source or DEFAULT_SOURCES.first
    try:
        entries = sorted(e.name for e in os.scandir(folder) if e.name.endswith(source.suffix))
    except (FileNotFoundError, NotADirectoryError):
        return FolderScan(exists=False, files=[], skipped={})
    files: list[BankFile] = []
    skipped: dict[str, str] = {}
    for entry in entries:
        name = source.name_of(entry)
        if len(files) >= max_files:
            skipped[name] = f"more than memory_bank.max_files = {max_files} files in the folder"
            continue
        if not entry_ok(entry, source.suffix):
            skipped[name] = f"memory-bank file {name!r}: not a plain name (letters, digits, '.', '_', '-')"
            continue
        try:
            files.append(read_entry(folder, entry, name, max_bytes, source.spec))
        except NotFoundError:
            continue  # removed while we looked, or a dangling symlink
        except (InvalidArgumentError, LimitExceededError, FileRefusedError) as exc:
            skipped[name] = str(exc)
    return FolderScan(exists=True, files=files, skipped=skipped)


def scan_source(root: str, source: Source, max_bytes: int, max_files: int) -> FolderScan:
    """One source: a folder's files, or the single file (``.clinerules`` may be either)."""
    try:
        target = memory_bank_folder(root, source.path)
    except InvalidArgumentError as exc:
        # A symlinked source that leaves the project: skipped like any unreadable file.
        return FolderScan(exists=True, files=[], skipped={source.path: str(exc)})
    if target.is_dir():
        return scan_folder(target, max_bytes, max_files, source)
    if source.folder_only:
        return FolderScan(exists=False, files=[], skipped={})
    folder, entry = source.locate(source.path) or (".", source.path)
    try:
        bank_file = read_entry(memory_bank_folder(root, folder), entry, source.path, max_bytes, source.spec)
    except NotFoundError:
        return FolderScan(exists=False, files=[], skipped={})
    except (InvalidArgumentError, LimitExceededError, FileRefusedError) as exc:
        return FolderScan(exists=True, files=[], skipped={source.path: str(exc)})
    return FolderScan(exists=True, files=[bank_file], skipped={})


def scan_sources(root: str, sources: Sources, max_bytes: int, max_files: int) -> FolderScan:
    """Every source in order; a name an earlier source gave (cached or skipped) shadows a later
    source's file of the same name, which is skipped saying so."""
    files: dict[str, BankFile] = {}
    skipped: dict[str, str] = {}
    owner: dict[str, str] = {}
    exists = False
    for source in sources.all:
        scan = scan_source(root, source, max_bytes, max_files)
        exists = exists or scan.exists
        found = [(f.name, f) for f in scan.files] + [(name, None) for name in scan.skipped]
        for name, bank_file in found:
            if name in owner:
                # Listed under a key of its own: the name itself belongs to the first source.
                skipped[f"{name} ({source.spec})"] = (
                    f"memory-bank file {name!r} of {source.spec} is shadowed by the same name "
                    f"in {owner[name]}, which comes first in memory_bank.sources"
                )
                continue
            owner[name] = source.spec
            if bank_file is not None:
                files[name] = bank_file
            else:
                skipped[name] = scan.skipped[name]
    return FolderScan(exists=exists, files=list(files.values()), skipped=skipped)


# --- The service ----------------------------------------------------------------------------


class MemoryBankService:
    def __init__(
        self,
        store: Store,
        settings: MemoryBankSettings,
        clock: Clock = system_clock,
        reads: ProjectReads | None = None,
    ) -> None:
        """``reads``: where the project's files are read (per project, bounded in time)."""
        self._store = store
        self._reads = reads or ProjectReads(ProjectFileSettings())
        self._settings = settings
        self._clock = clock
        self.sources = Sources(settings.sources)

    def folder(self, project_root: str | None) -> Path:
        """The first source's folder. Blocking (resolves paths)."""
        return memory_bank_folder(project_root, self.sources.first.path)

    def read(self, project_root: str, name: str) -> BankFile:
        """The file ``name`` names, from the first source that has it. Blocking."""
        missing: NotFoundError | None = None
        for source, folder, entry in self.sources.candidates(name):
            try:
                return read_entry(
                    memory_bank_folder(project_root, folder),
                    entry,
                    name,
                    self._settings.max_file_bytes,
                    source.spec,
                )
            except NotFoundError as exc:
                missing = missing or exc
        raise missing or NotFoundError(f"memory-bank file {name!r} not found")

    async def get(self, ns: Namespace, project_root: str | None, file: str) -> FileResult:
        """A file from the cache; on a miss, from disk (and the cache is refilled)."""
        name = self.sources.check_name(file)
        root = _require_root(project_root)
        key = ns.key(memory_bank_key(name))
        cached = parse_entry(await self._store.get(key), name, self.sources.first.spec)
        if cached is not None:
            return cached
        bank_file = await self._reads.run(root, self.read, root, name)
        # NX: a refresh that wrote this entry meanwhile read the file no earlier than we did.
        await self._store.set(key, encode_entry(bank_file), self._settings.ttl_s, only_if_absent=True)
        return FileResult(
            file=name,
            source=bank_file.source,
            content=bank_file.content,
            sha256=bank_file.sha256,
            cached=False,
        )

    async def index(self, ns: Namespace, project_root: str | None) -> IndexResult:
        """The index from the cache; on a miss, a refresh of the sources."""
        _require_root(project_root)
        cached = parse_index(await self._store.get(ns.key(MEMORY_BANK_INDEX)))
        if cached is not None:
            return index_result(cached, cached=True)
        refreshed = await self.refresh(ns, project_root)
        if refreshed.index is None:
            raise NotFoundError(
                f"this project has no memory bank: none of {', '.join(self.sources.specs)} under "
                f"{project_root} (create {self.sources.first.path} with brief.md, product.md, "
                "context.md, architecture.md, tech.md, or an AGENTS.md)"
            )
        return index_result(refreshed.index, cached=False)

    async def refresh(self, ns: Namespace, project_root: str | None) -> RefreshResult:
        """Bring the cache in line with the sources, writing only what changed."""
        root = _require_root(project_root)
        # The first source escaping the root is a configuration error, as it always was.
        await self._reads.run(root, self.folder, root)
        scan = await self._reads.run(
            root, scan_sources, root, self.sources, self._settings.max_file_bytes, self._settings.max_files
        )
        ttl = self._settings.ttl_s
        index_key = ns.key(MEMORY_BANK_INDEX)
        file_keys = {f.name: ns.key(memory_bank_key(f.name)) for f in scan.files}
        reads = Batch()
        stored_index = reads.get(index_key)
        heads = {name: reads.getrange(key, 0, HEAD_BYTES - 1) for name, key in file_keys.items()}
        await self._store.run(reads)
        stored = parse_index(stored_index.value)
        if not scan.exists and stored is None:
            return RefreshResult(
                exists=False,
                files=0,
                changed=0,
                removed=0,
                skipped=0,
                index=None,
                changed_files=[],
                removed_files=[],
            )
        cached = {name: cached_sha(head.value) for name, head in heads.items()}
        changed = [f for f in scan.files if cached[f.name] != f.sha256]
        unchanged = [f for f in scan.files if cached[f.name] == f.sha256]
        present = set(file_keys)
        removed = sorted(
            name
            for name in set(stored["files"] if stored else []) | set(stored["hashes"] if stored else [])
            if isinstance(name, str) and name not in present and self.sources.could_name(name)
        )
        # Idempotent, so a resend of the pipeline after a lost reply (redis-py retries it whole)
        # changes nothing: SET of a value, EXPIRE and DEL leave the same state when applied
        # twice, and the EXPIREs' replies (read below) are the same too while the key lives.
        writes = Batch()
        for f in changed:
            writes.set(file_keys[f.name], encode_entry(f), ttl)
        kept = [(f, writes.expire(file_keys[f.name], ttl)) for f in unchanged]
        for name in removed:
            writes.delete([ns.key(memory_bank_key(name))])
        index: dict[str, Any] | None = None
        index_kept: Reply[bool] | None = None
        if scan.exists:
            now = iso_timestamp(self._clock())
            index = build_index(scan.files, list(scan.skipped), self.sources.first.spec, now)
            if same_index(stored, index):
                assert stored is not None
                index = stored
                index_kept = writes.expire(index_key, ttl)
            else:
                writes.set(index_key, json.dumps(index, separators=(",", ":")), ttl)
        else:
            writes.delete([index_key])  # the folder is gone: so is its cache
        await self._store.run(writes)
        # An EXPIRE that found no key: the entry ran out between our two round trips.
        lapsed = [f for f, expired in kept if not expired.value]
        retry = Batch()
        for f in lapsed:
            retry.set(file_keys[f.name], encode_entry(f), ttl)
        if index is not None and index_kept is not None and not index_kept.value:
            retry.set(index_key, json.dumps(index, separators=(",", ":")), ttl)
        await self._store.run(retry)
        new_skips = sorted(set(scan.skipped) - set(stored["skipped"] if stored else []))
        for name in new_skips:
            log.warning(
                "memory_bank_file_skipped", project=ns.project_id, file=name, reason=scan.skipped[name]
            )
        return RefreshResult(
            exists=scan.exists,
            files=len(scan.files),
            changed=len(changed) + len(lapsed),
            removed=len(removed),
            skipped=len(scan.skipped),
            index=index,
            changed_files=sorted(f.name for f in (*changed, *lapsed)),
            removed_files=removed,
        )
