"""The memory-bank cache against real servers (Valkey and, where it answers, Redis)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from coordinatord.errors import FileRefusedError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.keyspace import MEMORY_BANK_INDEX, Namespace, memory_bank_key
from coordinatord.services.memory_bank import MemoryBankService, sha256_hex
from coordinatord.settings import MemoryBankSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio

START = 1_770_955_200.0  # 2026-02-13T04:00:00Z
DIRECTORY = ".kilocode/rules/memory-bank"


def make(store: Store, clock: FakeClock | None = None, **settings: Any) -> MemoryBankService:
    return MemoryBankService(store, MemoryBankSettings(**settings), clock or FakeClock())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with a memory bank of two files."""
    project = tmp_path / "project"
    folder = project / DIRECTORY
    folder.mkdir(parents=True)
    (folder / "brief.md").write_text("# Brief\nA coordination daemon.\n")
    (folder / "context.md").write_text("# Context\nWorking on issue 4.\n")
    return project


async def entry(store: Store, ns: Namespace, name: str) -> dict[str, Any] | None:
    raw = await store.get(ns.key(memory_bank_key(name)))
    return None if raw is None else dict(json.loads(raw))


async def index_of(store: Store, ns: Namespace) -> dict[str, Any]:
    raw = await store.get(ns.key(MEMORY_BANK_INDEX))
    assert raw is not None
    return dict(json.loads(raw))


async def add_sentinel(store: Store, key: str) -> None:
    """Rewrite a cached value with an extra field: it survives only if nothing rewrites the key."""
    value = json.loads(await store.get(key) or "{}")
    value["sentinel"] = True
    await store.set(key, json.dumps(value, separators=(",", ":")), 100)


async def test_refresh_caches_every_file_and_the_index_with_the_ttl(store: Store, root: Path) -> None:
    """A first refresh writes each file (content, sha256, mtime) and the seed-shaped index, all with ttl_s."""
    svc, ns = make(store, ttl_s=3600), fresh_namespace()
    result = await svc.refresh(ns, str(root))
    assert (result.exists, result.files, result.changed, result.removed) == (True, 2, 2, 0)
    brief = await entry(store, ns, "brief.md")
    assert brief is not None
    assert brief["content"] == "# Brief\nA coordination daemon.\n"
    assert brief["sha256"] == sha256_hex(b"# Brief\nA coordination daemon.\n")
    assert brief["file"] == "brief.md" and brief["mtime"].endswith("Z")
    index = await index_of(store, ns)
    assert index["files"] == ["brief.md", "context.md"]
    assert index["hashes"]["brief.md"] == brief["sha256"]
    assert index["lastUpdated"] == "2026-02-13T04:00:00.000Z"
    for key in (memory_bank_key("brief.md"), memory_bank_key("context.md"), MEMORY_BANK_INDEX):
        assert 3590 < await store.ttl(ns.key(key)) <= 3600


async def test_refresh_rewrites_only_the_files_that_changed(store: Store, root: Path) -> None:
    """After one file changes, a refresh rewrites that entry and the index; the unchanged entry is
    not rewritten (a sentinel field in it survives)."""
    clock = FakeClock()
    svc, ns = make(store, clock), fresh_namespace()
    await svc.refresh(ns, str(root))
    await add_sentinel(store, ns.key(memory_bank_key("brief.md")))
    await add_sentinel(store, ns.key(memory_bank_key("context.md")))
    (root / DIRECTORY / "context.md").write_text("# Context\nWorking on issue 5.\n")
    clock.now += 60
    result = await svc.refresh(ns, str(root))
    assert (result.changed, result.removed, result.changed_files) == (1, 0, ["context.md"])
    brief, context = await entry(store, ns, "brief.md"), await entry(store, ns, "context.md")
    assert brief is not None and brief.get("sentinel") is True
    assert context is not None and "sentinel" not in context
    assert context["content"] == "# Context\nWorking on issue 5.\n"
    index = await index_of(store, ns)
    assert index["hashes"]["context.md"] == context["sha256"]
    assert index["lastUpdated"] == "2026-02-13T04:01:00.000Z"


async def test_a_refresh_without_changes_writes_nothing_but_renews_ttls(store: Store, root: Path) -> None:
    """With no file changed, a refresh rewrites no entry and not the index (sentinels survive,
    lastUpdated stays) but brings every TTL back to ttl_s, so the cache never lapses between runs."""
    clock = FakeClock()
    svc, ns = make(store, clock, ttl_s=3600), fresh_namespace()
    await svc.refresh(ns, str(root))
    keys = [
        ns.key(memory_bank_key("brief.md")),
        ns.key(memory_bank_key("context.md")),
        ns.key(MEMORY_BANK_INDEX),
    ]
    for key in keys:
        await add_sentinel(store, key)  # also shortens the TTL to 100 s
    clock.now += 3000
    result = await svc.refresh(ns, str(root))
    assert (result.changed, result.removed, result.files) == (0, 0, 2)
    for key in keys:
        value = json.loads(await store.get(key) or "{}")
        assert value.get("sentinel") is True, key
        assert await store.ttl(key) > 3590
    assert (await index_of(store, ns))["lastUpdated"] == "2026-02-13T04:00:00.000Z"


async def test_a_cache_entry_that_lapsed_is_written_again(store: Store, root: Path) -> None:
    """An entry that expired (or was deleted) since the last refresh is written again, even though
    the index still lists its hash."""
    svc, ns = make(store), fresh_namespace()
    await svc.refresh(ns, str(root))
    await store.delete([ns.key(memory_bank_key("brief.md"))])
    result = await svc.refresh(ns, str(root))
    assert result.changed_files == ["brief.md"]
    assert await entry(store, ns, "brief.md") is not None


async def test_removed_files_leave_the_cache(store: Store, root: Path) -> None:
    """A file deleted from the folder has its entry deleted and leaves the index; a deleted folder
    takes the whole cache with it."""
    svc, ns = make(store), fresh_namespace()
    await svc.refresh(ns, str(root))
    (root / DIRECTORY / "context.md").unlink()
    result = await svc.refresh(ns, str(root))
    assert (result.removed, result.removed_files, result.files) == (1, ["context.md"], 1)
    assert await entry(store, ns, "context.md") is None
    assert (await index_of(store, ns))["files"] == ["brief.md"]
    (root / DIRECTORY / "brief.md").unlink()
    (root / DIRECTORY).rmdir()
    gone = await svc.refresh(ns, str(root))
    assert (gone.exists, gone.removed) == (False, 1)
    assert await store.exists([ns.key(MEMORY_BANK_INDEX), ns.key(memory_bank_key("brief.md"))]) == 0


async def test_a_project_without_a_memory_bank_gets_no_keys(store: Store, tmp_path: Path) -> None:
    """Refreshing a project that has no memory-bank folder writes nothing; its index is not found."""
    svc, ns = make(store), fresh_namespace()
    result = await svc.refresh(ns, str(tmp_path))
    assert (result.exists, result.files, result.changed) == (False, 0, 0)
    assert await store.get(ns.key(MEMORY_BANK_INDEX)) is None
    with pytest.raises(NotFoundError, match="no memory bank"):
        await svc.index(ns, str(tmp_path))


async def test_get_serves_the_cache_and_refills_it_on_a_miss(store: Store, root: Path) -> None:
    """memory_bank_get reads the file on a miss (cached false) and caches it; the next read is
    served from the cache (cached true), even before any refresh."""
    svc, ns = make(store), fresh_namespace()
    first = await svc.get(ns, str(root), "brief.md")
    assert (first.file, first.cached) == ("brief.md", False)
    assert first.content == "# Brief\nA coordination daemon.\n"
    assert first.sha256 == sha256_hex(first.content.encode())
    assert 0 < await store.ttl(ns.key(memory_bank_key("brief.md"))) <= 3600
    second = await svc.get(ns, str(root), "brief.md")
    assert second.cached and second.content == first.content


async def test_index_is_served_from_the_cache_and_refilled_on_a_miss(store: Store, root: Path) -> None:
    """memory_bank_index refreshes the folder when the index is not cached, then serves the cache."""
    svc, ns = make(store), fresh_namespace()
    first = await svc.index(ns, str(root))
    assert (first.files, first.cached) == (["brief.md", "context.md"], False)
    assert first.lastUpdated == "2026-02-13T04:00:00.000Z"
    again = await svc.index(ns, str(root))
    assert again.cached and again.hashes == first.hashes
    assert (await svc.get(ns, str(root), "context.md")).cached  # the refresh cached the files too


@pytest.mark.parametrize("name", ["../secret.md", "/etc/passwd", "sub/brief.md", "brief.md\x00", "..md"])
async def test_path_escapes_are_refused_and_nothing_is_cached(store: Store, root: Path, name: str) -> None:
    """A file name with a path, '..' or NUL is refused before any read, and no key is written."""
    (root / DIRECTORY / "sub").mkdir()
    (root / DIRECTORY / "sub" / "brief.md").write_text("nested")
    (root / ".kilocode" / "rules" / "secret.md").write_text("secret")
    svc, ns = make(store), fresh_namespace()
    with pytest.raises(InvalidArgumentError, match="argument 'file'"):
        await svc.get(ns, str(root), name)
    assert await store.scan(ns.pattern("*"), 100) == ([], False)


async def test_a_symlink_escaping_the_folder_is_never_read_or_cached(store: Store, root: Path) -> None:
    """A .md symlink to a file outside the folder is refused by get and skipped by the refresh."""
    secret = root / "secret.md"
    secret.write_text("do not leak")
    (root / DIRECTORY / "leak.md").symlink_to(secret)
    svc, ns = make(store), fresh_namespace()
    with pytest.raises(InvalidArgumentError, match="outside the memory-bank folder"):
        await svc.get(ns, str(root), "leak.md")
    result = await svc.refresh(ns, str(root))
    assert result.skipped == 1 and "leak.md" not in result.changed_files
    assert await entry(store, ns, "leak.md") is None
    assert (await index_of(store, ns))["skipped"] == ["leak.md"]


async def test_an_anonymous_connection_gets_a_clear_error(store: Store) -> None:
    """Without a project root (an anonymous socket client) there is no memory bank: a clear error."""
    svc, ns = make(store), fresh_namespace()
    for call in (svc.get(ns, None, "brief.md"), svc.index(ns, None)):
        with pytest.raises(InvalidArgumentError, match="anonymous"):
            await call


async def test_oversized_files_are_skipped_with_a_warning(store: Store, root: Path) -> None:
    """A file above max_file_bytes is not cached: the refresh skips it and warns once; get refuses it."""
    (root / DIRECTORY / "huge.md").write_text("x" * 500)
    svc, ns = make(store, max_file_bytes=200), fresh_namespace()
    with capture_logs() as logs:
        result = await svc.refresh(ns, str(root))
        await svc.refresh(ns, str(root))
    assert (result.files, result.skipped) == (2, 1)
    warnings = [e for e in logs if e["event"] == "memory_bank_file_skipped"]
    assert [(w["file"], w["log_level"]) for w in warnings] == [("huge.md", "warning")]
    assert "max_file_bytes" in warnings[0]["reason"]
    with pytest.raises(LimitExceededError, match=r"memory_bank\.max_file_bytes = 200"):
        await svc.get(ns, str(root), "huge.md")


async def test_files_beyond_max_files_are_skipped_and_not_cached(store: Store, root: Path) -> None:
    """With memory_bank.max_files = 1 only the first file by name is cached; the index lists the
    other as skipped and the warning names the setting."""
    svc, ns = make(store, max_files=1), fresh_namespace()
    with capture_logs() as logs:
        result = await svc.refresh(ns, str(root))
    assert (result.files, result.skipped) == (1, 1)
    index = await index_of(store, ns)
    assert (index["files"], index["skipped"]) == (["brief.md"], ["context.md"])
    assert await entry(store, ns, "context.md") is None
    [warning] = [e for e in logs if e["event"] == "memory_bank_file_skipped"]
    assert warning["file"] == "context.md"
    assert warning["reason"] == "more than memory_bank.max_files = 1 files in the folder"


# --- Sources: every editor's knowledge files ----------------------------------------------------


@pytest.fixture
def sources_root(root: Path) -> Path:
    """The two-file Kilo bank plus AGENTS.md, CLAUDE.md and Cline's memory-bank/ folder."""
    (root / "AGENTS.md").write_text("# Agents\n")
    (root / "CLAUDE.md").write_text("# Claude\n")
    (root / "memory-bank").mkdir()
    (root / "memory-bank" / "projectbrief.md").write_text("# Cline brief\n")
    return root


async def test_agents_claude_and_a_cline_bank_are_all_listed(store: Store, sources_root: Path) -> None:
    """A project with AGENTS.md, CLAUDE.md and Cline's memory-bank/ besides Kilo's bank: the index
    lists every file with its source, Kilo's under bare names; each entry carries its source."""
    svc, ns = make(store), fresh_namespace()
    index = await svc.index(ns, str(sources_root))
    assert index.files == ["AGENTS.md", "CLAUDE.md", "brief.md", "context.md", "memory-bank/projectbrief.md"]
    assert index.sources == {
        "AGENTS.md": "AGENTS.md",
        "CLAUDE.md": "CLAUDE.md",
        "brief.md": DIRECTORY,
        "context.md": DIRECTORY,
        "memory-bank/projectbrief.md": "memory-bank",
    }
    assert index.directory == DIRECTORY and index.skipped == []
    cline = await entry(store, ns, "memory-bank/projectbrief.md")
    assert cline is not None and (cline["source"], cline["content"]) == ("memory-bank", "# Cline brief\n")
    got = await svc.get(ns, str(sources_root), "CLAUDE.md")
    assert (got.source, got.content, got.cached) == ("CLAUDE.md", "# Claude\n", True)


async def test_a_project_with_only_an_agents_md_has_a_memory_bank(store: Store, tmp_path: Path) -> None:
    """AGENTS.md alone is a memory bank: listed, read on a miss (cached false) and tagged."""
    (tmp_path / "AGENTS.md").write_text("# Agents\n")
    svc, ns = make(store), fresh_namespace()
    first = await svc.get(ns, str(tmp_path), "AGENTS.md")
    assert (first.source, first.cached) == ("AGENTS.md", False)
    assert (await svc.index(ns, str(tmp_path))).files == ["AGENTS.md"]


async def test_refresh_detects_changes_and_removals_per_source(store: Store, sources_root: Path) -> None:
    """A changed AGENTS.md, a new Cline file and a removed CLAUDE.md are each seen by the next
    refresh, and only those entries are written or deleted."""
    svc, ns = make(store), fresh_namespace()
    await svc.refresh(ns, str(sources_root))
    (sources_root / "AGENTS.md").write_text("# Agents\nv2\n")
    (sources_root / "memory-bank" / "progress.md").write_text("# Progress\n")
    (sources_root / "CLAUDE.md").unlink()
    result = await svc.refresh(ns, str(sources_root))
    assert result.changed_files == ["AGENTS.md", "memory-bank/progress.md"]
    assert result.removed_files == ["CLAUDE.md"]
    assert await entry(store, ns, "CLAUDE.md") is None
    assert (await svc.get(ns, str(sources_root), "AGENTS.md")).content == "# Agents\nv2\n"
    assert (await svc.refresh(ns, str(sources_root))).changed == 0


async def test_clinerules_may_be_a_file_or_a_folder(store: Store, tmp_path: Path) -> None:
    """Cline's .clinerules as a single file is listed as '.clinerules'; as a folder, its .md files
    as '.clinerules/<file>' (other files ignored); switching from one to the other is refreshed."""
    svc, ns = make(store), fresh_namespace()
    (tmp_path / ".clinerules").write_text("# Rules\n")
    assert (await svc.refresh(ns, str(tmp_path))).changed_files == [".clinerules"]
    (tmp_path / ".clinerules").unlink()
    (tmp_path / ".clinerules").mkdir()
    (tmp_path / ".clinerules" / "01-core.md").write_text("# Core\n")
    (tmp_path / ".clinerules" / "notes.txt").write_text("ignored")
    result = await svc.refresh(ns, str(tmp_path))
    assert (result.changed_files, result.removed_files) == ([".clinerules/01-core.md"], [".clinerules"])
    assert (await svc.get(ns, str(tmp_path), ".clinerules/01-core.md")).source == ".clinerules"


async def test_a_root_file_named_like_a_bank_file_is_shadowed(store: Store, root: Path) -> None:
    """A Kilo bank file AGENTS.md and a root AGENTS.md: the first source owns the name (index and
    get agree), the root one is skipped saying it is shadowed."""
    (root / DIRECTORY / "AGENTS.md").write_text("from the bank")
    (root / "AGENTS.md").write_text("from the root")
    svc, ns = make(store), fresh_namespace()
    index = await svc.index(ns, str(root))
    assert index.sources["AGENTS.md"] == DIRECTORY and index.skipped == ["AGENTS.md (AGENTS.md)"]
    await store.delete([ns.key(memory_bank_key("AGENTS.md"))])
    assert (await svc.get(ns, str(root), "AGENTS.md")).content == "from the bank"


@pytest.mark.parametrize("kind", ["file", "folder", "glob"])
async def test_each_source_kind_is_confined(store: Store, tmp_path: Path, kind: str) -> None:
    """For a single-file source, a folder source and a '<folder>/*.<ext>' source alike: a symlink
    out of the project, a FIFO and a file above max_file_bytes are skipped, never cached, and get
    refuses them without their content; a source folder symlinked outside is skipped, not fatal."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "secret.md").write_text("SECRET")
    (outside / "secret.mdc").write_text("SECRET")
    where = {"file": project, "folder": project / "memory-bank", "glob": project / ".cursor" / "rules"}[kind]
    where.mkdir(parents=True, exist_ok=True)
    suffix = ".mdc" if kind == "glob" else ".md"
    names = {"file": ["AGENTS.md", "CLAUDE.md", ".clinerules"]}.get(kind) or [
        f"leak{suffix}",
        f"pipe{suffix}",
        f"huge{suffix}",
    ]
    prefix = "" if kind == "file" else f"{where.relative_to(project)}/"
    (where / names[0]).symlink_to(outside / f"secret{suffix}")
    os.mkfifo(where / names[1])
    (where / names[2]).write_text("x" * 500)
    svc, ns = make(store, max_file_bytes=200), fresh_namespace()
    result = await svc.refresh(ns, str(project))
    assert (result.files, result.skipped) == (0, 3)
    keys, _ = await store.scan(ns.pattern("*"), 100)
    assert keys == [ns.key(MEMORY_BANK_INDEX)]  # no file entry
    for name in names:
        with pytest.raises((InvalidArgumentError, LimitExceededError, FileRefusedError)) as refused:
            await svc.get(ns, str(project), prefix + name)
        assert "SECRET" not in str(refused.value)
    # A whole source folder that leaves the project is skipped, and the refresh goes on.
    if kind == "folder":
        (project / "memory-bank").rename(project / "gone")
    (project / "memory-bank").symlink_to(outside)
    again = await svc.refresh(ns, str(project))
    assert "memory-bank" in (await index_of(store, ns))["skipped"] and again.files == 0
