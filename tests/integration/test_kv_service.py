"""The raw key/value service against real servers (Valkey and, where it answers, Redis)."""

from __future__ import annotations

import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import ACTIVITY_STREAM, FENCING_COUNTER, SESSIONS_INDEX, KeyRules, TtlPolicy
from coordinatord.services.kv import KvService
from coordinatord.settings import DEFAULT_TTL_PREFIXES
from coordinatord.store import Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio


def make_service(store: Store, keys_result_max: int = 1000) -> KvService:
    rules = KeyRules(max_key_bytes=256, max_value_bytes=1024, max_keys_per_call=100)
    return KvService(store, rules, TtlPolicy(86_400, 30 * 86_400, DEFAULT_TTL_PREFIXES), keys_result_max)


async def test_set_get_round_trip_with_default_ttl(store: Store) -> None:
    """A value comes back as written, and a write without a TTL gets its prefix's TTL."""
    kv, ns = make_service(store), fresh_namespace()
    applied = await kv.set(ns, "agent:context:s1", '{"lastTask":"x","ü":1}', None)
    assert applied == 86_400
    assert await kv.get(ns, "agent:context:s1") == '{"lastTask":"x","ü":1}'
    assert 86_390 < await kv.ttl(ns, "agent:context:s1") <= 86_400
    await kv.set(ns, "agent:status:kilocode", "{}", None)
    assert 290 < await kv.ttl(ns, "agent:status:kilocode") <= 300


async def test_missing_keys(store: Store) -> None:
    """Absent keys read as None, TTL -2, and expire reports failure."""
    kv, ns = make_service(store), fresh_namespace()
    assert await kv.get(ns, "nope") is None
    assert await kv.ttl(ns, "nope") == -2
    assert await kv.expire(ns, "nope", 10) is False
    assert await kv.delete(ns, ["nope"]) == 0
    assert await kv.exists(ns, ["nope"]) == 0


async def test_expire_delete_exists(store: Store) -> None:
    """expire changes the TTL; exists counts; delete removes and counts."""
    kv, ns = make_service(store), fresh_namespace()
    await kv.set(ns, "a", "1", 100)
    await kv.set(ns, "b", "2", 100)
    assert await kv.expire(ns, "a", 7200) is True
    assert 7190 < await kv.ttl(ns, "a") <= 7200
    assert await kv.exists(ns, ["a", "b", "c"]) == 2
    assert await kv.delete(ns, ["a", "b", "c"]) == 2
    assert await kv.exists(ns, ["a", "b"]) == 0


async def test_projects_cannot_see_or_touch_each_other(store: Store) -> None:
    """Same key names in two namespaces are two keys; listing and deleting stay inside one."""
    kv, mine, theirs = make_service(store), fresh_namespace(), fresh_namespace()
    await kv.set(mine, "shared:name", "mine", None)
    await kv.set(theirs, "shared:name", "theirs", None)
    assert await kv.get(mine, "shared:name") == "mine"
    assert await kv.delete(mine, ["shared:name"]) == 1
    assert await kv.get(theirs, "shared:name") == "theirs"
    for pattern in ("*", "*}*", f"{{{theirs.project_id}}}*", "../*"):
        assert await kv.keys(mine, pattern) == ([], False)
    assert await kv.keys(theirs, "*") == (["shared:name"], False)


async def test_keys_uses_patterns_and_caps_the_list(store: Store) -> None:
    """keys matches globs within the namespace and says when it cut the list."""
    kv, ns = make_service(store, keys_result_max=5), fresh_namespace()
    for index in range(8):
        await kv.set(ns, f"task:progress:t{index}", "{}", None)
    await kv.set(ns, "other", "x", None)
    keys, truncated = await kv.keys(ns, "task:progress:*")
    assert truncated is True and len(keys) == 5
    assert all(key.startswith("task:progress:t") for key in keys)
    assert await kv.keys(ns, "oth?r") == (["other"], False)


async def test_refusals_happen_before_any_write(store: Store) -> None:
    """Bad TTLs, sizes and keys are refused and nothing is written."""
    kv, ns = make_service(store), fresh_namespace()
    with pytest.raises(InvalidArgumentError):
        await kv.set(ns, "k", "v", 0)
    with pytest.raises(LimitExceededError):
        await kv.set(ns, "k", "v" * 2000, None)
    with pytest.raises(InvalidArgumentError):
        await kv.set(ns, "k\x00", "v", None)
    with pytest.raises(InvalidArgumentError):
        await kv.expire(ns, "k", -5)
    assert await kv.keys(ns, "*") == ([], False)


async def test_internal_keys_can_be_read_but_not_changed(store: Store) -> None:
    """set, expire and del refuse the services' own keys and change nothing (a del naming one
    deletes none of its keys); get, keys, exists and ttl still read them."""
    kv, ns = make_service(store), fresh_namespace()
    await store.execute("ZADD", ns.key(SESSIONS_INDEX), 1, "s1")
    await store.execute("EXPIRE", ns.key(SESSIONS_INDEX), 500)
    await store.set(ns.key(FENCING_COUNTER), "41", 500)
    await kv.set(ns, "temp:mine", "x", 500)

    with pytest.raises(
        InvalidArgumentError, match=r"argument 'key' names '_seq:fencing', one of coordinatord"
    ):
        await kv.set(ns, FENCING_COUNTER, "1", None)
    with pytest.raises(InvalidArgumentError, match=r"argument 'key' names '_activity'"):
        await kv.set(ns, ACTIVITY_STREAM, "not a stream", 60)
    with pytest.raises(InvalidArgumentError, match=r"argument 'key' names '_idx:sessions'"):
        await kv.expire(ns, SESSIONS_INDEX, 5)
    with pytest.raises(InvalidArgumentError, match=r"argument 'keys\[1\]' names '_idx:sessions'"):
        await kv.delete(ns, ["temp:mine", SESSIONS_INDEX])

    assert await kv.get(ns, FENCING_COUNTER) == "41"
    assert float(await store.execute("ZSCORE", ns.key(SESSIONS_INDEX), "s1")) == 1
    assert 490 < await kv.ttl(ns, SESSIONS_INDEX) <= 500
    assert await kv.exists(ns, [SESSIONS_INDEX, FENCING_COUNTER, ACTIVITY_STREAM, "temp:mine"]) == 3
    assert await kv.keys(ns, "_*") == ([SESSIONS_INDEX, FENCING_COUNTER], False)
    assert await kv.delete(ns, ["temp:mine"]) == 1


async def test_ping(store: Store) -> None:
    """ping answers when the backend is up."""
    assert await make_service(store).ping() is True
