"""Benchmark the daemon's jobs at scale: one heartbeat sweep, one lock reap and one archive run
over 100 000 agents, 100 000 locks and 10 000 sessions, and ``redis_get`` latency through the
socket while each runs.

    .venv/bin/python bench/jobs_bench.py                       # own daemon, embedded Valkey
    .venv/bin/python bench/jobs_bench.py --redis-url redis://127.0.0.1:6379/14
    .venv/bin/python bench/jobs_bench.py --agents 10000 --locks 10000 --sessions 1000

The script starts ``coordinatord serve`` with its scheduler off (``jobs.enabled = false``), so
jobs run only when asked: each is triggered with the ``run_job`` control command, exactly as a
tick would run it (leader lease included). The data is written straight into the daemon's
backend with redis-py pipelines, in the services' own layout, into one project whose folder is
a temporary directory (so the archiver can write there):

- agents: a share ``--stale`` heartbeated outside the window (they go inactive), a share
  ``--gone`` beyond ``agents.forget_after_s`` (inactive, then gone, locks released), the rest
  recently (nothing to do);
- locks: lock *i* held by agent *i mod agents* (and in that agent's set of held resources), so
  about ``--gone`` of them belong to gone agents; a share ``--missing`` are index entries
  without a lock (half past their lease, half deleted early), which the reaper removes;
- sessions: written through the session service; a share ``--idle`` last saved three hours ago
  (due for archiving), the rest just now.

While a job runs, a separate process (this script with ``--probe``) calls ``redis_get`` in a
closed loop on a raw socket connection (no shim) and records each call's latency; only calls
that started while the job ran are counted. A baseline series runs with no job.

Results: a table on stdout and JSON in ``bench/results/jobs-<UTC>.json``. Targets (issue 4):
sweep and reap at most 2 s each at 100 000; ``redis_get`` p99 during a job at most 20 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # the project's own code, from this checkout

from coordinatord import control  # noqa: E402
from coordinatord.errors import DaemonError  # noqa: E402
from coordinatord.keyspace import (  # noqa: E402
    AGENTS_ACTIVE,
    AGENTS_INDEX,
    LOCKS_INDEX,
    PROJECTS_KEY,
    Namespace,
    agent_locks_key,
    agent_status_key,
    lock_key,
    project_id_for,
)

VENV_BIN = Path(sys.prefix) / "bin"
WINDOW_S = 300  # agents.heartbeat_window_s default
FORGET_S = 3_600  # agents.forget_after_s default
LEASE_S = 3_600
CHUNK = 5_000
JOB_TIMEOUT_S = 600.0
TARGET_JOB_S = 2.0
TARGET_P99_MS = 20.0
PROBE_KEY = "bench:probe"


# --------------------------------------------------------------------------------------------
# The probe: a raw MCP client on the socket, in its own process.


def probe_main(socket_path: str) -> int:
    """Call redis_get back to back until a line arrives on stdin; print [[start, ms], ...]."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(socket_path)
    reader = sock.makefile("rb")

    def rpc(request_id: int, method: str, params: dict[str, Any]) -> None:
        line = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        sock.sendall(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        while True:
            reply = json.loads(reader.readline())
            if reply.get("id") == request_id:
                if "error" in reply or reply.get("result", {}).get("isError"):
                    raise SystemExit(f"probe: {method} failed: {reply}")
                return

    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "jobs-bench", "version": "1"},
    }
    rpc(1, "initialize", init)
    sock.sendall(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    samples: list[tuple[float, float]] = []
    request_id = 1
    params = {"name": "redis_get", "arguments": {"key": PROBE_KEY}}
    for _ in range(200):  # warm-up, not recorded
        request_id += 1
        rpc(request_id, "tools/call", params)
    print("ready", flush=True)
    while not stop.is_set():
        request_id += 1
        started = time.monotonic()
        rpc(request_id, "tools/call", params)
        samples.append((started, (time.monotonic() - started) * 1000))
    print(json.dumps(samples), flush=True)
    sock.close()
    return 0


class Probe:
    def __init__(self, socket_path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--probe", str(socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe did not start")

    def stop(self) -> list[tuple[float, float]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        samples = [(float(s[0]), float(s[1])) for s in json.loads(self.proc.stdout.readline())]
        self.proc.wait(timeout=30)
        return samples


def latency(samples: list[tuple[float, float]], start: float, end: float) -> dict[str, Any]:
    ms = sorted(lat for at, lat in samples if start <= at <= end)
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))], 3)

    return {"n": len(ms), "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": round(ms[-1], 3)}


# --------------------------------------------------------------------------------------------
# The daemon.


class Daemon:
    def __init__(self, workdir: Path, redis_url: str | None, batch_size: int | None) -> None:
        self.workdir = workdir
        self.socket_path = workdir / "c.sock"
        self.state_dir = workdir / "state"
        config = workdir / "empty.toml"
        config.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATORD_", "UPSTASH_"))}
        env.pop("REDIS_URL", None)
        env.update({"COORDINATORD_CONFIG": str(config), "COORDINATORD_JOBS__ENABLED": "false"})
        if redis_url:
            env["REDIS_URL"] = redis_url
        if batch_size:
            env["COORDINATORD_JOBS__BATCH_SIZE"] = str(batch_size)
        self.redis_url = redis_url
        args = [str(VENV_BIN / "coordinatord"), "serve", "--socket", str(self.socket_path)]
        args += ["--state-dir", str(self.state_dir)]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(DaemonError):  # not answering yet
                status = control.request(self.socket_path, "status", timeout=5)
                if status["backend"]["healthy"]:
                    self.status = status
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"daemon did not start; see {self.state_dir / 'coordinatord.log'}")
            time.sleep(0.1)

    @property
    def backend_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        from coordinatord.store.embedded import embedded_socket_path

        return f"unix://{embedded_socket_path(self.state_dir)}"

    def run_job(self, name: str) -> tuple[float, dict[str, Any]]:
        started = time.monotonic()
        state = control.request(self.socket_path, "run_job", {"name": name}, timeout=JOB_TIMEOUT_S)
        return time.monotonic() - started, state

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


# --------------------------------------------------------------------------------------------
# Data.


def populate(daemon: Daemon, project_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import redis

    ns = Namespace(project_id_for(str(project_root)))
    client = redis.Redis.from_url(daemon.backend_url)
    rng = random.Random(4)
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    started = time.monotonic()
    record = {"root": str(project_root), "host": socket.gethostname(), "last_seen": time.time()}
    client.hset(PROJECTS_KEY, ns.project_id, json.dumps(record))

    stale_n, gone_n = int(args.agents * args.stale), int(args.agents * args.gone)
    groups = {"fresh": 0, "stale": 0, "gone": 0}
    pipe = client.pipeline(transaction=False)
    beats: dict[str, float] = {}
    for i in range(args.agents):
        name = f"agent-{i:06d}"
        if i < gone_n:
            age_s, group = FORGET_S + 60 + rng.uniform(0, 600), "gone"
        elif i < gone_n + stale_n:
            age_s, group = rng.uniform(WINDOW_S + 10, FORGET_S - 60), "stale"
        else:
            age_s, group = rng.uniform(0, WINDOW_S / 2), "fresh"
        groups[group] += 1
        beat_ms = now_ms - int(age_s * 1000)
        beats[name] = beat_ms
        iso = (
            datetime.fromtimestamp(beat_ms / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        doc = {
            "agent": name, "mode": "code", "capabilities": ["python"], "currentTask": f"task-{i}",
            "filesOpen": [f"src/file-{i:06d}.py"], "startedAt": iso, "lastHeartbeat": iso,
        }  # fmt: skip
        pipe.set(ns.key(agent_status_key(name)), json.dumps(doc), ex=FORGET_S)
        if len(pipe) >= CHUNK:
            pipe.execute()
    pipe.execute()
    names = list(beats)
    for start in range(0, len(names), CHUNK):
        mapping = {n: beats[n] for n in names[start : start + CHUNK]}
        client.zadd(ns.key(AGENTS_INDEX), mapping)
        client.zadd(ns.key(AGENTS_ACTIVE), mapping)
    client.expire(ns.key(AGENTS_INDEX), FORGET_S)
    client.expire(ns.key(AGENTS_ACTIVE), FORGET_S + 86_400)

    missing_n = int(args.locks * args.missing)
    index: dict[str, int] = {}
    lock_groups = {"held": 0, "held_by_gone": 0, "missing": 0}
    for i in range(args.locks):
        resource = f"src/file-{i:06d}.py"
        if i >= args.locks - missing_n:
            # Half past their lease, half deleted before it ended: no lock behind the entry.
            index[resource] = now_ms - 5_000 if i % 2 else now_ms + LEASE_S * 1000
            lock_groups["missing"] += 1
            continue
        holder = names[i % len(names)] if names else "nobody"
        lock_groups["held_by_gone" if i % max(1, len(names)) < gone_n else "held"] += 1
        lock_doc: dict[str, object] = {
            "token": f"{i:032x}",
            "agent": holder,
            "fencing": 1_000_000 + i,
            "acquired_at_ms": now_ms - 10_000,
        }
        pipe.set(ns.key(lock_key(resource)), json.dumps(lock_doc, separators=(",", ":")), px=LEASE_S * 1000)
        pipe.sadd(ns.key(agent_locks_key(holder)), resource)
        pipe.pexpire(ns.key(agent_locks_key(holder)), LEASE_S * 1000)
        index[resource] = now_ms + LEASE_S * 1000
        if len(pipe) >= CHUNK:
            pipe.execute()
    pipe.execute()
    resources = list(index)
    for start in range(0, len(resources), CHUNK):
        client.zadd(ns.key(LOCKS_INDEX), {r: index[r] for r in resources[start : start + CHUNK]})
    client.pexpire(ns.key(LOCKS_INDEX), LEASE_S * 1000)
    client.close()

    idle_n = int(args.sessions * args.idle)
    import anyio

    anyio.run(write_sessions, daemon.backend_url, ns, args.sessions, idle_n)
    return {
        "project": ns.project_id,
        "agents": groups,
        "locks": lock_groups,
        "sessions": {"idle": idle_n, "recent": args.sessions - idle_n},
        "write_s": round(time.monotonic() - started, 2),
    }


async def write_sessions(url: str, ns: Namespace, count: int, idle: int) -> None:
    import anyio

    from coordinatord.services.sessions import SessionService
    from coordinatord.settings import BackendSettings, SessionSettings
    from coordinatord.store import RedisStore

    store = RedisStore.from_url(url, BackendSettings())
    three_hours_ago = time.time() - 3 * 3_600
    old = SessionService(store, SessionSettings(), lambda: three_hours_ago)
    new = SessionService(store, SessionSettings())
    try:

        async def writer(first: int) -> None:
            for i in range(first, count, 32):
                service = old if i < idle else new
                session = f"session-{i:05d}"
                await service.save(ns, session, {"task": f"task-{i}", "step": i % 7}, agent="bench")
                await service.append(ns, session, "user", f"turn of session {i}", agent="bench")

        async with anyio.create_task_group() as tg:
            for first in range(32):
                tg.start_soon(writer, first)
    finally:
        await store.aclose()


# --------------------------------------------------------------------------------------------
# The run.


def measure(daemon: Daemon, job: str | None, baseline_s: float) -> dict[str, Any]:
    probe = Probe(daemon.socket_path)
    start = time.monotonic()
    state: dict[str, Any] = {}
    if job is None:
        time.sleep(baseline_s)
        wall = baseline_s
    else:
        wall, state = daemon.run_job(job)
    end = time.monotonic()
    samples = probe.stop()
    row = {
        "job": job or "(no job: baseline)",
        "wall_s": round(wall, 3),
        "duration_ms": state.get("last_duration_ms"),
        "outcome": state.get("last_outcome"),
        "counts": state.get("last_counts", {}),
        "redis_get": latency(samples, start, end),
    }
    return row


def render(rows: list[dict[str, Any]]) -> str:
    headers = ["job", "run (ms)", "outcome", "redis_get n", "p50 ms", "p99 ms", "max ms", "counts"]
    table = [
        [
            row["job"],
            "-" if row["duration_ms"] is None else f"{row['duration_ms']:.0f}",
            row["outcome"] or "-",
            str(row["redis_get"]["n"]),
            *(
                "-" if row["redis_get"][k] is None else f"{row['redis_get'][k]:.2f}"
                for k in ("p50_ms", "p99_ms", "max_ms")
            ),
            " ".join(f"{k}={v}" for k, v in row["counts"].items()),
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join(lines)


def checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if row["job"] in ("heartbeat_sweep", "lock_reaper") and row["duration_ms"] is not None:
            out.append(
                {"check": f"{row['job']} run <= {TARGET_JOB_S} s", "value": row["duration_ms"] / 1000,
                 "ok": row["duration_ms"] / 1000 <= TARGET_JOB_S}
            )  # fmt: skip
        p99 = row["redis_get"]["p99_ms"]
        if row["job"] != "(no job: baseline)" and p99 is not None:
            out.append(
                {"check": f"redis_get p99 during {row['job']} <= {TARGET_P99_MS} ms", "value": p99,
                 "ok": p99 <= TARGET_P99_MS}
            )  # fmt: skip
    return out


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jb-", dir="/tmp"))
    failed = False
    try:
        yield path
    except BaseException:
        failed = True
        raise
    finally:
        if failed or keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probe", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help="REDIS_URL for the daemon (default: its embedded Valkey)")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--locks", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--stale", type=float, default=0.1, help="share of agents past the window")
    parser.add_argument("--gone", type=float, default=0.1, help="share of agents past forget_after_s")
    parser.add_argument("--missing", type=float, default=0.1, help="share of lock index entries with no lock")
    parser.add_argument("--idle", type=float, default=0.1, help="share of sessions due for archiving")
    parser.add_argument("--batch-size", type=int, help="jobs.batch_size (default: the daemon's)")
    parser.add_argument("--baseline-s", type=float, default=2.0, help="length of the no-job series")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/jobs-<UTC>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        return probe_main(args.probe)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    loadavg = os.getloadavg()  # the figures are only as quiet as the machine
    out = args.json or BENCH_DIR / "results" / f"jobs-{stamp}.json"
    with workspace(args.keep) as workdir:
        root = workdir / "project"
        root.mkdir()
        print("starting the daemon …", file=sys.stderr)
        daemon = Daemon(workdir, args.redis_url, args.batch_size)
        try:
            print("writing agents, locks and sessions …", file=sys.stderr)
            data = populate(daemon, root, args)
            print(f"written in {data['write_s']} s", file=sys.stderr)
            jobs = {job["name"] for job in control.request(daemon.socket_path, "status")["jobs"]}
            rows = [measure(daemon, None, args.baseline_s)]
            ran: set[str] = set()
            # The repeat runs show the steady state: nothing left to do but walk the indexes.
            for job in (
                "heartbeat_sweep",
                "lock_reaper",
                "session_archiver",
                "heartbeat_sweep",
                "lock_reaper",
            ):
                if job not in jobs:
                    print(f"skipping {job}: the daemon has no such job", file=sys.stderr)
                    continue
                print(f"running {job} …", file=sys.stderr)
                row = measure(daemon, job, args.baseline_s)
                if job in ran:
                    row["job"] = f"{job} (again)"
                ran.add(job)
                rows.append(row)
        finally:
            code = daemon.stop()
        table, results = render(rows), checks(rows)
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
            "backend": daemon.status["backend"]["name"],
            "daemon_version": daemon.status["daemon"]["version"],
            "data": data,
            "rows": rows,
            "checks": results,
            "daemon_exit_code": code,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"results: {out}", file=sys.stderr)
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
