"""Benchmark the heartbeat sweep's cross-daemon presence rule: one sweep over 100 000 agents
whose connections are spread over three daemons, and ``redis_get`` latency meanwhile.

    .venv/bin/python bench/sweep.py                          # own daemon, embedded Valkey
    .venv/bin/python bench/sweep.py --redis-url redis://127.0.0.1:6379/14
    .venv/bin/python bench/sweep.py --agents 10000

The script starts ``coordinatord serve`` with its scheduler off and runs ``heartbeat_sweep``
with the ``run_job`` control command, as a tick would (see bench/jobs_bench.py, whose daemon,
probe and table it uses). The data is synthetic, written straight into the backend in the
services' layout, into one project:

- ``--agents`` agents, every one with a heartbeat outside ``agents.heartbeat_window_s`` (so each
  is a candidate the sweep must judge: the worst case for the presence rule);
- for a share ``--connected`` of them, a live connection record of one of three daemons
  (``host-a``, ``host-b``, ``host-c``, agent *i* on daemon *i mod 3*), as the daemons' lease
  writers leave them: the record in ``_idx:presence_of:<agent>`` and the agent's expiry in
  ``_idx:presence``. The sweep must keep these active, and move the rest to inactive.

The first run moves the unconnected agents; the second shows the steady state, where every
candidate is kept because it is present elsewhere (what every sweep costs while 100 000 agents
stay connected without heartbeating). While each runs, a separate process calls ``redis_get`` in
a closed loop on a raw socket and records each call's latency.

Results: a table on stdout and JSON in ``bench/results/sweep-<UTC>.json``. Targets (issue 11):
the sweep at most 2 s at 100 000 agents over 3 daemons; ``redis_get`` p99 meanwhile at most 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # the project's own code, from this checkout
sys.path.insert(0, str(BENCH_DIR))  # the jobs benchmark's daemon, probe and table

import jobs_bench  # noqa: E402

from coordinatord import control  # noqa: E402
from coordinatord.keyspace import (  # noqa: E402
    AGENTS_ACTIVE,
    AGENTS_INDEX,
    PRESENCE_INDEX,
    PROJECTS_KEY,
    Namespace,
    agent_status_key,
    presence_records_key,
    project_host_field,
    project_id_for,
)

HOSTS = ("host-a", "host-b", "host-c")
WINDOW_S = 300  # agents.heartbeat_window_s default
FORGET_S = 3_600  # agents.forget_after_s default
RECORD_TTL_MS = 30 * 60 * 1000  # the records outlive the run: nothing renews them here
CHUNK = 5_000
TARGET_SWEEP_S = 2.0
TARGET_P99_MS = 20.0


def populate(daemon: jobs_bench.Daemon, project_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import redis

    ns = Namespace(project_id_for(str(project_root)))
    client = redis.Redis.from_url(daemon.backend_url)
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    started = time.monotonic()
    record = {"project": ns.project_id, "root": str(project_root), "host": HOSTS[0], "last_seen": time.time()}
    client.hset(PROJECTS_KEY, project_host_field(ns.project_id, HOSTS[0]), json.dumps(record))
    beat_ms = int(time.time() * 1000) - (WINDOW_S + 60) * 1000  # outside the window, inside forget
    connected = 0
    for first in range(0, args.agents, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + CHUNK, args.agents)):
            name = f"agent-{i:06d}"
            doc: dict[str, Any] = {
                "agent": name,
                "mode": None,
                "capabilities": [],
                "currentTask": None,
                "filesOpen": [],
            }
            pipe.set(ns.key(agent_status_key(name)), json.dumps(doc), ex=FORGET_S)
            pipe.zadd(ns.key(AGENTS_INDEX), {name: beat_ms})
            pipe.zadd(ns.key(AGENTS_ACTIVE), {name: beat_ms})
            if i < args.agents * args.connected:
                host = HOSTS[i % len(HOSTS)]
                member = json.dumps(
                    {"daemon": f"{host}:1:bench", "conn": f"c{i}", "host": host, "pid": 1000 + i},
                    separators=(",", ":"),
                )
                expiry = now_ms + RECORD_TTL_MS
                pipe.zadd(ns.key(presence_records_key(name)), {member: expiry})
                pipe.pexpire(ns.key(presence_records_key(name)), RECORD_TTL_MS)
                pipe.zadd(ns.key(PRESENCE_INDEX), {name: expiry})
                connected += 1
        pipe.execute()
    for key in (AGENTS_INDEX, AGENTS_ACTIVE):
        client.expire(ns.key(key), FORGET_S + 86_400)
    client.pexpire(ns.key(PRESENCE_INDEX), RECORD_TTL_MS)
    client.close()
    return {
        "project": ns.project_id,
        "agents": args.agents,
        "connected": connected,
        "per_daemon": {host: len(range(i, connected, len(HOSTS))) for i, host in enumerate(HOSTS)},
        "write_s": round(time.monotonic() - started, 1),
    }


def checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if row["job"] == "(no job: baseline)":
            continue
        if row["duration_ms"] is not None:
            seconds = row["duration_ms"] / 1000
            out.append(
                {
                    "check": f"{row['job']} <= {TARGET_SWEEP_S} s",
                    "value": seconds,
                    "ok": seconds <= TARGET_SWEEP_S,
                }
            )
        p99 = row["redis_get"]["p99_ms"]
        if p99 is not None:
            out.append(
                {
                    "check": f"redis_get p99 during {row['job']} <= {TARGET_P99_MS} ms",
                    "value": p99,
                    "ok": p99 <= TARGET_P99_MS,
                }
            )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="REDIS_URL for the daemon (default: its embedded Valkey)")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--connected", type=float, default=0.9, help="share of agents with a live record")
    parser.add_argument("--batch-size", type=int, help="jobs.batch_size (default: the daemon's)")
    parser.add_argument("--baseline-s", type=float, default=2.0, help="length of the no-job series")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/sweep-<UTC>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    loadavg = os.getloadavg()  # the figures are only as quiet as the machine
    out = args.json or BENCH_DIR / "results" / f"sweep-{stamp}.json"
    with jobs_bench.workspace(args.keep) as workdir:
        root = workdir / "project"
        root.mkdir()
        print("starting the daemon …", file=sys.stderr)
        daemon = jobs_bench.Daemon(workdir, args.redis_url, args.batch_size)
        try:
            print("writing agents and connection records …", file=sys.stderr)
            data = populate(daemon, root, args)
            print(f"written in {data['write_s']} s", file=sys.stderr)
            rows = [jobs_bench.measure(daemon, None, args.baseline_s)]
            for label in ("heartbeat_sweep", "heartbeat_sweep (again: all present)"):
                print(f"running {label} …", file=sys.stderr)
                row = jobs_bench.measure(daemon, "heartbeat_sweep", args.baseline_s)
                row["job"] = label
                rows.append(row)
            status = control.request(daemon.socket_path, "status")
        finally:
            code = daemon.stop()
        table, results = jobs_bench.render(rows), checks(rows)
        print(table)
        for check in results:
            print(f"{'ok ' if check['ok'] else 'MISS'}  {check['check']}: {check['value']:.3f}")
        document = {
            "when": stamp,
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg_before": loadavg,
            },
            "backend": status["backend"]["name"],
            "daemon_version": status["daemon"]["version"],
            "data": data,
            "rows": rows,
            "checks": results,
            "daemon_exit_code": code,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"results: {out}", file=sys.stderr)
        return 0 if code == 0 and all(check["ok"] for check in results) else 1


if __name__ == "__main__":
    sys.exit(main())
