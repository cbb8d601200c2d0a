"""Copying one project namespace into another (services/migrate.py) on every backend: every key
type with its TTL, the new namespace's own keys winning, counters taking the larger value, and
keys larger than one page."""

from __future__ import annotations

import pytest

from coordinatord.keyspace import FENCING_COUNTER, Namespace
from coordinatord.services.migrate import NamespaceMigration
from coordinatord.store import Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio

HOUR_MS = 3_600_000


async def seed(store: Store, ns: Namespace) -> None:
    """One key of every type coordinatord writes, each with a TTL, and a counter."""
    commands: list[tuple[str | int | float, ...]] = [
        ("SET", ns.key("lock:db"), '{"token":"t1","agent":"ana","fencing":7}', "PX", HOUR_MS),
        ("HSET", ns.key("agent:status:ana"), "status", "working", "task", "t-1"),
        ("SADD", ns.key("_idx:locks_of:ana"), "db", "cache"),
        ("ZADD", ns.key("_idx:locks"), 1.5, "db", 2.25, "cache"),
        ("RPUSH", ns.key("agent:context:s1:history"), "one", "two", "three"),
        ("XADD", ns.key("_activity"), "1-1", "agent", "ana", "name", "lock_acquire"),
        ("XADD", ns.key("_activity"), "2-1", "agent", "bo", "name", "task_update"),
        ("SET", ns.key(FENCING_COUNTER), "500"),
    ]
    for command in commands:
        await store.execute(*command)
    for key in (
        "agent:status:ana",
        "_idx:locks_of:ana",
        "_idx:locks",
        "agent:context:s1:history",
        "_activity",
    ):
        await store.execute("PEXPIRE", ns.key(key), HOUR_MS)
    await store.execute("PEXPIRE", ns.key(FENCING_COUNTER), 2 * HOUR_MS)


async def test_every_key_type_is_copied_with_its_ttl(store: Store) -> None:
    """Strings, hashes, sets, sorted sets, lists and streams arrive whole, each with the TTL the old
    key had left, and the old namespace is left as it was."""
    old, new = fresh_namespace(), fresh_namespace()
    await seed(store, old)
    counts = await NamespaceMigration(store).copy(old, new)
    assert (counts.copied, counts.merged, counts.kept, counts.vanished, counts.unsupported_count) == (
        7,
        0,
        0,
        0,
        0,
    )
    assert await store.get(new.key("lock:db")) == '{"token":"t1","agent":"ana","fencing":7}'
    assert await store.hgetall(new.key("agent:status:ana")) == {"status": "working", "task": "t-1"}
    assert await store.smembers(new.key("_idx:locks_of:ana")) == {"db", "cache"}
    assert await store.zrange_with_scores(new.key("_idx:locks"), 0, -1) == [("db", 1.5), ("cache", 2.25)]
    assert await store.execute("LRANGE", new.key("agent:context:s1:history"), 0, -1) == [
        "one",
        "two",
        "three",
    ]
    entries = await store.xrevrange(new.key("_activity"), "+", "-", 10)
    assert [entry_id for entry_id, _ in entries] == ["2-1", "1-1"]
    assert entries[1][1] == {"agent": "ana", "name": "lock_acquire"}
    for key in ("lock:db", "agent:status:ana", "_idx:locks_of:ana", "_idx:locks", "agent:context:s1:history"):
        assert HOUR_MS - 60_000 < await store.pttl(new.key(key)) <= HOUR_MS, key
    assert HOUR_MS < await store.pttl(new.key(FENCING_COUNTER)) <= 2 * HOUR_MS
    assert await store.get(old.key("lock:db")) is not None  # the copy leaves the old namespace alone


async def test_the_new_namespace_keeps_its_own_keys_and_merges_collections(store: Store) -> None:
    """Keys the new namespace holds win: a string is kept, a hash or set gets only what it lacks,
    a sorted set keeps its scores, and a counter takes the larger value."""
    old, new = fresh_namespace(), fresh_namespace()
    await seed(store, old)
    await store.execute("SET", new.key("lock:db"), '{"token":"t9","agent":"bo","fencing":3}', "PX", 60_000)
    await store.execute("HSET", new.key("agent:status:ana"), "status", "idle")
    await store.execute("ZADD", new.key("_idx:locks"), 9, "db")
    await store.execute("PEXPIRE", new.key("_idx:locks"), 1_000)
    await store.execute("SET", new.key(FENCING_COUNTER), "12", "PX", 60_000)
    await store.execute("RPUSH", new.key("agent:context:s1:history"), "new")
    counts = await NamespaceMigration(store).copy(old, new)
    assert (counts.copied, counts.merged, counts.kept) == (2, 3, 2)
    assert await store.get(new.key("lock:db")) == '{"token":"t9","agent":"bo","fencing":3}'
    assert await store.hgetall(new.key("agent:status:ana")) == {"status": "idle", "task": "t-1"}
    assert await store.zrange_with_scores(new.key("_idx:locks"), 0, -1) == [("cache", 2.25), ("db", 9.0)]
    assert await store.pttl(new.key("_idx:locks")) > HOUR_MS - 60_000  # the longer TTL of the two
    assert await store.get(new.key(FENCING_COUNTER)) == "500"
    assert HOUR_MS < await store.pttl(new.key(FENCING_COUNTER)) <= 2 * HOUR_MS  # raised, the longer TTL
    assert await store.execute("LRANGE", new.key("agent:context:s1:history"), 0, -1) == ["new"]


async def test_keys_larger_than_a_page_arrive_whole(store: Store) -> None:
    """Hashes, sets, sorted sets, lists and streams of several pages, in several SCAN steps."""
    old, new = fresh_namespace(), fresh_namespace()
    for i in range(25):
        await store.execute("HSET", old.key("h"), f"f{i}", f"v{i}")
        await store.execute("SADD", old.key("s"), f"m{i}")
        await store.execute("ZADD", old.key("z"), i, f"m{i}")
        await store.execute("RPUSH", old.key("l"), f"e{i}")
        await store.execute("XADD", old.key("x"), f"{i + 1}-0", "n", str(i))
        await store.execute("SET", old.key(f"k{i}"), str(i), "EX", 600)
    counts = await NamespaceMigration(store, scan_page=7, page=4).copy(old, new)
    assert counts.copied == 30
    assert len(await store.hgetall(new.key("h"))) == 25
    assert len(await store.smembers(new.key("s"))) == 25
    assert await store.zcard(new.key("z")) == 25
    assert await store.execute("LRANGE", new.key("l"), 0, -1) == [f"e{i}" for i in range(25)]
    assert len(await store.xrevrange(new.key("x"), "+", "-", 100)) == 25
    assert await store.mget([new.key(f"k{i}") for i in range(25)]) == [str(i) for i in range(25)]
    assert [await store.pttl(new.key(k)) for k in ("h", "s", "z", "l", "x")] == [-1] * 5  # none had a TTL


async def test_counting_a_namespace(store: Store) -> None:
    """count says how many keys a namespace holds, up to a limit."""
    ns = fresh_namespace()
    migration = NamespaceMigration(store)
    assert await migration.count(ns, 10) == (0, False)
    for i in range(3):
        await store.set(ns.key(f"k{i}"), "v", 60)
    assert await migration.count(ns, 10) == (3, False)
    assert (await migration.count(ns, 1))[1] is True
