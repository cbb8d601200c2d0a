"""The memory-bank cache against real servers (Valkey and, where it answers, Redis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from coordinatord.errors import InvalidArgumentError, LimitExceededError, NotFoundError
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
