"""The session service against real servers (Valkey and, where it answers, Redis)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

from coordinatord.errors import (
    ArchiveError,
    ConflictError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    OlderStateError,
)
from coordinatord.keyspace import SESSIONS_INDEX, Namespace, session_history_key, session_key
from coordinatord.services import archive as archive_module
from coordinatord.services import sessions as sessions_module
from coordinatord.services.archive import FORMAT
from coordinatord.services.session_rules import Role
from coordinatord.services.sessions import SessionService
from coordinatord.services.shared import iso_timestamp
from coordinatord.settings import SessionSettings
from coordinatord.store import Store
from tests.support import FakeClock, fresh_namespace

pytestmark = pytest.mark.anyio

START = 1_770_955_200.0  # 2026-02-13T04:00:00Z


AWKWARD: dict[str, Any] = {
    "empty_list": [],
    "empty_object": {},
    "nested": {"a": [1, [], {}], "b": None, "c": [[], [{}]]},
    "unicode": 'naïve ü 日本語 🚀 \u2028 "quoted" back\\slash /slash',
    "big": 2**64 + 1,
    "neg": -(2**70),
    "float": 0.1,
    "max_safe_plus": 9007199254740993,
}


def make(store: Store, clock: FakeClock | None = None, **settings: Any) -> SessionService:
    return SessionService(store, SessionSettings(**settings), clock or FakeClock())


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


async def raw_doc(store: Store, ns: Namespace, session_id: str) -> dict[str, Any]:
    text = await store.get(ns.key(session_key(session_id)))
    assert text is not None
    value: dict[str, Any] = json.loads(text)
    return value


# --- save / load -----------------------------------------------------------------------------


async def test_save_merges_removes_and_counts_versions(store: Store) -> None:
    """save creates then merges top-level fields, null removes one, and each save adds a version."""
    svc, ns = make(store), fresh_namespace()
    first = await svc.save(ns, "s1", {"lastTask": "docs", "step": 1, "pending": ["a", "b"]}, agent="kilo")
    assert (first.session_id, first.version, first.expires_in) == ("s1", 1, 86_400)
    second = await svc.save(ns, "s1", {"step": 2, "pending": None, "summary": "half"}, agent="cline")
    assert second.version == 2
    loaded = await svc.load(ns, "s1")
    assert loaded.found and loaded.version == 2 and loaded.history_length == 0
    assert loaded.context == {"lastTask": "docs", "step": 2, "summary": "half"}
    assert 86_390 <= loaded.expires_in <= 86_400
    doc = await raw_doc(store, ns, "s1")  # what redis_get("agent:context:s1") shows
    assert doc["sessionId"] == "s1" and doc["version"] == 2 and doc["context"] == loaded.context
    assert (doc["createdBy"], doc["lastAgent"]) == ("kilo", "cline")
    assert doc["createdAt"] == doc["updatedAt"] == "2026-02-13T04:00:00.000Z"


async def test_awkward_json_survives_a_round_trip(store: Store) -> None:
    """Nested and empty arrays/objects, unicode and big integers come back exactly."""
    svc, ns = make(store), fresh_namespace()
    await svc.save(ns, "s1", AWKWARD)
    await svc.save(ns, "s1", {"other": 1})
    loaded = await svc.load(ns, "s1")
    assert loaded.context == {**AWKWARD, "other": 1}
    assert loaded.context["big"] == 2**64 + 1 and loaded.context["empty_list"] == []


async def test_unknown_session_loads_as_not_found(store: Store) -> None:
    """load of an unknown id is found:false with an empty context, not an error."""
    loaded = await make(store).load(fresh_namespace(), "nope")
    assert loaded.model_dump() == {
        "session_id": "nope", "found": False, "context": {},
        "version": 0, "history_length": 0, "expires_in": 0,
    }  # fmt: skip


async def test_unknown_session_elsewhere_is_not_found(store: Store, tmp_path: Path) -> None:
    """history, end and restore of an unknown id raise NotFoundError naming it."""
    svc, ns = make(store), fresh_namespace()
    with pytest.raises(NotFoundError, match="'nope' not found"):
        await svc.history(ns, "nope")
    with pytest.raises(NotFoundError, match="'nope' not found"):
        await svc.end(ns, "nope", str(tmp_path))
    with pytest.raises(NotFoundError, match=r"no session archive at .*nope\.json"):
        await svc.restore(ns, "nope", str(tmp_path))


async def test_seed_style_document_is_adopted(store: Store) -> None:
    """A plain object written with redis_set loads at version 0; the next save converts it."""
    svc, ns = make(store), fresh_namespace()
    await store.set(ns.key(session_key("s1")), '{"sessionId":"s1","lastTask":"x"}', 100)
    loaded = await svc.load(ns, "s1")
    assert loaded.found and loaded.version == 0 and loaded.context == {"sessionId": "s1", "lastTask": "x"}
    saved = await svc.save(ns, "s1", {"step": 1})
    assert saved.version == 1
    assert (await raw_doc(store, ns, "s1"))["context"] == {"sessionId": "s1", "lastTask": "x", "step": 1}


async def test_non_object_document_is_refused(store: Store) -> None:
    """A value under agent:context:<id> that is not a JSON object is refused and left alone."""
    svc, ns = make(store), fresh_namespace()
    await store.set(ns.key(session_key("s1")), "plain text", 100)
    with pytest.raises(ConflictError, match="not a JSON object"):
        await svc.save(ns, "s1", {"a": 1})
    assert await store.get(ns.key(session_key("s1"))) == "plain text"


async def test_concurrent_saves_lose_no_field(store: Store) -> None:
    """8 writers saving different fields at once: every field lands, one version per save."""
    svc, ns = make(store), fresh_namespace()

    async def writer(client: int) -> None:
        for step in range(10):
            await svc.save(ns, "shared", {f"client{client}": step})

    async with anyio.create_task_group() as tg:
        for client in range(8):
            tg.start_soon(writer, client)
    loaded = await svc.load(ns, "shared")
    assert loaded.context == {f"client{c}": 9 for c in range(8)}
    assert loaded.version == 80


# --- TTLs ------------------------------------------------------------------------------------


async def test_ttl_is_the_sessions_own_and_every_write_refreshes_it(store: Store) -> None:
    """A ttl given to save is kept; saves and appends refresh document, history and index."""
    svc, ns = make(store), fresh_namespace()
    doc_key, hist_key = ns.key(session_key("s1")), ns.key(session_history_key("s1"))
    assert (await svc.save(ns, "s1", {"a": 1}, ttl_s=500)).expires_in == 500
    await svc.append(ns, "s1", "user", "hi")
    for key in (doc_key, hist_key, ns.key(SESSIONS_INDEX)):
        assert 490 <= await store.ttl(key) <= 500
    await store.expire(doc_key, 10)
    await store.expire(hist_key, 10)
    assert (await svc.append(ns, "s1", "assistant", "hello")).expires_in == 500
    assert 490 <= await store.ttl(doc_key) <= 500 and 490 <= await store.ttl(hist_key) <= 500
    await store.expire(doc_key, 10)
    await store.expire(hist_key, 10)
    assert (await svc.save(ns, "s1", {"b": 2})).expires_in == 500  # no ttl: the session's own
    assert 490 <= await store.ttl(hist_key) <= 500
    await svc.save(ns, "s1", {}, ttl_s=7200)
    assert 7190 <= await store.ttl(hist_key) <= 7200
    assert await store.ttl(ns.key(SESSIONS_INDEX)) >= 7190


async def test_default_ttl_comes_from_settings(store: Store) -> None:
    """Without a ttl, a session lives sessions.ttl_s, whether created by save or by append."""
    svc, ns = make(store, ttl_s=3600), fresh_namespace()
    assert (await svc.save(ns, "a", {})).expires_in == 3600
    assert (await svc.append(ns, "b", "user", "x")).expires_in == 3600
    assert 3590 <= await store.ttl(ns.key(session_key("b"))) <= 3600


async def test_bad_ttls_are_refused_before_any_write(store: Store) -> None:
    """ttl must be at most the ceiling; nothing is written otherwise (at least 1 is the tool's
    argument model's, see tests/unit/test_tool_limits.py)."""
    svc, ns = make(store), fresh_namespace()
    with pytest.raises(LimitExceededError, match="'ttl'"):
        await svc.save(ns, "s1", {"a": 1}, ttl_s=10**9)
    assert not (await svc.load(ns, "s1")).found


async def test_the_ttl_ceiling_is_sessions_max_ttl_s(store: Store, tmp_path: Path) -> None:
    """The default ceiling is 30 days; a configured one is enforced on save, named in the refusal,
    and caps the TTL an archived session comes back with."""
    ns = fresh_namespace()
    default = make(store)
    assert (await default.save(ns, "month", {}, ttl_s=30 * 86_400)).expires_in == 30 * 86_400
    with pytest.raises(LimitExceededError, match=r"the limit is sessions\.max_ttl_s = 2592000"):
        await default.save(ns, "month", {}, ttl_s=30 * 86_400 + 1)

    svc = make(store, ttl_s=600, max_ttl_s=3600)
    assert (await svc.save(ns, "hour", {}, ttl_s=3600)).expires_in == 3600
    with pytest.raises(LimitExceededError) as caught:
        await svc.save(ns, "hour", {"a": 1}, ttl_s=3601)
    assert str(caught.value) == "argument 'ttl' is 3601 s; the limit is sessions.max_ttl_s = 3600"
    assert (await svc.load(ns, "hour")).context == {}

    await default.save(ns, "long", {}, ttl_s=7200)
    await default.end(ns, "long", str(tmp_path))
    assert (await svc.restore(ns, "long", str(tmp_path))).expires_in == 3600


# --- append / history ------------------------------------------------------------------------


async def test_append_creates_the_session_and_history_reads_oldest_first(store: Store) -> None:
    """append creates an absent session; history returns the last turns oldest first, stamped."""
    clock = FakeClock()
    svc, ns = make(store, clock), fresh_namespace()
    roles: list[Role] = ["user", "assistant", "tool", "system"]
    for index, role in enumerate(roles):
        clock.now = START + index
        reply = await svc.append(ns, "s1", role, f"turn {index}", agent="kilo")
        assert reply.history_length == index + 1
    loaded = await svc.load(ns, "s1")
    assert loaded.found and loaded.version == 1 and loaded.context == {} and loaded.history_length == 4
    turns = (await svc.history(ns, "s1", last=2)).turns
    assert [(t.role, t.message, t.ts, t.agent) for t in turns] == [
        ("tool", "turn 2", iso_timestamp(START + 2), "kilo"),
        ("system", "turn 3", iso_timestamp(START + 3), "kilo"),
    ]
    assert len((await svc.history(ns, "s1")).turns) == 4
    assert (await svc.load(ns, "s1")).version == 1  # appends never rewrite the document


async def test_eight_clients_appending_concurrently_keep_every_turn_in_order(store: Store) -> None:
    """8 clients appending at once: every turn is present and each client's turns are in order."""
    svc, ns = make(store), fresh_namespace()
    per_client = 25

    async def client(number: int) -> None:
        for index in range(per_client):
            await svc.append(ns, "busy", "assistant", f"{number}:{index}", agent=f"agent{number}")

    async with anyio.create_task_group() as tg:
        for number in range(8):
            tg.start_soon(client, number)
    turns = (await svc.history(ns, "busy", last=1000)).turns
    assert len(turns) == 8 * per_client
    for number in range(8):
        mine = [int(t.message.split(":")[1]) for t in turns if t.message.startswith(f"{number}:")]
        assert mine == list(range(per_client))
        assert {t.agent for t in turns if t.message.startswith(f"{number}:")} == {f"agent{number}"}


async def test_append_past_max_turns_refuses_and_says_to_end_the_session(store: Store) -> None:
    """Past sessions.max_turns append refuses, pointing at session_end, and drops nothing."""
    svc, ns = make(store, max_turns=3), fresh_namespace()
    for index in range(3):
        await svc.append(ns, "s1", "user", f"m{index}")
    with pytest.raises(LimitExceededError, match=r"sessions\.max_turns = 3.*session_end"):
        await svc.append(ns, "s1", "user", "one too many")
    assert [t.message for t in (await svc.history(ns, "s1")).turns] == ["m0", "m1", "m2"]


async def test_size_limits_are_enforced(store: Store) -> None:
    """Messages above max_message_bytes and contexts above max_context_bytes are refused."""
    svc, ns = make(store, max_message_bytes=16, max_context_bytes=64), fresh_namespace()
    with pytest.raises(LimitExceededError, match=r"sessions\.max_message_bytes = 16"):
        await svc.append(ns, "s1", "user", "ü" * 9)
    await svc.save(ns, "s1", {"a": "x" * 30})
    with pytest.raises(LimitExceededError, match=r"sessions\.max_context_bytes = 64"):
        await svc.save(ns, "s1", {"b": "y" * 30})
    assert (await svc.load(ns, "s1")).context == {"a": "x" * 30}


async def test_bad_arguments_are_refused(store: Store) -> None:
    """A bad id is refused with the argument named (role and last >= 1 are the tools' argument
    models', see tests/unit/test_tool_limits.py)."""
    svc, ns = make(store), fresh_namespace()
    with pytest.raises(InvalidArgumentError, match="'session_id'"):
        await svc.save(ns, "a:b", {})


# --- list ------------------------------------------------------------------------------------


async def test_list_orders_by_activity_and_drops_expired_sessions(store: Store) -> None:
    """session_list shows live sessions, most recent first, and lazily drops ended ones from the index."""
    clock = FakeClock()
    svc, ns = make(store, clock), fresh_namespace()
    await svc.save(ns, "old", {"a": 1})
    clock.now += 10
    await svc.append(ns, "new", "user", "x")
    clock.now += 10
    await svc.save(ns, "gone", {})
    await store.delete([ns.key(session_key("gone"))])  # as if it expired
    listed = await svc.list_sessions(ns)
    assert not listed.truncated
    assert [(s.session_id, s.version, s.history_length) for s in listed.sessions] == [
        ("new", 1, 1),
        ("old", 1, 0),
    ]
    assert listed.sessions[0].last_activity == iso_timestamp(START + 10)
    assert all(86_390 <= s.expires_in <= 86_400 for s in listed.sessions)
    assert await store.execute("ZSCORE", ns.key(SESSIONS_INDEX), "gone") is None
    assert (await svc.list_sessions(fresh_namespace())).sessions == []


# --- end / restore ---------------------------------------------------------------------------


async def test_end_then_restore_round_trips_exactly(store: Store, tmp_path: Path) -> None:
    """An ended session is archived to the project, removed, and restored with the same context,
    version, history and TTL.
    """
    clock = FakeClock()
    svc, ns = make(store, clock), fresh_namespace()
    await svc.save(ns, "s1", AWKWARD, ttl_s=900, agent="kilo")
    await svc.save(ns, "s1", {"step": 3}, agent="cline")
    for index in range(5):
        clock.now += 1
        await svc.append(ns, "s1", "user" if index % 2 else "assistant", f"msg {index} ü\n", agent="kilo")
    before = await svc.load(ns, "s1")
    history_before = await svc.history(ns, "s1", last=100)
    doc_before = await store.get(ns.key(session_key("s1")))

    ended = await svc.end(ns, "s1", str(tmp_path), agent="kilo")
    path = tmp_path / ".kilocode" / "sessions" / "s1.json"
    assert ended.archived_to == str(path.resolve()) and (ended.version, ended.history_length) == (2, 5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = read_json(path)
    assert data["format"] == FORMAT and data["session_id"] == "s1" and data["project_id"] == ns.project_id
    assert data["version"] == 2 and data["ttl"] == 900 and data["context"] == before.context
    assert [turn["message"] for turn in data["history"]] == [f"msg {i} ü\n" for i in range(5)]
    assert not (await svc.load(ns, "s1")).found
    assert await store.exists([ns.key(session_history_key("s1"))]) == 0
    assert await store.execute("ZSCORE", ns.key(SESSIONS_INDEX), "s1") is None

    restored = await svc.restore(ns, "s1", str(tmp_path))
    assert (restored.version, restored.history_length, restored.expires_in) == (2, 5, 900)
    assert restored.restored_from == str(path.resolve())
    after = await svc.load(ns, "s1")
    assert after.context == before.context and after.version == before.version == 2
    assert after.history_length == 5 and 890 <= after.expires_in <= 900
    assert await svc.history(ns, "s1", last=100) == history_before
    assert await store.get(ns.key(session_key("s1"))) == doc_before  # byte for byte
    assert [s.session_id for s in (await svc.list_sessions(ns)).sessions] == ["s1"]


async def test_failing_archive_write_deletes_nothing(store: Store, tmp_path: Path) -> None:
    """When the archive directory cannot be created, session_end fails naming it and keeps the session."""
    svc, ns = make(store), fresh_namespace()
    await svc.save(ns, "s1", {"a": 1})
    await svc.append(ns, "s1", "user", "keep me")
    (tmp_path / ".kilocode").write_text("a regular file where the directory should be")
    with pytest.raises(ArchiveError, match=r"\.kilocode/sessions"):
        await svc.end(ns, "s1", str(tmp_path))
    loaded = await svc.load(ns, "s1")
    assert loaded.found and loaded.version == 1 and loaded.history_length == 1


async def test_failing_rename_deletes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the final rename fails (disk full), session_end fails and the session stays whole."""
    svc, ns = make(store), fresh_namespace()
    await svc.save(ns, "s1", {"a": 1})

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("coordinatord.services.archive.os.replace", failing_replace)
    with pytest.raises(ArchiveError, match="No space left on device"):
        await svc.end(ns, "s1", str(tmp_path))
    assert (await svc.load(ns, "s1")).found
    # No archive and no temp file; only the .gitignore the new folder got.
    assert [p.name for p in (tmp_path / ".kilocode" / "sessions").iterdir()] == [".gitignore"]


async def test_end_without_project_root_is_refused(store: Store) -> None:
    """An anonymous connection cannot end a session: clear error, nothing deleted."""
    svc, ns = make(store), fresh_namespace()
    await svc.save(ns, "s1", {"a": 1})
    with pytest.raises(InvalidArgumentError, match="no project root"):
        await svc.end(ns, "s1", None)
    assert (await svc.load(ns, "s1")).found


async def test_end_rearchives_when_the_session_changes_meanwhile(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn appended between the archive write and the delete is not lost: the session is
    archived again with it before it is deleted.
    """
    svc, ns = make(store), fresh_namespace()
    await svc.append(ns, "s1", "user", "first")
    real_write = archive_module.write_archive
    calls: list[int] = []

    def write_then_race(path: Path, data: dict[str, Any], **options: Any) -> None:
        real_write(path, data, **options)
        calls.append(len(data["history"]))
        if len(calls) == 1:  # another agent appends right after our first archive
            anyio.from_thread.run(svc.append, ns, "s1", "assistant", "late")

    monkeypatch.setattr(sessions_module, "write_archive", write_then_race)
    ended = await svc.end(ns, "s1", str(tmp_path))
    assert calls == [1, 2] and ended.history_length == 2
    archived = read_json(ended.archived_to)
    assert [t["message"] for t in archived["history"]] == ["first", "late"]
    assert not (await svc.load(ns, "s1")).found


async def test_restore_refuses_a_live_session_unless_forced(store: Store, tmp_path: Path) -> None:
    """restore will not overwrite a live session; with force it replaces context and history."""
    svc, ns = make(store), fresh_namespace()
    await svc.save(ns, "s1", {"from": "archive"})
    await svc.append(ns, "s1", "user", "archived turn")
    await svc.end(ns, "s1", str(tmp_path))
    await svc.save(ns, "s1", {"from": "live"})
    await svc.append(ns, "s1", "user", "live 1")
    await svc.append(ns, "s1", "user", "live 2")
    with pytest.raises(ConflictError, match="force=true"):
        await svc.restore(ns, "s1", str(tmp_path))
    assert (await svc.load(ns, "s1")).context == {"from": "live"}
    restored = await svc.restore(ns, "s1", str(tmp_path), force=True)
    assert restored.history_length == 1
    assert (await svc.load(ns, "s1")).context == {"from": "archive"}
    assert [t.message for t in (await svc.history(ns, "s1")).turns] == ["archived turn"]


async def test_end_never_replaces_a_later_archive(store: Store, tmp_path: Path) -> None:
    """Ending a reused id whose archive holds a later state is refused, and nothing is deleted."""
    svc, ns = make(store), fresh_namespace()
    for _ in range(3):
        await svc.save(ns, "s1", {"round": "one"})
    await svc.end(ns, "s1", str(tmp_path))
    await svc.save(ns, "s1", {"round": "two"})  # a new session under the same id: version 1
    with pytest.raises(OlderStateError, match="version 3"):
        await svc.end(ns, "s1", str(tmp_path))
    assert (await svc.load(ns, "s1")).context == {"round": "two"}
    archived = read_json(tmp_path / ".kilocode" / "sessions" / "s1.json")
    assert archived["context"] == {"round": "one"}


async def test_restore_checks_the_archive(store: Store, tmp_path: Path) -> None:
    """An archive that is not valid, or holds another session, is refused with the path named."""
    svc, ns = make(store), fresh_namespace()
    directory = tmp_path / ".kilocode" / "sessions"
    directory.mkdir(parents=True)
    (directory / "s1.json").write_text('{"format": "something-else"}')
    with pytest.raises(ArchiveError, match=r"s1\.json has format"):
        await svc.restore(ns, "s1", str(tmp_path))
    await svc.save(ns, "s2", {"a": 1})
    await svc.end(ns, "s2", str(tmp_path))
    (directory / "s2.json").rename(directory / "s3.json")
    with pytest.raises(ArchiveError, match="holds session 's2', not 's3'"):
        await svc.restore(ns, "s3", str(tmp_path))
    assert not (await svc.load(ns, "s3")).found


async def test_session_end_follows_the_gitignore_setting(store: Store, tmp_path: Path) -> None:
    """session_end creates the archive folder with its .gitignore, or without it when
    sessions.archive_gitignore is off (the same rule as the archiver's)."""
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    off.mkdir()
    for root, service in ((on, make(store)), (off, make(store, archive_gitignore=False))):
        ns = fresh_namespace()
        await service.save(ns, "s1", {"a": 1})
        await service.end(ns, "s1", str(root))
    assert (on / ".kilocode" / "sessions" / ".gitignore").read_text().endswith("*\n")
    assert [p.name for p in (off / ".kilocode" / "sessions").iterdir()] == ["s1.json"]
