"""Sliding-window rate limits against real servers (Valkey and, where it answers, Redis)."""

from __future__ import annotations

import anyio
import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import ratelimit_key, ratelimit_windows_key
from coordinatord.services.ratelimits import RateLimitResult, RateLimitService
from coordinatord.settings import RateLimitSettings
from coordinatord.store import Store
from tests.support import fresh_namespace

pytestmark = pytest.mark.anyio

SETTINGS = RateLimitSettings()


def make_service(store: Store, settings: RateLimitSettings = SETTINGS) -> RateLimitService:
    return RateLimitService(store, settings)


async def test_64_concurrent_hits_admit_exactly_the_limit(store: Store) -> None:
    """64 hits at once against a limit of 20: exactly 20 allowed, the rest refused."""
    limits, ns = make_service(store), fresh_namespace()
    results: list[RateLimitResult] = []

    async def hit() -> None:
        results.append(await limits.hit(ns, "firecrawl", 20, 3600))

    async with anyio.create_task_group() as tg:
        for _ in range(64):
            tg.start_soon(hit)
    allowed = [r for r in results if r.allowed]
    assert len(results) == 64 and len(allowed) == 20
    assert sorted(r.used for r in allowed) == list(range(1, 21))
    assert all(r.used == 20 and r.remaining == 0 for r in results if not r.allowed)
    assert await store.execute("ZCARD", ns.key(ratelimit_key("firecrawl", 3600))) == 20


async def test_the_window_slides(store: Store) -> None:
    """Once the oldest units are a window old, capacity returns; until then hits are refused."""
    limits, ns = make_service(store), fresh_namespace()
    for expected_used in (1, 2, 3):
        result = await limits.hit(ns, "api", 3, 1)
        assert result.allowed and result.used == expected_used
        assert 0 < result.reset_in_s <= 1
    refused = await limits.hit(ns, "api", 3, 1)
    assert not refused.allowed and refused.used == 3 and refused.remaining == 0
    assert 0 < refused.reset_in_s <= 1
    # Wait as the refusal says, in a bounded loop: the window is real time on the server.
    attempts = 0
    with anyio.fail_after(5):
        while not (result := await limits.hit(ns, "api", 3, 1)).allowed:
            attempts += 1
            await anyio.sleep(result.reset_in_s)
    assert result.used <= 3
    assert attempts < 20


async def test_cost_counts_units_and_refusals_consume_nothing(store: Store) -> None:
    """A hit of cost c uses c units; a hit that does not fit is refused whole and changes nothing."""
    limits, ns = make_service(store), fresh_namespace()
    first = await limits.hit(ns, "llm-tokens", 10, 3600, cost=7)
    assert (first.allowed, first.used, first.remaining) == (True, 7, 3)
    too_big = await limits.hit(ns, "llm-tokens", 10, 3600, cost=4)
    assert (too_big.allowed, too_big.used, too_big.remaining) == (False, 7, 3)
    assert 3590 < too_big.reset_in_s <= 3600
    fits = await limits.hit(ns, "llm-tokens", 10, 3600, cost=3)
    assert (fits.allowed, fits.used, fits.remaining) == (True, 10, 0)
    assert not (await limits.hit(ns, "llm-tokens", 10, 3600)).allowed
    assert await store.execute("ZCARD", ns.key(ratelimit_key("llm-tokens", 3600))) == 10


async def test_a_large_cost_is_admitted_in_one_script(store: Store) -> None:
    """A cost above the script's batch size is admitted whole (its units all counted)."""
    limits, ns = make_service(store), fresh_namespace()
    big = await limits.hit(ns, "bulk", 5000, 60, cost=4321)
    assert (big.allowed, big.used, big.remaining) == (True, 4321, 679)
    assert await store.execute("ZCARD", ns.key(ratelimit_key("bulk", 60))) == 4321


async def test_status_reads_without_consuming(store: Store) -> None:
    """status reports usage and whether one more hit fits, and admits nothing."""
    limits, ns = make_service(store), fresh_namespace()
    empty = await limits.status(ns, "github", 2, 60)
    assert (empty.allowed, empty.used, empty.remaining, empty.reset_in_s) == (True, 0, 2, 0)
    await limits.hit(ns, "github", 2, 60)
    for _ in range(3):
        seen = await limits.status(ns, "github", 2, 60)
        assert (seen.allowed, seen.used, seen.remaining) == (True, 1, 1)
        assert 0 < seen.reset_in_s <= 60
    await limits.hit(ns, "github", 2, 60)
    full = await limits.status(ns, "github", 2, 60)
    assert (full.allowed, full.used, full.remaining) == (False, 2, 0)
    assert 0 < full.reset_in_s <= 60
    assert await store.execute("ZCARD", ns.key(ratelimit_key("github", 60))) == 2


async def test_windows_are_separate_and_limits_are_per_call(store: Store) -> None:
    """One service with two windows keeps two logs; each call is judged by its own limit."""
    limits, ns = make_service(store), fresh_namespace()
    assert (await limits.hit(ns, "svc", 1, 60)).allowed
    assert not (await limits.hit(ns, "svc", 1, 60)).allowed
    assert (await limits.hit(ns, "svc", 1, 3600)).allowed
    larger = await limits.hit(ns, "svc", 5, 60)
    assert (larger.allowed, larger.used, larger.remaining) == (True, 2, 3)
    smaller = await limits.status(ns, "svc", 1, 60)
    assert (smaller.allowed, smaller.used, smaller.remaining) == (False, 2, 0)


async def test_reset_clears_every_window_of_the_service_only(store: Store) -> None:
    """reset deletes all of a service's windows and its window set, and nothing of other services."""
    limits, ns = make_service(store), fresh_namespace()
    for window in (60, 3600, 86_400):
        await limits.hit(ns, "svc", 1, window)
    await limits.hit(ns, "other", 1, 60)
    cleared = await limits.reset(ns, "svc")
    assert (cleared.service, cleared.windows_cleared) == ("svc", 3)
    assert await store.exists([ns.key(ratelimit_windows_key("svc"))]) == 0
    for window in (60, 3600):
        assert (await limits.status(ns, "svc", 1, window)).used == 0
        assert (await limits.hit(ns, "svc", 1, window)).allowed
    assert (await limits.status(ns, "other", 1, 60)).used == 1
    assert (await limits.reset(ns, "never-used")).windows_cleared == 0


async def test_reset_during_hits_never_leaves_a_window_behind(store: Store) -> None:
    """Hits on several windows racing resets: every window still stored stays findable by reset."""
    limits, ns = make_service(store), fresh_namespace()
    windows = (60, 600, 3600, 7200)

    async def hits() -> None:
        for round_ in range(50):
            await limits.hit(ns, "racy", 1000, windows[round_ % len(windows)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(hits)
        for _ in range(20):
            await limits.reset(ns, "racy")
    members = set(await store.execute("SMEMBERS", ns.key(ratelimit_windows_key("racy"))))
    stored = {str(w) for w in windows if await store.exists([ns.key(ratelimit_key("racy", w))])}
    assert stored <= members
    await limits.reset(ns, "racy")
    assert await store.exists([ns.key(ratelimit_key("racy", w)) for w in windows]) == 0


async def test_every_key_has_a_ttl(store: Store) -> None:
    """The window log lives as long as its window; the window set as long as its longest window."""
    limits, ns = make_service(store), fresh_namespace()
    await limits.hit(ns, "svc", 5, 60)
    await limits.hit(ns, "svc", 5, 3600)
    await limits.hit(ns, "svc", 5, 10)
    assert 59 < await store.ttl(ns.key(ratelimit_key("svc", 60))) <= 60
    assert 3590 < await store.ttl(ns.key(ratelimit_windows_key("svc"))) <= 3600


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        ({"service": ""}, InvalidArgumentError, "'service' must be 1-64 characters"),
        ({"service": "a:b"}, InvalidArgumentError, "'service' must be 1-64 characters"),
        ({"service": "x" * 65}, InvalidArgumentError, "'service' must be 1-64 characters"),
        ({"limit": 100_001}, LimitExceededError, "ratelimits.max_limit = 100000"),
        ({"window_s": 31 * 86_400 + 1}, LimitExceededError, "ratelimits.max_window_s = 2678400"),
        ({"cost": 11}, InvalidArgumentError, "'cost' is 11, above 'limit' 10"),
    ],
)
async def test_bad_arguments_are_named(
    store: Store, call: dict[str, object], error: type[Exception], message: str
) -> None:
    """Every out-of-range argument is refused with the argument or setting named, before any write."""
    limits, ns = make_service(store), fresh_namespace()
    args: dict[str, object] = {"service": "svc", "limit": 10, "window_s": 60, "cost": 1, **call}
    with pytest.raises(error, match=message):
        await limits.hit(ns, **args)  # type: ignore[arg-type]
    if "cost" not in call:
        del args["cost"]
        with pytest.raises(error, match=message):
            await limits.status(ns, **args)  # type: ignore[arg-type]
    assert await store.exists([ns.key(ratelimit_windows_key("svc"))]) == 0
