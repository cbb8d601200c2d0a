"""Pure session logic and the archive files: merge rule, document layout, archive format and
durability, without a server.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from coordinatord.errors import (
    ArchiveError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OlderStateError,
)
from coordinatord.services.archive import (
    FORMAT,
    GITIGNORE,
    archive_data,
    archive_order,
    archive_path,
    document_from_archive,
    read_archive,
    write_archive,
)
from coordinatord.services.session_rules import (
    SessionDocument,
    dumps,
    encode_turn,
    merge_context,
    next_document,
    turn_record,
)
from coordinatord.services.sessions import _HEAD
from coordinatord.services.shared import iso_timestamp

AWKWARD: dict[str, Any] = {
    "empty_list": [],
    "empty_object": {},
    "nested": {"a": [1, [], {}], "b": None, "c": {"d": [None, True, False]}},
    "unicode": "naïve ü 日本語 🚀 \u2028",
    "big": 2**64 + 1,
    "negative_big": -(2**70),
    "float": 0.1,
    "exp": 1e300,
    "slash": 'a/b\\c"d',
}


def make_archive(version: int = 3, turns: int = 2, **extra: Any) -> dict[str, Any]:
    doc = SessionDocument(
        "s1", version, 600, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z", "a", "b", {"k": 1}
    )
    history = [
        {"role": "user", "message": f"m{i}", "ts": "2026-01-01T00:00:00.000Z", "agent": "a"}
        for i in range(turns)
    ]
    return {**archive_data(doc, history, "proj-1", "2026-01-02T00:00:00.000Z", "a", 86_400), **extra}


# --- merge rule and document ---------------------------------------------------------------


def test_merge_sets_replaces_and_removes_top_level_fields() -> None:
    """Top-level fields are set or replaced, null removes one, and the input is not changed."""
    current = {"task": "a", "step": 1, "keep": [1, 2]}
    merged = merge_context(current, {"step": 2, "task": None, "new": {"x": None}, "absent": None})
    assert merged == {"step": 2, "keep": [1, 2], "new": {"x": None}}
    assert current == {"task": "a", "step": 1, "keep": [1, 2]}


def test_nested_values_are_replaced_whole_not_merged() -> None:
    """A nested object in the patch replaces the stored one; nested nulls stay."""
    assert merge_context({"o": {"a": 1, "b": 2}}, {"o": {"b": None}}) == {"o": {"b": None}}


def test_next_document_creates_then_increments() -> None:
    """A first save creates version 1; later saves add one, keep createdAt/createdBy and the ttl."""
    first = next_document(None, "s1", {"a": 1}, 600, "T1", "alice")
    assert (first.version, first.ttl, first.created_by, first.last_agent) == (1, 600, "alice", "alice")
    second = next_document(first, "s1", {"b": 2}, None, "T2", "bob")
    assert second.version == 2 and second.ttl == 600 and second.context == {"a": 1, "b": 2}
    assert (second.created_at, second.updated_at, second.created_by, second.last_agent) == (
        "T1",
        "T2",
        "alice",
        "bob",
    )
    assert next_document(second, "s1", {}, 60, "T3", None).ttl == 60


def test_document_round_trips_awkward_json_exactly() -> None:
    """Empty arrays and objects, unicode, big integers and floats survive encode and parse."""
    doc = SessionDocument("s1", 7, 900, "T1", "T2", "a", None, AWKWARD)
    text, size = doc.encode(86_400)
    parsed = SessionDocument.parse(text, "s1")
    assert parsed == doc
    assert parsed.context["big"] == 2**64 + 1 and parsed.context["empty_list"] == []
    assert size == len(dumps(AWKWARD).encode("utf-8"))
    assert json.loads(text)["context"] == AWKWARD


def test_document_starts_with_the_fields_the_append_script_reads() -> None:
    """The head pattern (twin of session_append.lua's) finds version and ttl even for a 128-char id."""
    long_id = "s" * 128
    text, _ = SessionDocument(long_id, 10**15, None, None, None, None, None, {"x": "y" * 5000}).encode(86_400)
    match = _HEAD.match(text[:256])
    assert match is not None and match.groups() == (str(10**15), "86400")


def test_lone_surrogates_are_kept_as_escapes() -> None:
    """A lone surrogate cannot be UTF-8; it is written as a JSON escape and read back the same."""
    text = dumps({"s": "a\ud800b"})
    assert text.encode("utf-8") and json.loads(text) == {"s": "a\ud800b"}
    assert json.loads(encode_turn("user", "x\udfff", "T", None))["message"] == "x\udfff"


def test_nan_is_refused() -> None:
    """NaN is not JSON, so a context holding one is refused with a clear error."""
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        dumps({"x": float("nan")})


def test_seed_style_document_reads_as_a_version_zero_context() -> None:
    """A plain object written with redis_set (the seed's way) is a context at version 0."""
    seed = '{"sessionId":"s1","lastTask":"implement","pendingActions":["a"]}'
    doc = SessionDocument.parse(seed, "s1")
    assert doc.version == 0 and doc.context == json.loads(seed) and doc.ttl is None
    assert next_document(doc, "s1", {"x": 1}, None, "T", "a").version == 1


@pytest.mark.parametrize("raw", ["[1,2]", "not json", '"text"', ""])
def test_non_object_document_is_a_conflict_naming_the_key(raw: str) -> None:
    """A value that is not a JSON object under agent:context:<id> is refused, naming the key."""
    with pytest.raises(ConflictError, match="agent:context:s1"):
        SessionDocument.parse(raw, "s1")


def test_iso_timestamp_matches_javascript() -> None:
    """Timestamps look like JavaScript's toISOString(): UTC, milliseconds, Z."""
    assert iso_timestamp(1_770_955_200.1234) == "2026-02-13T04:00:00.123Z"


def test_malformed_turn_is_kept_not_dropped() -> None:
    """A history entry that is not a turn object is kept whole as the message."""
    assert turn_record("garbage") == {"role": "unknown", "message": "garbage", "ts": "", "agent": None}
    good = encode_turn("tool", "ok", "T", "a")
    assert turn_record(good) == {"role": "tool", "message": "ok", "ts": "T", "agent": "a"}


def test_archive_data_round_trips_to_the_document() -> None:
    """The archive holds everything needed to rebuild the document exactly."""
    data = make_archive()
    assert data["format"] == FORMAT and data["session_id"] == "s1" and data["project_id"] == "proj-1"
    doc = document_from_archive(data)
    assert doc == SessionDocument(
        "s1", 3, 600, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z", "a", "b", {"k": 1}
    )


# --- archive paths ---------------------------------------------------------------------------


def test_archive_path_is_inside_the_project(tmp_path: Path) -> None:
    """The archive goes to <root>/<archive_dir>/<id>.json."""
    path = archive_path(str(tmp_path), ".kilocode/sessions", "s-1")
    assert path == tmp_path.resolve() / ".kilocode" / "sessions" / "s-1.json"


def test_archive_path_needs_a_project_root() -> None:
    """An anonymous connection has no project folder: a clear refusal, naming the shim option."""
    with pytest.raises(InvalidArgumentError, match=r"no project root.*--project"):
        archive_path(None, ".kilocode/sessions", "s1")


@pytest.mark.parametrize("archive_dir", ["../elsewhere", "/tmp/abs"])
def test_archive_dir_outside_the_project_is_refused(tmp_path: Path, archive_dir: str) -> None:
    """A configured archive_dir that leaves the project root is refused, naming the setting."""
    with pytest.raises(ArchiveError, match=r"sessions\.archive_dir"):
        archive_path(str(tmp_path), archive_dir, "s1")


def test_archive_dir_symlinked_outside_is_refused(tmp_path: Path) -> None:
    """A symlink inside the project pointing outside it does not let archives escape."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / ".kilocode").symlink_to(outside)
    with pytest.raises(ArchiveError, match="outside the project root"):
        archive_path(str(root), ".kilocode/sessions", "s1")


def test_archive_path_needs_an_existing_project_root(tmp_path: Path) -> None:
    """A project root that is not a directory is refused rather than created."""
    with pytest.raises(ArchiveError, match="is not a directory"):
        archive_path(str(tmp_path / "missing"), ".kilocode/sessions", "s1")
    assert not (tmp_path / "missing").exists()


def test_archive_path_checks_the_id() -> None:
    """Ids that could name another file are refused."""
    with pytest.raises(InvalidArgumentError):
        archive_path("/tmp", ".kilocode/sessions", "../x")


# --- archive files ---------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    """An archive reads back equal to what was written, file 0600, new directory 0700."""
    path = tmp_path / "a" / "sessions" / "s1.json"
    data = make_archive(context=AWKWARD)
    write_archive(path, data)
    assert read_archive(path) == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == [".gitignore", "s1.json"]  # no temp file


def test_a_folder_it_creates_is_ignored_by_git_and_an_existing_one_is_left_alone(tmp_path: Path) -> None:
    """Archives hold conversation text: a new folder gets a .gitignore of '*' before the first
    archive lands in it; a folder the user made (and perhaps tracks) is not touched, and the
    setting turns it off."""
    new = tmp_path / "new" / "sessions" / "s1.json"
    write_archive(new, make_archive())
    assert (new.parent / ".gitignore").read_text() == GITIGNORE
    existing = tmp_path / "mine"
    existing.mkdir()
    write_archive(existing / "s1.json", make_archive())
    assert not (existing / ".gitignore").exists()
    off = tmp_path / "off" / "sessions" / "s1.json"
    write_archive(off, make_archive(), gitignore=False)
    assert [p.name for p in off.parent.iterdir()] == ["s1.json"]


def test_older_state_never_replaces_a_newer_archive(tmp_path: Path) -> None:
    """A lower version, or the same version with fewer turns, is refused and the file is unchanged."""
    path = tmp_path / "s1.json"
    write_archive(path, make_archive(version=5, turns=3))
    before = path.read_bytes()
    for older in (make_archive(version=4, turns=10), make_archive(version=5, turns=2)):
        with pytest.raises(OlderStateError, match=r"version 5, 3 turns"):
            write_archive(path, older)
        assert path.read_bytes() == before
    write_archive(path, make_archive(version=5, turns=3, archived_by="again"))  # same state: replaced
    assert read_archive(path)["archived_by"] == "again"
    write_archive(path, make_archive(version=6, turns=0))
    assert read_archive(path)["version"] == 6


def test_archive_order() -> None:
    """States order by (version, number of turns)."""
    assert archive_order(make_archive(version=2, turns=9)) < archive_order(make_archive(version=3, turns=0))
    assert archive_order({}) == (0, 0)


def test_failed_rename_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename fails, the previous archive is intact and the temp file is removed."""
    path = tmp_path / "s1.json"
    write_archive(path, make_archive(version=1))
    before = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("coordinatord.services.archive.os.replace", failing_replace)
    with pytest.raises(ArchiveError, match=r"cannot write session archive .*s1\.json: No space left"):
        write_archive(path, make_archive(version=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.json"]


def test_failed_rename_with_no_previous_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no previous archive, a failed write leaves no file at all."""

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("coordinatord.services.archive.os.replace", failing_replace)
    with pytest.raises(ArchiveError):
        write_archive(tmp_path / "s1.json", make_archive())
    assert list(tmp_path.iterdir()) == []


def test_directory_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    """When the archive directory cannot be created, the error names it and the reason."""
    (tmp_path / ".kilocode").write_text("a file, not a directory")
    path = tmp_path / ".kilocode" / "sessions" / "s1.json"
    with pytest.raises(ArchiveError, match=r"cannot create the archive directory .*\.kilocode/sessions"):
        write_archive(path, make_archive())


def test_unreadable_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    """A file at the archive path that is not an archive is left alone, with advice."""
    path = tmp_path / "s1.json"
    path.write_text("my notes")
    with pytest.raises(ArchiveError, match="move it away"):
        write_archive(path, make_archive())
    assert path.read_text() == "my notes"


def test_write_refuses_data_without_the_format() -> None:
    """write_archive only writes data in the archive format."""
    with pytest.raises(ValueError, match="format"):
        write_archive(Path("/nonexistent/x.json"), {"version": 1})


def test_read_missing_archive_is_not_found(tmp_path: Path) -> None:
    """Reading an absent archive is a NotFoundError naming the path."""
    with pytest.raises(NotFoundError, match=r"no session archive at .*nope\.json"):
        read_archive(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        ("[]", "not a JSON object"),
        ('{"format": "other/1"}', "expected 'coordinatord.session/1'"),
        ('{"format": "coordinatord.session/2"}', "newer version"),
    ],
)
def test_read_refuses_what_it_cannot_understand(tmp_path: Path, content: str, message: str) -> None:
    """Files that are not archives of this format are refused with the reason."""
    path = tmp_path / "s1.json"
    path.write_text(content)
    with pytest.raises(ArchiveError, match=message):
        read_archive(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("session_id", "", "'session_id'"),
        ("version", -1, "'version'"),
        ("version", True, "'version'"),
        ("context", [], "'context'"),
        ("history", {}, "'history'"),
        ("history", [{"role": "user", "message": 1, "ts": "T"}], r"history\[0\]"),
        ("ttl", 0, "'ttl'"),
    ],
)
def test_read_checks_each_field(tmp_path: Path, field: str, value: Any, message: str) -> None:
    """Each required field is checked and the error names it."""
    path = tmp_path / "s1.json"
    path.write_text(json.dumps({**make_archive(), field: value}))
    with pytest.raises(ArchiveError, match=message):
        read_archive(path)


def test_archive_file_is_readable_json_with_the_documented_fields(tmp_path: Path) -> None:
    """The file is indented UTF-8 JSON carrying the documented top-level fields."""
    path = tmp_path / "s1.json"
    write_archive(path, make_archive())
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "format": "coordinatord.session/1"')
    assert set(json.loads(text)) >= {
        "format", "session_id", "project_id", "archived_at", "version", "createdAt", "updatedAt",
        "context", "history",
    }  # fmt: skip
    assert os.stat(path).st_size == len(text.encode("utf-8"))
