"""File reservations against every backend: conflicts, modes, leases, fencing, the sweep's
release, and the Lua overlap test pinned to the Python one."""

from __future__ import annotations

import itertools
import json

import anyio
import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import AGENTS_GONE, FILE_RESERVATIONS
from coordinatord.pathglob import overlaps
from coordinatord.services.files import FileService
from coordinatord.services.locks import LockService
from coordinatord.services.shared import lua
from coordinatord.settings import FileSettings, LockSettings
from coordinatord.store import Store
from tests.support import fresh_namespace
from tests.unit.test_pathglob import CORPUS_GLOBS

pytestmark = pytest.mark.anyio


def service(store: Store, **settings: int) -> FileService:
    return FileService(store, FileSettings(**settings))


async def test_lua_and_python_agree_on_every_pair_of_the_corpus(store: Store) -> None:
    """globs_overlap in files_common.lua gives pathglob.overlaps' answer for every ordered pair."""
    pairs = list(itertools.product(CORPUS_GLOBS, repeat=2))
    script = store.script(
        lua("files_common")
        + "\nlocal out = {}\nfor i = 1, #ARGV, 2 do"
        + " out[#out + 1] = globs_overlap(ARGV[i], ARGV[i + 1]) and 1 or 0 end"
        + "\nreturn out"
    )
    reply = await script([fresh_namespace().key("probe")], [g for pair in pairs for g in pair])
    lua_answers = {pair: bool(answer) for pair, answer in zip(pairs, reply, strict=True)}
    python_answers = {pair: overlaps(*pair) for pair in pairs}
    assert lua_answers == python_answers
    assert 0 < sum(python_answers.values()) < len(pairs)  # the corpus has both answers


async def test_exclusive_refuses_overlap_and_shared_coexists(store: Store) -> None:
    """Exclusive vs anything overlapping of another agent: refused with the holder; shared with shared:
    both."""
    files, ns = service(store), fresh_namespace()
    held = await files.reserve(ns, "alice", ["src/**"], "exclusive", 60, "refactoring")
    assert held.reserved and held.id and held.fencing and held.expires_in == 60
    refused = await files.reserve(ns, "bob", ["src/app.py", "docs/x.md"], "shared", 60)
    assert not refused.reserved and refused.id is None and refused.fencing is None
    [conflict] = refused.conflicts
    assert (conflict.agent, conflict.paths, conflict.mode, conflict.reason) == (
        "alice",
        ["src/**"],
        "exclusive",
        "refactoring",
    )
    assert conflict.id == held.id and 0 < conflict.expires_in <= 60
    assert (await files.reserve(ns, "bob", ["docs/**"], "exclusive", 60)).reserved  # no overlap
    mine = await files.reserve(ns, "alice", ["src/app.py"], "exclusive", 60)  # own: never a conflict
    assert mine.reserved
    one = await files.reserve(ns, "carol", ["lib/*.py"], "shared", 60)
    two = await files.reserve(ns, "dave", ["lib/**"], "shared", 60)
    assert one.reserved and two.reserved
    blocked = await files.reserve(ns, "erin", ["lib/a.py"], "exclusive", 60)
    assert sorted(c.agent for c in blocked.conflicts) == ["carol", "dave"]
    fencings = [r.fencing or 0 for r in (held, mine, one, two)]
    assert all(fencings) and fencings == sorted(fencings)


async def test_fencing_numbers_rise_across_locks_and_reservations(store: Store) -> None:
    """Reservations draw on the locks' counter: one rising sequence per project."""
    files, locks, ns = service(store), LockService(store, LockSettings()), fresh_namespace()
    first = await files.reserve(ns, "a", ["x"], "exclusive", 30)
    lock = await locks.acquire(ns, "a", "db", ttl_s=30)
    second = await files.reserve(ns, "a", ["y"], "exclusive", 30)
    assert first.fencing is not None and lock.fencing is not None and second.fencing is not None
    assert first.fencing < lock.fencing < second.fencing


async def test_release_and_renew_act_only_for_the_holder(store: Store) -> None:
    """Another agent gets not_yours; the holder releases once; a second release is not_held."""
    files, ns = service(store), fresh_namespace()
    held = await files.reserve(ns, "alice", ["a.py", "b/**"], "exclusive", 30)
    assert held.id is not None
    assert (await files.release(ns, "bob", held.id)).reason == "not_yours"
    renewed = await files.renew(ns, "bob", held.id, 90)
    assert (renewed.renewed, renewed.reason) == (False, "not_yours")
    renewed = await files.renew(ns, "alice", held.id, 90)
    assert (renewed.renewed, renewed.reason, renewed.fencing, renewed.expires_in) == (
        True,
        "renewed",
        held.fencing,
        90,
    )
    [listed] = (await files.reservations(ns)).reservations
    assert listed.id == held.id and 89 < listed.expires_in <= 90
    released = await files.release(ns, "alice", held.id)
    assert (released.released, released.reason, released.paths) == (True, "released", ["a.py", "b/**"])
    again = await files.release(ns, "alice", held.id)
    assert (again.released, again.reason) == (False, "not_held")
    assert (await files.reservations(ns)).reservations == []


async def test_a_lapsed_reservation_is_never_live(store: Store) -> None:
    """After its lease: not listed, not checked, not renewable, and it blocks nobody."""
    files, ns = service(store), fresh_namespace()
    held = await files.reserve(ns, "alice", ["src/app.py"], "exclusive", 1)
    assert held.id is not None
    assert [h.agent for h in (await files.check(ns, ["src/*"])).holds] == ["alice"]
    with anyio.fail_after(5):
        # Waiting for the server's clock to end the lease: nothing to be notified of.
        while (await files.left_ms(ns, [held.id]))[held.id] > 0:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert (await files.reservations(ns)).reservations == []
    assert (await files.check(ns, ["src/*"])).holds == []
    assert (await files.renew(ns, "alice", held.id, 30)).reason == "not_held"
    assert (await files.reserve(ns, "bob", ["src/**"], "exclusive", 30)).reserved


async def test_check_says_which_paths_each_reservation_overlaps(store: Store) -> None:
    """files_check lists every overlapping holder (the caller's too) with the paths it overlaps."""
    files, ns = service(store), fresh_namespace()
    await files.reserve(ns, "alice", ["src/**"], "exclusive", 30, "auth")
    await files.reserve(ns, "bob", ["docs/*.md"], "shared", 30)
    found = (await files.check(ns, ["src/app.py", "docs/a.md", "README.md"])).holds
    assert sorted((h.agent, tuple(h.overlaps)) for h in found) == [
        ("alice", ("src/app.py",)),
        ("bob", ("docs/a.md",)),
    ]
    blocking = await files.blocking_commit(ns, ["src/[x].py", "docs/a.md"], "bob")
    assert [(h.agent, h.overlaps) for h in blocking] == [("alice", ["src/[x].py"])]
    assert await files.blocking_commit(ns, ["src/a.py"], "alice") == []


async def test_the_sweep_releases_only_what_gone_agents_took_before_the_mark(store: Store) -> None:
    """release_of_gone frees a gone agent's earlier reservations, not later ones, nor others'."""
    files, ns = service(store), fresh_namespace()
    old = await files.reserve(ns, "ghost", ["a/**"], "exclusive", 60)
    await files.reserve(ns, "alive", ["b/**"], "exclusive", 60)
    seconds, micros = await store.time()
    await store.execute("ZADD", ns.key(AGENTS_GONE), seconds * 1000 + micros // 1000 + 1, "ghost")
    with anyio.fail_after(5):  # a reservation taken after the mark (the server clock moves on)
        while True:
            later = await files.reserve(ns, "ghost", ["c/**"], "exclusive", 60)
            assert later.id is not None
            doc = json.loads(await store.execute("HGET", ns.key(FILE_RESERVATIONS), later.id))
            if doc["acquired_at_ms"] > seconds * 1000 + micros // 1000 + 1:
                break
            await files.release(ns, "ghost", later.id)
    released = await files.release_of_gone(ns, ["ghost"])
    assert [(r.id, r.agent, r.paths) for r in released] == [(old.id, "ghost", ["a/**"])]
    assert sorted(h.paths[0] for h in (await files.reservations(ns)).reservations) == ["b/**", "c/**"]
    assert await files.release_of_gone(ns, ["nobody"]) == []


async def test_limits_and_malformed_arguments_name_the_argument(store: Store) -> None:
    """Too many paths, a bad glob, a long lease, too many live reservations: refused, naming what."""
    files, ns = service(store, max_paths=2, max_live=2, max_ttl_s=100), fresh_namespace()
    with pytest.raises(LimitExceededError, match=r"argument 'paths' has 3 paths.*files.max_paths = 2"):
        await files.reserve(ns, "a", ["x", "y", "z"])
    with pytest.raises(InvalidArgumentError, match=r"argument 'paths\[1\]' has a '\.\.' segment"):
        await files.reserve(ns, "a", ["x", "../etc"])
    with pytest.raises(LimitExceededError, match=r"argument 'ttl_s' is 101 s.*files.max_ttl_s = 100"):
        await files.reserve(ns, "a", ["x"], ttl_s=101)
    with pytest.raises(InvalidArgumentError, match=r"argument 'paths' must name at least one"):
        await files.check(ns, [])
    await files.reserve(ns, "a", ["x"], ttl_s=30)
    await files.reserve(ns, "a", ["y"], ttl_s=30)
    with pytest.raises(LimitExceededError, match=r"holds 2 live file reservations.*files.max_live = 2"):
        await files.reserve(ns, "a", ["z"], ttl_s=30)
