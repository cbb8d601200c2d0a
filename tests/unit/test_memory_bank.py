"""Memory-bank pure logic and folder confinement (no server: a temp folder only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from coordinatord.errors import FileRefusedError, InvalidArgumentError, LimitExceededError, NotFoundError
from coordinatord.services.memory_bank import (
    HEAD_BYTES,
    BankFile,
    Sources,
    build_index,
    cached_sha,
    check_file_name,
    encode_entry,
    file_from_uri,
    file_uri,
    memory_bank_folder,
    parse_entry,
    parse_index,
    read_bank_file,
    same_index,
    scan_folder,
    sha256_hex,
)
from coordinatord.settings import MEMORY_BANK_SOURCES, MemoryBankSettings

DIRECTORY = ".kilocode/rules/memory-bank"


def bank(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "project"
    folder = root / DIRECTORY
    folder.mkdir(parents=True)
    (folder / "brief.md").write_text("# Brief\nship it\n")
    (folder / "context.md").write_text("# Context\n")
    return root, folder.resolve()


@pytest.mark.parametrize(
    "name", ["brief.md", "tech.md", "memory-bank-instructions.md", "servers.md", "v1.2_notes.md", "A.md"]
)
def test_plain_md_names_are_accepted(name: str) -> None:
    """Plain .md file names of letters, digits, '.', '_' and '-' are memory-bank files."""
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../brief.md",
        "..md",
        "a..b.md",
        "/etc/passwd",
        "/abs/brief.md",
        "sub/brief.md",
        "sub\\brief.md",
        "brief.md\x00.txt",
        "brief.txt",
        "brief",
        ".hidden.md",
        "",
        ".md",
        "with space.md",
        "brief.md/",
        "brief.MD",
    ],
)
def test_paths_and_odd_names_are_refused(name: str) -> None:
    """Anything but a plain *.md name (a path, '..', NUL, another suffix) is refused, naming the argument."""
    with pytest.raises(InvalidArgumentError, match="argument 'file'"):
        check_file_name(name)


def test_resource_uris_round_trip_and_refuse_escapes() -> None:
    """memory-bank://<file> names the file; a URI with a path or another scheme is refused."""
    assert file_uri("brief.md") == "memory-bank://brief.md"
    assert file_from_uri("memory-bank://brief.md") == "brief.md"
    for uri in (
        "memory-bank://../x.md",
        "memory-bank:///etc/passwd",
        "file:///etc/passwd",
        "memory-bank://a/b.md",
    ):
        with pytest.raises(InvalidArgumentError):
            file_from_uri(uri)


def test_cache_entries_carry_their_hash_in_the_first_bytes() -> None:
    """An entry starts with its sha256, so a GETRANGE of HEAD_BYTES reads it; a foreign value has none."""
    data = "# Brief\nnaïve 🚀\n".encode()
    entry = encode_entry(BankFile("brief.md", data.decode(), sha256_hex(data), len(data), 1_770_955_200.0))
    assert cached_sha(entry[:HEAD_BYTES]) == sha256_hex(data)
    decoded = json.loads(entry)
    assert decoded["file"] == "brief.md" and decoded["content"] == data.decode()
    assert decoded["mtime"] == "2026-02-13T04:00:00.000Z"
    parsed = parse_entry(entry, "brief.md")
    assert parsed is not None and parsed.content == data.decode() and parsed.cached
    assert cached_sha(None) is None and cached_sha('{"other":1}') is None
    assert parse_entry(entry, "context.md") is None and parse_entry("not json", "brief.md") is None


def test_index_has_the_seed_shape_and_compares_without_its_timestamp() -> None:
    """The index lists files (sorted) with hashes and sizes; two indexes of the same files are the same."""
    files = [BankFile("tech.md", "t", "b" * 64, 1, 0.0), BankFile("brief.md", "x", "a" * 64, 1, 0.0)]
    first = build_index(files, ["huge.md"], DIRECTORY, "2026-02-13T04:00:00.000Z")
    assert first["files"] == ["brief.md", "tech.md"]
    assert first["hashes"] == {"brief.md": "a" * 64, "tech.md": "b" * 64}
    assert first["lastUpdated"] == "2026-02-13T04:00:00.000Z" and first["skipped"] == ["huge.md"]
    later = build_index(list(reversed(files)), ["huge.md"], DIRECTORY, "2026-02-13T05:00:00.000Z")
    assert same_index(first, later)
    changed = build_index([BankFile("brief.md", "y", "c" * 64, 1, 0.0)], [], DIRECTORY, "t")
    assert not same_index(first, changed) and not same_index(None, first)
    assert parse_index(json.dumps(first)) == first
    assert parse_index('{"files": "brief.md"}') is None and parse_index(None) is None


def test_files_are_read_with_their_hash(tmp_path: Path) -> None:
    """A file of the folder is read whole, with the SHA-256 of its bytes."""
    _, folder = bank(tmp_path)
    read = read_bank_file(folder, "brief.md", 1024)
    assert read.content == "# Brief\nship it\n"
    assert read.sha256 == sha256_hex(b"# Brief\nship it\n") and read.size == 16


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    """A name that is not in the folder is a not-found error naming it."""
    _, folder = bank(tmp_path)
    with pytest.raises(NotFoundError, match=r"nope\.md"):
        read_bank_file(folder, "nope.md", 1024)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    """A .md symlink pointing outside the folder (in the project or elsewhere) is never followed."""
    root, folder = bank(tmp_path)
    (root / "secret.md").write_text("outside the folder")
    (folder / "escape.md").symlink_to(root / "secret.md")
    (folder / "far.md").symlink_to("/etc/hostname")
    for name in ("escape.md", "far.md"):
        with pytest.raises(InvalidArgumentError, match="outside the memory-bank folder"):
            read_bank_file(folder, name, 1024)


def test_a_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    """A symlink to another file of the same folder reads that file."""
    _, folder = bank(tmp_path)
    (folder / "alias.md").symlink_to("brief.md")
    assert read_bank_file(folder, "alias.md", 1024).content == "# Brief\nship it\n"


def test_a_fifo_or_directory_named_md_is_refused_without_blocking(tmp_path: Path) -> None:
    """Only regular files are read: a FIFO (which would block a reader) or a folder is refused."""
    _, folder = bank(tmp_path)
    os.mkfifo(folder / "pipe.md")
    (folder / "dir.md").mkdir()
    for name, kind in (("pipe.md", "a FIFO"), ("dir.md", "a directory")):
        with pytest.raises(FileRefusedError, match=f"{name} is {kind}.*only regular files are read"):
            read_bank_file(folder, name, 1024)


def test_a_file_above_the_size_limit_is_refused(tmp_path: Path) -> None:
    """A file larger than memory_bank.max_file_bytes is refused with the limit named."""
    _, folder = bank(tmp_path)
    with pytest.raises(LimitExceededError, match=r"memory_bank\.max_file_bytes = 8"):
        read_bank_file(folder, "brief.md", 8)


def test_the_folder_must_stay_inside_the_project(tmp_path: Path) -> None:
    """A memory_bank.directory that leaves the project root (by '..' or a symlink) is refused;
    an anonymous connection has no folder at all."""
    root, _ = bank(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "linked").symlink_to(outside)
    for directory in ("../elsewhere", "linked", "/tmp"):
        with pytest.raises(InvalidArgumentError, match="outside the project root"):
            memory_bank_folder(str(root), directory)
    with pytest.raises(InvalidArgumentError, match="anonymous"):
        memory_bank_folder(None, DIRECTORY)


def test_scan_caches_md_files_and_lists_what_it_skips(tmp_path: Path) -> None:
    """A scan reads every plain *.md file; escapes, odd names and oversized files are skipped with
    a reason; other files are ignored; a missing folder is reported as absent."""
    root, folder = bank(tmp_path)
    (root / "secret.md").write_text("no")
    (folder / "escape.md").symlink_to(root / "secret.md")
    (folder / "odd name.md").write_text("x")
    (folder / "big.md").write_text("x" * 100)
    (folder / "notes.txt").write_text("not markdown")
    scan = scan_folder(folder, 50, 1000)
    assert scan.exists
    assert [f.name for f in scan.files] == ["brief.md", "context.md"]
    assert sorted(scan.skipped) == ["big.md", "escape.md", "odd name.md"]
    assert not scan_folder(folder / "missing", 50, 1000).exists


def test_scan_caches_at_most_max_files_in_name_order(tmp_path: Path) -> None:
    """Past memory_bank.max_files cached files the rest are skipped, naming the setting; files
    skipped for another reason do not use up the allowance."""
    _, folder = bank(tmp_path)
    (folder / "a-big.md").write_text("x" * 100)
    (folder / "tech.md").write_text("# Tech")
    scan = scan_folder(folder, 50, 2)
    assert [f.name for f in scan.files] == ["brief.md", "context.md"]
    assert scan.skipped["tech.md"] == "more than memory_bank.max_files = 2 files in the folder"
    assert set(scan.skipped) == {"a-big.md", "tech.md"}


# --- Sources ------------------------------------------------------------------------------------


def test_the_default_sources_and_the_directory_alias() -> None:
    """By default every editor's place is a source, Kilo's bank first; memory_bank.directory (the
    old setting) replaces the first source and is not listed twice."""
    assert MemoryBankSettings().sources == MEMORY_BANK_SOURCES and MEMORY_BANK_SOURCES[0] == DIRECTORY
    moved = MemoryBankSettings(directory="docs/bank")
    assert moved.sources == ("docs/bank", *MEMORY_BANK_SOURCES[1:]) and moved.first == "docs/bank"
    assert MemoryBankSettings(directory="memory-bank").sources[:2] == ("memory-bank", "AGENTS.md")
    assert MemoryBankSettings(sources=("AGENTS.md",), directory="kb").sources == ("kb",)


@pytest.mark.parametrize(
    "source", ["../up", "/abs", "a/../b", "a//b", "", "index", "*.md", "a/*", "x\\y", "a/*.m-d"]
)
def test_sources_that_could_leave_the_project_are_refused(source: str) -> None:
    """A source must be a plain relative path (optionally ending '/*.<ext>'): no '..', no absolute
    path, no other wildcard."""
    with pytest.raises(ValidationError, match="memory-bank source"):
        MemoryBankSettings(sources=(source,))


def test_names_come_from_the_sources_and_nothing_else() -> None:
    """Kilo's files keep bare names, other sources' files are their path from the root; a name no
    source gives (a subfolder, another suffix, '..') is refused, also as a resource URI."""
    sources = Sources(MEMORY_BANK_SOURCES)
    for name in ("brief.md", "AGENTS.md", "CLAUDE.md", ".clinerules", ".clinerules/01-core.md",
                 "memory-bank/activeContext.md", ".cursor/rules/python.mdc"):  # fmt: skip
        assert sources.check_name(name) == name
        assert file_from_uri(file_uri(name), sources) == name
    for name in ("memory-bank/sub/x.md", ".cursor/rules/x.md", "memory-bank/../AGENTS.md", "README.md/x.md",
                 "/AGENTS.md", ".clinerules/.hidden.md", "memory-bank/.md"):  # fmt: skip
        with pytest.raises(InvalidArgumentError, match="argument 'file'"):
            sources.check_name(name)
    [(source, folder, entry)] = sources.candidates("memory-bank/activeContext.md")
    assert (source.spec, folder, entry) == ("memory-bank", "memory-bank", "activeContext.md")
    assert [(s.spec, f, e) for s, f, e in sources.candidates("AGENTS.md")] == [
        (DIRECTORY, DIRECTORY, "AGENTS.md"),
        ("AGENTS.md", ".", "AGENTS.md"),
    ]


def test_an_entry_from_before_sources_is_of_the_first_source() -> None:
    """A cache entry written before entries carried a source still parses, as the first source's;
    an index without sources does not (the next refresh rewrites it)."""
    old = '{"sha256":"' + "a" * 64 + '","file":"brief.md","size":1,"mtime":"t","content":"x"}'
    parsed = parse_entry(old, "brief.md")
    assert parsed is not None and parsed.source == DIRECTORY
    index = build_index([], [], DIRECTORY, "t")
    del index["sources"]
    assert parse_index(json.dumps(index)) is None
