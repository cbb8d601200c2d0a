"""Locks against real servers (Valkey and, where it answers, Redis): exclusion, fencing, leases."""

from __future__ import annotations

import itertools
import json

import anyio
import anyio.lowlevel
import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import FENCING_COUNTER, LOCKS_INDEX, Namespace, agent_locks_key, lock_key
from coordinatord.services.locks import FENCING_COUNTER_TTL_S, LockService
from coordinatord.settings import LockSettings
from coordinatord.store import Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio

SETTINGS = LockSettings()


def make_service(store: Store, settings: LockSettings = SETTINGS) -> LockService:
    return LockService(store, settings)


CYCLES = 100
"""Acquire/release cycles per agent: 1 600 hand-overs in all (on Upstash each one is HTTP)."""


async def test_sixteen_agents_never_hold_one_lock_together(store: Store) -> None:
    """16 agents x 100 acquire/release cycles: never two holders, fencing strictly rising."""
    locks, ns = make_service(store), fresh_namespace()
    inside: list[str | None] = [None]
    fencings: list[int] = []
    overlaps: list[tuple[str, str]] = []

    async def agent(name: str) -> None:
        for _ in range(CYCLES):
            got = await locks.acquire(ns, name, "src/app.py", ttl_s=30, wait_ms=30_000)
            assert got.acquired and got.token is not None and got.fencing is not None
            assert not got.reentered
            if inside[0] is not None:
                overlaps.append((inside[0], name))
            inside[0] = name
            fencings.append(got.fencing)
            await anyio.lowlevel.checkpoint()  # every other agent runs while this one is inside
            assert inside[0] == name
            inside[0] = None
            released = await locks.release(ns, "src/app.py", got.token)
            assert released.released

    async with anyio.create_task_group() as tg:
        for index in range(16):
            tg.start_soon(agent, f"agent-{index}")

    assert overlaps == []
    assert len(fencings) == 16 * CYCLES
    assert all(a < b for a, b in itertools.pairwise(fencings))
    assert (await locks.list(ns)).locks == []


async def test_a_holder_that_dies_loses_the_lock_when_its_lease_ends(store: Store) -> None:
    """A lock never released frees itself after its ttl; a waiter then takes it with a higher fencing."""
    locks, ns = make_service(store), fresh_namespace()
    dead = await locks.acquire(ns, "crashed", "db:migrations", ttl_s=1)
    assert dead.acquired and dead.fencing is not None
    refused = await locks.acquire(ns, "survivor", "db:migrations")
    assert not refused.acquired and refused.held_by == "crashed"
    assert refused.token is None and refused.fencing is None
    assert refused.expires_in is not None and 0 < refused.expires_in <= 1
    taken = await locks.acquire(ns, "survivor", "db:migrations", wait_ms=5_000)
    assert taken.acquired and taken.held_by == "survivor"
    assert taken.fencing is not None and taken.fencing > dead.fencing
    assert dead.token is not None
    late = await locks.release(ns, "db:migrations", dead.token)
    assert (late.released, late.reason, late.held_by) == (False, "token_mismatch", "survivor")


async def test_wrong_token_cannot_release_or_renew(store: Store) -> None:
    """release and renew act only for the holder's token; refusals say why and who holds it."""
    locks, ns = make_service(store), fresh_namespace()
    held = await locks.acquire(ns, "alice", "port:8080", ttl_s=30)
    assert held.token is not None
    wrong = "0" * 32
    release = await locks.release(ns, "port:8080", wrong)
    assert (release.released, release.reason, release.held_by) == (False, "token_mismatch", "alice")
    renew = await locks.renew(ns, "port:8080", wrong, 60)
    assert (renew.renewed, renew.reason, renew.held_by, renew.fencing) == (
        False,
        "token_mismatch",
        "alice",
        None,
    )
    assert renew.expires_in is not None and renew.expires_in <= 30
    still = await locks.acquire(ns, "bob", "port:8080")
    assert not still.acquired and still.held_by == "alice"
    free = await locks.release(ns, "port:9090", held.token)
    assert (free.released, free.reason, free.held_by) == (False, "not_held", None)
    lapsed = await locks.renew(ns, "port:9090", held.token, 10)
    assert (lapsed.renewed, lapsed.reason, lapsed.expires_in) == (False, "not_held", None)


async def test_renew_sets_the_lease_and_keeps_fencing(store: Store) -> None:
    """The holder's renew makes the lease end ttl from now (longer or shorter) and moves the index."""
    locks, ns = make_service(store), fresh_namespace()
    held = await locks.acquire(ns, "alice", "build", ttl_s=5)
    assert held.token is not None
    longer = await locks.renew(ns, "build", held.token, 120)
    assert longer.renewed and longer.reason == "renewed" and longer.held_by == "alice"
    assert longer.fencing == held.fencing and longer.expires_in == 120
    assert 119_000 < await store.execute("PTTL", ns.key(lock_key("build"))) <= 120_000
    shorter = await locks.renew(ns, "build", held.token, 2)
    assert shorter.renewed and shorter.expires_in == 2
    assert 1_000 < await store.execute("PTTL", ns.key(lock_key("build"))) <= 2_000
    [entry] = (await locks.list(ns)).locks
    assert entry.expires_in is not None and 1 < entry.expires_in <= 2


async def held_set(store: Store, ns: Namespace, agent: str) -> set[str]:
    return set(await store.execute("SMEMBERS", ns.key(agent_locks_key(agent))))


async def test_an_agents_held_set_follows_acquire_renew_and_release(store: Store) -> None:
    """Each agent's set of held resources (what the sweep reads for a gone agent) gains a lock
    on acquire, outlives every lease in it, and loses it on release, whoever presents the token."""
    locks, ns = make_service(store), fresh_namespace()
    first = await locks.acquire(ns, "alice", "src/a.py", ttl_s=30)
    second = await locks.acquire(ns, "alice", "src/b.py", ttl_s=10)
    await locks.acquire(ns, "bob", "src/c.py", ttl_s=10)
    assert first.token is not None and second.token is not None
    assert await held_set(store, ns, "alice") == {"src/a.py", "src/b.py"}
    assert await held_set(store, ns, "bob") == {"src/c.py"}
    assert 29_000 < await store.execute("PTTL", ns.key(agent_locks_key("alice"))) <= 30_000
    assert (await locks.renew(ns, "src/b.py", second.token, 300)).renewed
    assert 299_000 < await store.execute("PTTL", ns.key(agent_locks_key("alice"))) <= 300_000
    assert (await locks.release(ns, "src/a.py", first.token)).released
    assert await held_set(store, ns, "alice") == {"src/b.py"}
    assert (await locks.release(ns, "src/b.py", second.token)).released
    assert await store.exists([ns.key(agent_locks_key("alice"))]) == 0
    assert await held_set(store, ns, "bob") == {"src/c.py"}


async def test_locks_that_lapsed_leave_the_held_set_on_later_acquisitions(store: Store) -> None:
    """A lease that ran out leaves its resource in the set; the agent's next acquisitions drop
    it (two members checked each time), and keep the members that are still its locks."""
    locks, ns = make_service(store), fresh_namespace()
    await locks.acquire(ns, "alice", "lapsed-1", ttl_s=60)
    await locks.acquire(ns, "alice", "lapsed-2", ttl_s=60)
    # The leases end (or someone else's lock now sits there): no lock of alice's behind them.
    await store.delete([ns.key(lock_key("lapsed-1"))])
    await store.delete([ns.key(lock_key("lapsed-2"))])
    assert (await locks.acquire(ns, "bob", "lapsed-2", ttl_s=60)).acquired
    await locks.acquire(ns, "alice", "kept", ttl_s=60)
    assert await held_set(store, ns, "alice") == {"kept"}
    await locks.acquire(ns, "alice", "another", ttl_s=60)
    assert await held_set(store, ns, "alice") == {"kept", "another"}


async def test_reentry_returns_the_same_token_and_extends_the_lease(store: Store) -> None:
    """The holding agent acquires again: same token and fencing, lease extended never shortened."""
    locks, ns = make_service(store), fresh_namespace()
    first = await locks.acquire(ns, "alice", "src/app.py", ttl_s=10)
    again = await locks.acquire(ns, "alice", "src/app.py", ttl_s=100)
    assert again.acquired and again.reentered and not first.reentered
    assert (again.token, again.fencing) == (first.token, first.fencing)
    assert again.expires_in == 100
    assert 99_000 < await store.execute("PTTL", ns.key(lock_key("src/app.py"))) <= 100_000
    shorter = await locks.acquire(ns, "alice", "src/app.py", ttl_s=1)
    assert shorter.reentered and shorter.expires_in is not None and shorter.expires_in > 90
    assert first.token is not None
    assert (await locks.release(ns, "src/app.py", first.token)).released
    fresh = await locks.acquire(ns, "alice", "src/app.py")
    assert not fresh.reentered and fresh.token != first.token
    assert fresh.fencing is not None and first.fencing is not None and fresh.fencing > first.fencing


async def wait_until_waiting(locks: LockService, ns: Namespace, resource: str) -> None:
    """Until a waiter in ``locks`` has been refused once and sleeps before its next attempt."""
    with anyio.fail_after(10):
        while locks.local_waiters(ns, resource) == 0:
            await anyio.lowlevel.checkpoint()


async def test_wait_returns_as_soon_as_another_task_releases(store: Store) -> None:
    """A waiter with wait_ms gets the lock once the holder releases, long before the holder's lease ends."""
    locks, ns = make_service(store), fresh_namespace()
    held = await locks.acquire(ns, "alice", "schema.sql", ttl_s=60)
    assert held.token is not None
    results = []

    async def waiter() -> None:
        results.append(await locks.acquire(ns, "bob", "schema.sql", wait_ms=20_000))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_until_waiting(locks, ns, "schema.sql")
            assert (await locks.release(ns, "schema.sql", held.token)).released
    [got] = results
    assert got.acquired and got.held_by == "bob"
    assert got.fencing is not None and held.fencing is not None and got.fencing > held.fencing
    assert locks.local_waiters(ns, "schema.sql") == 0


async def test_waiters_on_another_daemon_find_the_lock_by_polling(store: Store) -> None:
    """A release through another service instance (another daemon) is found by polling."""
    mine, theirs, ns = make_service(store), make_service(store), fresh_namespace()
    held = await theirs.acquire(ns, "alice", "deploy", ttl_s=60)
    assert held.token is not None
    results = []

    async def waiter() -> None:
        results.append(await mine.acquire(ns, "bob", "deploy", wait_ms=20_000))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_until_waiting(mine, ns, "deploy")
            assert (await theirs.release(ns, "deploy", held.token)).released
    assert results[0].acquired and results[0].held_by == "bob"


async def test_wait_gives_up_at_the_deadline(store: Store) -> None:
    """When the holder keeps the lock, a waiter returns not acquired, naming the holder."""
    locks, ns = make_service(store), fresh_namespace()
    await locks.acquire(ns, "alice", "busy", ttl_s=60)
    got = await locks.acquire(ns, "bob", "busy", wait_ms=50)
    assert not got.acquired and got.held_by == "alice"
    assert got.expires_in is not None and 50 < got.expires_in <= 60


async def test_list_shows_held_locks_only(store: Store) -> None:
    """lock_list reads the index: holder, fencing and lease; released and lapsed locks are gone."""
    locks, ns = make_service(store), fresh_namespace()
    a = await locks.acquire(ns, "alice", "b/file.py", ttl_s=30)
    b = await locks.acquire(ns, "bob", "a/file.py", ttl_s=60)
    c = await locks.acquire(ns, "carol", "gone", ttl_s=30)
    assert c.token is not None
    await locks.release(ns, "gone", c.token)
    listed = (await locks.list(ns)).locks
    assert [(x.resource, x.held_by, x.fencing) for x in listed] == [
        ("a/file.py", "bob", b.fencing),
        ("b/file.py", "alice", a.fencing),
    ]
    assert all(x.expires_in is not None and 0 < x.expires_in <= 60 for x in listed)
    # A key deleted behind the index's back (say by redis_del) is skipped.
    await store.delete([ns.key(lock_key("a/file.py"))])
    assert [x.resource for x in (await locks.list(ns)).locks] == ["b/file.py"]
    empty = await locks.list(fresh_namespace())
    assert empty.locks == [] and not empty.truncated


async def test_every_key_has_a_ttl_and_the_document_is_readable(store: Store) -> None:
    """The lock document is plain JSON under lock:{resource}; lock, index and counter all expire."""
    locks, ns = make_service(store), fresh_namespace()
    got = await locks.acquire(ns, "alice", "docs/README.md", ttl_s=120)
    raw = await store.get(ns.key(lock_key("docs/README.md")))
    assert raw is not None
    doc = json.loads(raw)
    assert doc["agent"] == "alice" and doc["token"] == got.token and doc["fencing"] == got.fencing
    assert isinstance(doc["acquired_at_ms"], int)
    assert 0 < await store.ttl(ns.key(lock_key("docs/README.md"))) <= 120
    assert 0 < await store.ttl(ns.key(LOCKS_INDEX)) <= 120
    assert 0 < await store.ttl(ns.key(agent_locks_key("alice"))) <= 120
    assert FENCING_COUNTER_TTL_S - 10 < await store.ttl(ns.key(FENCING_COUNTER)) <= FENCING_COUNTER_TTL_S


async def test_fencing_keeps_rising_after_the_counter_expires(store: Store) -> None:
    """A lost fencing counter restarts from the server clock, above every number handed out."""
    locks, ns = make_service(store), fresh_namespace()
    first = await locks.acquire(ns, "alice", "r1")
    await store.delete([ns.key(FENCING_COUNTER)])
    second = await locks.acquire(ns, "alice", "r2")
    assert first.fencing is not None and second.fencing is not None
    assert second.fencing > first.fencing
    assert second.fencing < 2**53  # exact in JSON numbers and Lua doubles


async def test_agent_names_and_resources_survive_json(store: Store) -> None:
    """Quotes, slashes, braces and non-ASCII text in names are stored and reported exactly."""
    locks, ns = make_service(store), fresh_namespace()
    agent, resource = 'kilo "code" /ü', "src/{weird} name*?.py"
    got = await locks.acquire(ns, agent, resource)
    assert got.acquired and got.held_by == agent
    other = await locks.acquire(ns, "bob", resource)
    assert other.held_by == agent
    [entry] = (await locks.list(ns)).locks
    assert (entry.resource, entry.held_by) == (resource, agent)
    again = await locks.acquire(ns, agent, resource)
    assert again.reentered and again.token == got.token


async def test_a_non_lock_value_counts_as_held_by_someone_unknown(store: Store) -> None:
    """A lock: key written by a raw tool blocks acquisition and is reported, not crashed on."""
    locks, ns = make_service(store), fresh_namespace()
    await store.set(ns.key(lock_key("raw")), "not json", 60)
    got = await locks.acquire(ns, "alice", "raw")
    assert not got.acquired and got.held_by == "(unknown: not a lock document)"
    assert (await locks.release(ns, "raw", "f" * 32)).reason == "token_mismatch"


async def test_projects_have_separate_locks(store: Store) -> None:
    """The same resource name in two projects is two locks."""
    locks = make_service(store)
    one, two = fresh_namespace(), fresh_namespace()
    assert (await locks.acquire(one, "alice", "src/app.py")).acquired
    assert (await locks.acquire(two, "bob", "src/app.py")).acquired
    assert [x.held_by for x in (await locks.list(two)).locks] == ["bob"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        ({"resource": ""}, InvalidArgumentError, "'resource' must not be empty"),
        ({"resource": "a\nb"}, InvalidArgumentError, "'resource' must be printable"),
        ({"resource": "x" * 513}, LimitExceededError, "'resource' is 513 bytes; the limit is 512"),
        ({"resource": "r", "ttl_s": 3601}, LimitExceededError, "locks.max_ttl_s = 3600"),
        ({"resource": "r", "wait_ms": 30_001}, LimitExceededError, "locks.max_wait_ms = 30000"),
    ],
)
async def test_bad_acquire_arguments_are_named(
    store: Store, call: dict[str, object], error: type[Exception], message: str
) -> None:
    """Out-of-range resources, leases and waits are refused with the argument or setting named."""
    locks, ns = make_service(store), fresh_namespace()
    with pytest.raises(error, match=message):
        await locks.acquire(ns, "alice", **call)  # type: ignore[arg-type]
    assert (await locks.list(ns)).locks == []


async def test_bad_release_and_renew_arguments_are_named(store: Store) -> None:
    """An empty token or an out-of-range renew ttl is an error, not a refusal result."""
    locks, ns = make_service(store), fresh_namespace()
    with pytest.raises(InvalidArgumentError, match="'token' must not be empty"):
        await locks.release(ns, "r", "")
    with pytest.raises(LimitExceededError, match=r"locks\.max_ttl_s"):
        await locks.renew(ns, "r", "a" * 32, 100_000)
