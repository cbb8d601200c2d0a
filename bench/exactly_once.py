"""What exactly-once writes cost per call (coordinatord/store/once.py): the same service writes
with every script wrapped (a GET of the write record before, the reply encoded and SET after)
and with none, on one Valkey this script starts (the test suite's fixture, a Unix socket).

    .venv/bin/python bench/exactly_once.py                 # 3 rounds, 2 000 calls a series
    .venv/bin/python bench/exactly_once.py --rounds 5 --calls 5000

Each round runs every series once wrapped and once not, alternating which goes first. Per
series: the p50 of one call as the service sees it (µs, median of the rounds) each way, and the
server's own time per EVALSHA (Valkey's ``INFO commandstats``, usec_per_call), each way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import redis as redis_sync

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's code and its test fixtures, from this checkout

from coordinatord.keyspace import Namespace  # noqa: E402
from coordinatord.services.locks import LockService  # noqa: E402
from coordinatord.services.ratelimits import RateLimitService  # noqa: E402
from coordinatord.services.sessions import SessionService  # noqa: E402
from coordinatord.settings import BackendSettings, LockSettings, RateLimitSettings, SessionSettings  # noqa: E402
from coordinatord.store import RedisStore  # noqa: E402
from coordinatord.store.scripts import EvalScript  # noqa: E402
from tests.support import valkey_server  # noqa: E402


class PlainStore(RedisStore):
    """The store with every script sent as it is (what the daemon did before)."""

    def script(self, source: str, *, exactly_once: bool = True) -> EvalScript:
        return super().script(source, exactly_once=False)


Series = Callable[[int], Awaitable[Any]]


async def series_of(store: RedisStore, ns: Namespace) -> dict[str, Series]:
    sessions = SessionService(store, SessionSettings(max_turns=1_000_000))
    locks = LockService(store, LockSettings())
    limits = RateLimitService(store, RateLimitSettings())
    await sessions.save(ns, "bench", {"goal": "x"}, None, "bench")

    async def append(i: int) -> Any:
        return await sessions.append(ns, "bench", "user", f"turn {i}", "bench")

    async def lock_cycle(i: int) -> Any:
        held = await locks.acquire(ns, "bench", f"r{i % 8}", 60)
        return await locks.release(ns, f"r{i % 8}", held.token or "")

    async def hit(i: int) -> Any:
        return await limits.hit(ns, "bench", 100_000, 3600, 1)

    return {"session_append": append, "lock_acquire+lock_release": lock_cycle, "ratelimit_hit": hit}


def evalsha_usec(client: redis_sync.Redis) -> tuple[float, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))


async def run_one(
    url: str, wrapped: bool, calls: int, warmup: int, client: redis_sync.Redis
) -> dict[str, Any]:
    kind = RedisStore if wrapped else PlainStore
    store = kind.from_url(url, BackendSettings())
    out: dict[str, Any] = {}
    try:
        ns = Namespace(f"bench-{time.monotonic_ns()}")
        for name, one in (await series_of(store, ns)).items():
            for i in range(warmup):
                await one(i)
            usec_before, calls_before = evalsha_usec(client)
            samples = []
            for i in range(calls):
                started = time.perf_counter()
                await one(i)
                samples.append((time.perf_counter() - started) * 1e6)
            usec_after, calls_after = evalsha_usec(client)
            server = (usec_after - usec_before) / max(1, calls_after - calls_before)
            out[name] = {"p50_us": statistics.median(samples), "server_us_per_evalsha": server}
    finally:
        await store.aclose()
    return out


async def main_async(args: argparse.Namespace) -> int:
    with valkey_server() as server:
        client = redis_sync.Redis(unix_socket_path=str(server.socket_path), decode_responses=True)
        rounds: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for round_index in range(args.rounds):
            order = (True, False) if round_index % 2 == 0 else (False, True)
            for wrapped in order:
                rounds[wrapped].append(await run_one(server.url, wrapped, args.calls, args.warmup, client))
        client.close()
    names = list(rounds[True][0])
    head = ("series", "plain p50", "once p50", "+µs", "server plain", "server once")
    print(f"{head[0]:28} {head[1]:>10} {head[2]:>10} {head[3]:>7} {head[4]:>13} {head[5]:>12}")
    for name in names:
        plain = statistics.median(r[name]["p50_us"] for r in rounds[False])
        once = statistics.median(r[name]["p50_us"] for r in rounds[True])
        server_plain = statistics.median(r[name]["server_us_per_evalsha"] for r in rounds[False])
        server_once = statistics.median(r[name]["server_us_per_evalsha"] for r in rounds[True])
        extra = once - plain
        print(f"{name:28} {plain:10.1f} {once:10.1f} {extra:7.1f} {server_plain:13.1f} {server_once:12.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    return anyio.run(main_async, args)


if __name__ == "__main__":
    raise SystemExit(main())
