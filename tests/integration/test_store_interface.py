"""The Store protocol's typed operations: the same values, of the same types, on every backend
(the `store` fixture runs each test on Valkey, real Redis and Upstash REST)."""

from __future__ import annotations

import time

import pytest

from coordinatord.errors import BackendError, BackendUnavailableError
from coordinatord.store import Batch, Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio


async def test_strings_and_expiry(store: Store) -> None:
    """String operations (set with TTL and only-if-absent, get, mget, ttl/pttl, expire, exists, delete,
    unlink) return the same Python values on every backend, including -2 for a missing key's TTL."""
    ns = fresh_namespace()
    a, b, none = ns.key("a"), ns.key("b"), ns.key("none")
    assert await store.ping() is True
    assert await store.set(a, "ü", 100) is True
    assert await store.set(a, "other", 100, only_if_absent=True) is False
    assert await store.set(b, "2", 100, only_if_absent=True) is True
    assert await store.get(a) == "ü"
    assert await store.mget([a, none, b]) == ["ü", None, "2"]
    assert await store.mget([]) == []
    assert 90 < await store.ttl(a) <= 100
    assert 90_000 < await store.pttl(a) <= 100_000
    assert (await store.ttl(none), await store.pttl(none)) == (-2, -2)
    assert await store.expire(a, 7200) is True
    assert await store.expire(none, 10) is False
    assert await store.exists([a, b, none]) == 2
    assert await store.delete([a, none]) == 1
    assert await store.unlink([b]) == 1
    assert await store.exists([a, b]) == 0


async def test_sorted_sets_give_members_and_float_scores(store: Store) -> None:
    """Sorted-set reads give members in order and scores as floats, honour rev, score bounds, offset and
    count, and zscan pages through every member."""
    ns = fresh_namespace()
    z = ns.key("z")
    await store.execute("ZADD", z, 1, "a", 2.5, "b", 10, "c")
    assert await store.zcard(z) == 3
    assert await store.zscore(z, "b") == 2.5
    assert await store.zscore(z, "nobody") is None
    assert await store.zrange(z, 0, -1) == ["a", "b", "c"]
    assert await store.zrange(z, 0, 0, rev=True) == ["c"]
    assert await store.zrange_with_scores(z, 0, -1, rev=True) == [("c", 10.0), ("b", 2.5), ("a", 1.0)]
    assert await store.zrange_by_score(z, "-inf", "(10") == ["a", "b"]
    assert await store.zrange_by_score(z, 2, "+inf", rev=True, offset=1, count=5) == ["b"]
    scored = await store.zrange_by_score_with_scores(z, 2, "+inf", rev=True, count=1)
    assert scored == [("c", 10.0)] and type(scored[0][1]) is float
    seen: list[tuple[str, float]] = []
    cursor = "0"
    while True:
        cursor, page = await store.zscan(z, cursor, 1)
        seen += page
        if cursor == "0":
            break
    assert sorted(seen) == [("a", 1.0), ("b", 2.5), ("c", 10.0)]


async def test_hashes_sets_and_streams(store: Store) -> None:
    """Hash, set and stream reads give dicts, sets and (id, fields) pairs, with empty results rather than
    errors for missing keys and empty field lists."""
    ns = fresh_namespace()
    h, s, x = ns.key("h"), ns.key("s"), ns.key("x")
    await store.execute("HSET", h, "f", "v", "g", "w")
    assert await store.hgetall(h) == {"f": "v", "g": "w"}
    assert await store.hgetall(ns.key("none")) == {}
    assert await store.hdel(h, ["f", "nothing"]) == 1
    assert await store.hdel(h, []) == 0
    await store.execute("SADD", s, "x", "y")
    assert await store.smembers(s) == {"x", "y"}
    assert await store.smembers(ns.key("none")) == frozenset()
    await store.execute("XADD", x, "1-1", "f", "v")
    await store.execute("XADD", x, "2-1", "g", "w", "h", "ü")
    assert await store.xrevrange(x, "+", "-", 1) == [("2-1", {"g": "w", "h": "ü"})]
    assert await store.xread(x, "1-1", 10) == [("2-1", {"g": "w", "h": "ü"})]
    assert await store.xread(x, "2-1", 10) == []
    assert await store.xread(ns.key("none"), "0", 10) == []


async def test_server_time_is_the_clock(store: Store) -> None:
    """The server's TIME is seconds and microseconds close to this machine's clock, so it can serve as the
    shared clock."""
    seconds, micros = await store.time()
    assert abs(seconds + micros / 1e6 - time.time()) < 60  # the same machine: no skew to speak of
    assert 0 <= micros < 1_000_000


async def test_a_batch_is_typed_per_operation(store: Store) -> None:
    """Each queued operation's reply has the type of the same operation called alone."""
    ns = fresh_namespace()
    k, z, h = ns.key("k"), ns.key("z"), ns.key("h")
    await store.execute("ZADD", z, 1, "a", 2, "b")
    batch = Batch()
    written = batch.set(k, "v", 60)
    kept = batch.expire(k, 120)
    doc, lease, head = batch.get(k), batch.pttl(k), batch.getrange(k, 0, 0)
    missing = batch.getrange(ns.key("none"), 0, 10)
    counted = batch.zcount(z, "-inf", "+inf")
    scores = batch.zmscore(z, ["b", "nobody"])
    pairs = batch.zrange_with_scores(z, 0, -1)
    newest = batch.zrange_by_score(z, "-inf", "+inf", rev=True, count=1)
    added = batch.hset(h, "f", "v")
    clock = batch.time()
    with pytest.raises(RuntimeError, match="has not run"):
        _ = doc.value
    await store.run(batch)
    assert (written.value, kept.value, doc.value, head.value, missing.value) == (True, True, "v", "v", "")
    assert 110_000 < lease.value <= 120_000
    assert (counted.value, scores.value, pairs.value) == (2, [2.0, None], [("a", 1.0), ("b", 2.0)])
    assert (newest.value, added.value) == (["b"], 1)
    assert all(type(part) is int for part in clock.value)


async def test_a_refused_command_is_a_backend_error_naming_the_backend(store: Store) -> None:
    """A command the server refuses (WRONGTYPE) raises a BackendError naming the backend and the server's
    reply, not a BackendUnavailableError, so it is not mistaken for an outage."""
    ns = fresh_namespace()
    await store.execute("SADD", ns.key("s"), "x")
    with pytest.raises(BackendError) as caught:
        await store.get(ns.key("s"))
    assert not isinstance(caught.value, BackendUnavailableError)
    assert store.name in str(caught.value) and "WRONGTYPE" in str(caught.value)


async def test_a_script_reply_is_raw_resp2(store: Store) -> None:
    """A Lua table is a list, false is nil, numbers are integers: the same on every backend."""
    script = store.script("return {1, 'a', {2, ARGV[1]}, false, 3.9}", exactly_once=False)  # keyless
    assert await script([], ["ü"]) == [1, "a", [2, "ü"], None, 3]


async def test_an_exactly_once_script_applies_each_write_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On every backend (Upstash's Lua and a Cluster's slots included): a script invocation sent
    again under the same write id (what a resend after a lost reply is) gets the first reply and
    applies nothing; the next invocation, a new write id, applies again."""
    from coordinatord.store import once

    ns = fresh_namespace()
    script = store.script("return {redis.call('INCR', KEYS[1]), 'a', {2, ARGV[1]}, false, 3.9, {ok = 'OK'}}")
    first = await script([ns.key("n")], ["ü"])
    assert first == [1, "a", [2, "ü"], None, 3, "OK"]
    assert await script([ns.key("n")], ["ü"]) == [2, "a", [2, "ü"], None, 3, "OK"]
    monkeypatch.setattr(once, "next_write_id", lambda: "resent-write.1")
    resent = [await script([ns.key("n")], ["ü"]) for _ in range(3)]
    assert resent == [[3, "a", [2, "ü"], None, 3, "OK"]] * 3
    assert await store.get(ns.key("n")) == "3"
    assert 0 < await store.ttl(ns.key("_once:resent-write.1")) <= 120
