"""coordinatord side by side with the official Redis MCP server, and a floor, on one Valkey.

    .venv/bin/python bench/compare.py                              # its own Valkey on loopback TCP
    .venv/bin/python bench/compare.py --official /tmp/rms/bin/redis-mcp-server
    .venv/bin/python bench/compare.py --redis-url redis://127.0.0.1:6379/12 --clients 1,4,16

The same raw JSON-RPC workload against three stdio MCP servers, one server process per client
the way an editor starts them:

- **coordinatord**: one daemon on the Valkey, a ``coordinatord shim`` per client (tools
  ``redis_set``/``redis_get``);
- **official**: ``redis-mcp-server`` (``pip install redis-mcp-server``; found with
  ``--official``, on ``PATH`` or in this venv, else its rows say it is missing), one process per
  client on the same Valkey (tools ``set``/``get``);
- **floor**: ``bench/echo_server.py``, a stdlib server that answers every request and stores
  nothing: what any stdio MCP server costs at least here.

Figures: cold start (spawn → the ``initialize`` reply, median of ``--starts``); for each count
of ``--clients``, every client alternating ``set`` and ``get`` of a 100-byte value on its own
key in a closed loop (a worker process per client, started together): aggregate calls/s, p50
and p99 per call; and the resident memory of the coordinatord daemon idle (after start-up) and
after the load. Ratios: coordinatord against the official server (how many times faster) and
against the floor. The client is bench/bench.py's (standard library only).

Results: a table on stdout and JSON in ``bench/results/compare-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench  # noqa: E402

VALUE = "v" * 100
SERVERS = ("coordinatord", "official", "floor")


@dataclass(frozen=True)
class Server:
    """How to start one client's server process, and its two tools."""

    name: str
    command: tuple[str, ...]
    set_tool: str
    get_tool: str
    cwd: str

    def calls(self, key: str) -> tuple[bench.ToolCall, bench.ToolCall]:
        return (
            bench.ToolCall(self.set_tool, {"key": key, "value": VALUE}),
            bench.ToolCall(self.get_tool, {"key": key}),
        )


@dataclass
class Row:
    server: str
    figure: str
    clients: int  # 0: not a load figure
    value: float | None
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


# --------------------------------------------------------------------------------------------
# One client: a worker process of this script, so that 16 clients are 16 processes (the GIL of
# one driver would otherwise be what is measured).


def worker_main(args: argparse.Namespace) -> int:
    server = Server(**json.loads(args.server))
    client = open_client(server)
    first, second = server.calls(args.key)
    for index in range(args.warmup):
        client.call(first if index % 2 == 0 else second)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    latencies: list[float] = []
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux
    for index in range(args.calls):
        elapsed, _ = client.timed_call(first if index % 2 == 0 else second)
        latencies.append(elapsed)
    end = time.monotonic()
    with contextlib.suppress(bench.BenchError):  # the official server exits 1 on stdin EOF
        client.close()
    print(json.dumps({"start": start, "end": end, "latencies": latencies}), flush=True)
    return 0


def open_client(server: Server) -> bench.McpClient:
    client = bench.McpClient(bench.ShimChannel(list(server.command), Path(server.cwd)))
    client.initialize()
    return client


def cold_start(server: Server) -> float:
    """Spawn the server, send ``initialize``, and time until its reply line arrives."""
    started = time.perf_counter()
    channel = bench.ShimChannel(list(server.command), Path(server.cwd))
    channel.send(bench.request_line(1, "initialize", bench.INITIALIZE_PARAMS))
    line = channel.readline()
    elapsed = time.perf_counter() - started
    if not line:
        raise bench.BenchError(f"{server.name} closed stdout before answering initialize")
    bench.checked(json.loads(line), "initialize")
    with contextlib.suppress(bench.BenchError):  # the official server exits 1 on stdin EOF
        channel.close()
    return elapsed


def load(server: Server, clients: int, calls: int, warmup: int) -> bench.LatencyFigure:
    """``clients`` workers at once, ``calls`` measured calls each."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--server",
        json.dumps(asdict(server)),
    ]
    command += ["--calls", str(calls), "--warmup", str(warmup)]
    workers = [
        subprocess.Popen(
            [*command, "--key", f"cmp:{server.name}:{index}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=server.cwd,
        )
        for index in range(clients)
    ]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.callback(reap, worker)
        for worker in workers:
            bench.expect_line(worker, "ready")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
        results = [json.loads(bench.expect_line(worker, None)) for worker in workers]
    latencies = [s for result in results for s in result["latencies"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return bench.latency_figure("set/get", server.name, clients, latencies, wall)


def reap(worker: subprocess.Popen[bytes]) -> None:
    # The official server's process may exit 1 when its stdin closes: only a hang is an error.
    if worker.stdin is not None:
        worker.stdin.close()
    try:
        worker.wait(timeout=bench.REPLY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise bench.BenchError(f"worker {worker.pid} did not exit") from None


# --------------------------------------------------------------------------------------------
# The servers.


def find_official(given: str | None) -> str | None:
    if given:
        return given
    found = shutil.which("redis-mcp-server")
    beside = bench.VENV_BIN / "redis-mcp-server"
    return found or (str(beside) if beside.exists() else None)


@contextlib.contextmanager
def valkey(redis_url: str | None) -> Iterator[str]:
    """The Valkey both servers use: the one given, or one started here on loopback TCP (the test
    suite's fixture, as bench/cluster_bench.py uses; imported only here, so the workers stay
    light)."""
    if redis_url:
        yield redis_url
        return
    sys.path.insert(0, str(BENCH_DIR.parent))
    from tests.support import free_tcp_port, valkey_server

    with valkey_server(tcp_port=free_tcp_port()) as server:
        yield server.tcp_url


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


# --------------------------------------------------------------------------------------------
# Driver.


def measure(server: Server, args: argparse.Namespace, clients: Sequence[int], rows: list[Row]) -> None:
    for _ in range(bench.COLD_START_DISCARDED):
        cold_start(server)
    starts = [
        cold_start(server) for _ in range(args.starts if server.name != "official" else args.official_starts)
    ]
    rows.append(Row(server.name, "cold start", 0, statistics.median(starts) * 1000, "ms"))
    for count in clients:
        figure = load(server, count, args.calls, args.warmup)
        rows.append(
            Row(server.name, "set/get", count, figure.calls_per_s, "calls/s", figure.p50_ms, figure.p99_ms)
        )
        print(f"{server.name}: {count} client(s) done", file=sys.stderr)


def ratios(rows: Sequence[Row]) -> list[list[str]]:
    """coordinatord against the official server and the floor, figure by figure."""
    by = {(row.server, row.figure, row.clients): row for row in rows}
    out: list[list[str]] = []
    for (server, figure, clients), row in by.items():
        if server != "coordinatord" or row.value is None or row.unit == "MB":
            continue
        cells = [label(row)]
        for other in ("official", "floor"):
            theirs = by.get((other, figure, clients))
            if theirs is None or theirs.value is None:
                cells.append("-")
            elif figure == "cold start":
                cells.append(
                    f"{theirs.value / row.value:.2f}x faster"
                    if other == "official"
                    else f"+{row.value - theirs.value:.0f} ms"
                )
            else:
                cells.append(f"{row.value / theirs.value:.2f}x")
        out.append(cells)
    return out


def label(row: Row) -> str:
    return row.figure + (f" x{row.clients}" if row.clients else "")


def render(rows: Sequence[Row]) -> str:
    table = [
        [
            row.server,
            label(row),
            "-" if row.value is None else f"{row.value:,.1f} {row.unit}",
            "-" if row.p50_ms is None else f"{row.p50_ms:.2f}",
            "-" if row.p99_ms is None else f"{row.p99_ms:.2f}",
            row.note,
        ]
        for row in rows
    ]
    parts = [bench.format_table(["server", "figure", "result", "p50 ms", "p99 ms", "note"], table)]
    parts.append("")
    parts.append(bench.format_table(["coordinatord", "vs official", "vs floor"], ratios(rows)))
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="coordinatord vs the official Redis MCP server and a floor.")
    parser.add_argument("--redis-url", help="the Valkey/Redis both use (default: one started here on TCP)")
    parser.add_argument("--official", help="the redis-mcp-server executable (default: PATH, then this venv)")
    parser.add_argument("--clients", default="1,4,16", help="client counts, comma-separated (default 1,4,16)")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per client (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured calls per client (default 100)")
    parser.add_argument("--starts", type=int, default=20, help="cold starts measured (default 20)")
    parser.add_argument(
        "--official-starts", type=int, default=5, help="cold starts of the official server (5)"
    )
    parser.add_argument("--json", type=Path, help="results file (default bench/results/compare-<UTC>.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    clients = [int(part) for part in args.clients.split(",") if part.strip()]
    official = find_official(args.official)
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="cmp-", dir="/tmp"))
    with valkey(args.redis_url) as url:
        target = bench.start_daemon(workdir, url)
        try:
            assert target.daemon is not None
            idle = rss_mb(target.daemon.pid)
            shim = tuple(bench.shim_command(target))
            measure(Server("coordinatord", shim, "redis_set", "redis_get", str(workdir)), args, clients, rows)
            after = rss_mb(target.daemon.pid)
            rows.append(Row("coordinatord", "daemon RSS idle", 0, idle, "MB"))
            rows.append(Row("coordinatord", "daemon RSS after the load", 0, after, "MB"))
        finally:
            bench.stop_daemon(target)
        if official is None:
            rows.append(
                Row(
                    "official",
                    "cold start",
                    1,
                    None,
                    "ms",
                    note="not installed: pip install redis-mcp-server",
                )
            )
        else:
            command = (official, "--url", url)
            measure(Server("official", command, "set", "get", str(workdir)), args, clients, rows)
        floor = (sys.executable, str(BENCH_DIR / "echo_server.py"))
        measure(Server("floor", floor, "set", "get", str(workdir)), args, clients, rows)
    print(render(rows))
    out = args.json or BENCH_DIR / "results" / f"compare-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    bench.write_json(
        out,
        {
            "benchmark": "compare",
            "when": datetime.now(UTC).isoformat(),
            "machine": bench.machine_info(),
            "source": bench.source_info(),
            "official": official,
            "settings": {
                "clients": clients,
                "calls": args.calls,
                "warmup": args.warmup,
                "starts": args.starts,
            },
            "rows": [asdict(row) for row in rows],
        },
    )
    print(f"results: {out}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("REDIS_URL", None)  # the servers get their backend from the command line only
    sys.exit(main())
