"""Benchmark coordinatord from the outside: shim start-up and per-call latency.

Standard library only: it measures our processes (daemon, shim) as an editor sees them, and
must not share their imports. See bench/README.md for what each figure means.

    .venv/bin/python bench/bench.py                        # own daemon, embedded Valkey
    .venv/bin/python bench/bench.py --redis-url redis://127.0.0.1:6379/14 --clients 16

To add a series, append a :class:`Series` to ``SERIES``: it runs through the shim and directly on
the socket, and can be named by ``--clients`` runs (``--concurrent-series``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "bench", "version": "1"}
AGENT = "bench"
VALUE = "v" * 100
KEY = "bench:k"
BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.prefix) / "bin"  # run this script with the venv's python
DAEMON_START_TIMEOUT_S = 60.0
DAEMON_STOP_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 30.0
COLD_START_DISCARDED = 3

TARGET_COLD_START_MEDIAN_MS = 50.0
TARGET_GET_VIA_SHIM_P50_MS = 1.5
TARGET_RECONNECT_MS = 1000.0
TARGET_SHIM_REGRESSION = 0.05  # redis_get via shim p50 at most 5 % above the --compare-shim tree's


# --------------------------------------------------------------------------------------------
# Series: what to call. Add new ones here.


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    timed: bool = True  # False for bookkeeping calls inside a series (e.g. re-creating a task)


Previous = dict[str, Any] | None  # the previous call's structuredContent
Builder = Callable[[int, Previous], ToolCall]


@dataclass(frozen=True)
class Series:
    """One measured kind of call. ``build(i, previous)`` gives the i-th call, seeing the
    previous reply's structured content, so a series may chain tools (lock_acquire on even i,
    lock_release of the token it returned on odd i)."""

    name: str
    build: Builder
    setup: tuple[ToolCall, ...] = ()
    cleanup: tuple[ToolCall, ...] = ()


LOCK = "bench/resource"
SESSION_TURNS = 4000  # below sessions.max_turns (5000): each session id takes this many turns
TASK_STEPS = 10  # a realistic task; the seed's example has 3 steps


def lock_pair(i: int, previous: Previous) -> ToolCall:
    if i % 2 == 0:
        return ToolCall("lock_acquire", {"resource": LOCK, "ttl": 60})
    token = (previous or {}).get("token", "")
    return ToolCall("lock_release", {"resource": LOCK, "token": token})


FILES = ["bench/src/**", "bench/README.md"]


def files_pair(i: int, previous: Previous) -> ToolCall:
    """files_reserve on even i, files_release of the id it returned on odd i (issue 12)."""
    if i % 2 == 0:
        return ToolCall("files_reserve", {"paths": FILES, "ttl_s": 60, "reason": "bench"})
    return ToolCall("files_release", {"id": (previous or {}).get("id") or ""})


def session_append(i: int, previous: Previous) -> ToolCall:
    session = f"bench-{i // SESSION_TURNS}"
    return ToolCall("session_append", {"session_id": session, "role": "user", "message": VALUE})


def task_advance(i: int, previous: Previous) -> ToolCall:
    task = f"bench-task-{i // (TASK_STEPS + 1)}"
    if i % (TASK_STEPS + 1) == 0:
        steps = [f"step-{n}" for n in range(TASK_STEPS)]
        return ToolCall("task_create", {"task_id": task, "steps": steps, "replace": True}, timed=False)
    return ToolCall("task_advance", {"task_id": task})


def message_round_trip(i: int, previous: Previous) -> ToolCall:
    """A send to the bench's own agent, then the inbox page with just that message; an untimed
    ack after each pair keeps the inbox from filling (acknowledged mail makes room)."""
    step = i % 3
    if step == 0:
        return ToolCall("message_send", {"to": AGENT, "subject": "bench", "body": VALUE})
    if step == 1:
        since = str(int((previous or {}).get("id", "1")) - 1)
        return ToolCall("message_inbox", {"since": since, "limit": 1})
    ids = [m["id"] for m in (previous or {}).get("messages", [])] or ["1"]
    return ToolCall("message_ack", {"ids": ids}, timed=False)


CLAIM_TASKS = 50  # task ids the claim series cycles through (each started over with replace)


def task_claim(i: int, previous: Previous) -> ToolCall:
    """create (ready at once) -> claim (timed) -> advance (completes it, ending the claim)."""
    task = f"bench-claim-{(i // 3) % CLAIM_TASKS}"
    if i % 3 == 0:
        return ToolCall("task_create", {"task_id": task, "steps": ["only"], "replace": True}, timed=False)
    if i % 3 == 1:
        return ToolCall("task_claim", {"task_id": task})
    return ToolCall("task_advance", {"task_id": task}, timed=False)


def raw_keys(*keys: str) -> tuple[ToolCall, ...]:
    return (ToolCall("redis_del", {"keys": list(keys)}),)


SERIES: tuple[Series, ...] = (
    Series("redis_set", lambda i, _: ToolCall("redis_set", {"key": KEY, "value": VALUE})),
    Series(
        "redis_get",
        lambda i, _: ToolCall("redis_get", {"key": KEY}),
        setup=(ToolCall("redis_set", {"key": KEY, "value": VALUE}),),
        cleanup=raw_keys(KEY),
    ),
    Series("lock_acquire+lock_release", lock_pair),
    Series("files_reserve+files_release", files_pair),
    Series(
        "ratelimit_hit",
        lambda i, _: ToolCall("ratelimit_hit", {"service": "bench", "limit": 100_000, "window_s": 10}),
        cleanup=(ToolCall("ratelimit_reset", {"service": "bench"}),),
    ),
    Series(
        "session_append",
        session_append,
        cleanup=raw_keys(
            *(k for n in range(20) for k in (f"agent:context:bench-{n}", f"agent:context:bench-{n}:history"))
        ),
    ),
    Series(
        "task_advance",
        task_advance,
        cleanup=raw_keys(*(f"task:progress:bench-task-{n}" for n in range(200))),
    ),
    # --- messages: a send and the inbox page that shows it (they expire with messages.ttl_s) ---
    Series("message_send+message_inbox", message_round_trip),
    # The task graph: the claim itself (its graph entries expire with the task's TTL).
    Series(
        "task_claim",
        task_claim,
        cleanup=raw_keys(*(f"task:progress:bench-claim-{n}" for n in range(CLAIM_TASKS))),
    ),
)
# The target: each coordination call's p50 within this factor of redis_get's.
TARGET_FACTOR_OF_GET = 2.0
SERIES_BY_NAME = {series.name: series for series in SERIES}


# --------------------------------------------------------------------------------------------
# Transports and a minimal MCP client.


class Channel(Protocol):
    def send(self, data: bytes) -> None: ...
    def readline(self) -> bytes: ...
    def close(self) -> None: ...


class ShimChannel:
    """An editor's view: a ``coordinatord shim`` process on pipes."""

    def __init__(self, command: Sequence[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd, env=clean_env()
        )
        if self.proc.stdin is None or self.proc.stdout is None:  # cannot happen with PIPE
            raise BenchError("shim started without pipes")
        self._stdin = self.proc.stdin
        self._stdout = self.proc.stdout

    def send(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def readline(self) -> bytes:
        return self._stdout.readline()

    def close(self) -> None:
        """Close stdin (the shim half-closes the socket), drain, and insist on exit code 0."""
        self._stdin.close()
        self._stdout.read()
        code = self.proc.wait(timeout=REPLY_TIMEOUT_S)
        if code != 0:
            raise BenchError(f"shim exited with {code}")


class SocketChannel:
    """A raw client on the daemon's socket: no preamble, so the default project."""

    def __init__(self, path: str) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(REPLY_TIMEOUT_S)
        self._sock.connect(path)
        self._reader = self._sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def readline(self) -> bytes:
        return self._reader.readline()

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


class BenchError(Exception):
    pass


def request_line(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


INITIALIZE_PARAMS: dict[str, Any] = {
    "protocolVersion": PROTOCOL_VERSION,
    "capabilities": {},
    "clientInfo": CLIENT_INFO,
}


def read_reply(channel: Channel, request_id: int) -> dict[str, Any]:
    """The reply to ``request_id``, skipping notifications the server sends in between."""
    while True:
        line = channel.readline()
        if not line:
            raise BenchError(f"connection closed while waiting for reply {request_id}")
        message = json.loads(line)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message


NEW_ERA_META: dict[str, Any] = {
    # What mcp.Client(mode="auto") stamps on every request once server/discover picked the
    # 2026-07-28 era (mcp/client/session.py, _make_modern_stamp): no handshake, the envelope
    # in each request's params._meta.
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "coordinatord-bench", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
ERAS = ("legacy", "new")
TARGET_NEW_ERA_FACTOR = 1.10  # new-era redis_get via shim p50 at most 10 % above legacy's, same run


class McpClient:
    def __init__(self, channel: Channel, era: str = "legacy") -> None:
        self.channel = channel
        self._next_id = 0
        self.era = era

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "_meta": NEW_ERA_META} if self.era == "new" else params

    def discover(self) -> None:
        """The new era's opening: ``server/discover``, which also decides the connection's era."""
        self.request("server/discover", {})

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request(self, method: str, params: dict[str, Any], check: bool = True) -> dict[str, Any]:
        request_id = self._id()
        self.channel.send(request_line(request_id, method, self._params(params)))
        reply = read_reply(self.channel, request_id)
        return checked(reply, method) if check else reply

    def initialize(self) -> None:
        self.request("initialize", INITIALIZE_PARAMS)
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        self.channel.send(json.dumps(note).encode() + b"\n")

    def call(self, call: ToolCall) -> dict[str, Any]:
        return self.request("tools/call", {"name": call.name, "arguments": call.arguments})

    def timed_call(self, call: ToolCall) -> tuple[float, dict[str, Any]]:
        """Seconds from writing the request to having parsed its reply, and the reply."""
        request_id = self._id()
        line = request_line(
            request_id, "tools/call", self._params({"name": call.name, "arguments": call.arguments})
        )
        started = time.perf_counter()
        self.channel.send(line)
        reply = read_reply(self.channel, request_id)
        elapsed = time.perf_counter() - started
        checked(reply, call.name)
        return elapsed, reply

    def close(self) -> None:
        self.channel.close()


def checked(reply: dict[str, Any], what: str) -> dict[str, Any]:
    if "error" in reply:
        raise BenchError(f"{what}: JSON-RPC error {reply['error']}")
    result = reply.get("result")
    if isinstance(result, dict) and result.get("isError"):
        raise BenchError(f"{what}: tool error {result.get('content')}")
    return reply


# --------------------------------------------------------------------------------------------
# Figures.


@dataclass
class StartupFigure:
    name: str
    n: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float


@dataclass
class LatencyFigure:
    name: str
    transport: str
    series: str
    clients: int
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    calls_per_s: float


def percentile(sorted_ms: Sequence[float], pct: int) -> float:
    if len(sorted_ms) == 1:
        return sorted_ms[0]
    return statistics.quantiles(sorted_ms, n=100, method="inclusive")[pct - 1]


def startup_figure(name: str, seconds: Sequence[float]) -> StartupFigure:
    ms = sorted(s * 1000 for s in seconds)
    return StartupFigure(name, len(ms), statistics.median(ms), percentile(ms, 90), ms[0], ms[-1])


def latency_figure(
    series: str, transport: str, clients: int, seconds: Sequence[float], wall_s: float
) -> LatencyFigure:
    ms = sorted(s * 1000 for s in seconds)
    name = f"{series} via {transport}" + (f" x{clients} clients" if clients > 1 else "")
    return LatencyFigure(
        name=name,
        transport=transport,
        series=series,
        clients=clients,
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=statistics.fmean(ms),
        min_ms=ms[0],
        max_ms=ms[-1],
        calls_per_s=len(ms) / wall_s,
    )


# --------------------------------------------------------------------------------------------
# The daemon under test.


@dataclass
class Target:
    socket: str
    workdir: Path
    backend: str
    daemon: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready_event: dict[str, Any] | None = None
    config: Path | None = None  # the config file of a daemon this script started (shims read it too)
    daemon_pid: int | None = None  # the daemon now serving, when a shim started it (not our child)


def clean_env() -> dict[str, str]:
    """Our environment without anything that would point the daemon or a shim elsewhere."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COORDINATORD_", "UPSTASH_")) and key != "REDIS_URL"
    }


def write_config(workdir: Path, redis_url: str | None, backend_mode: str = "single") -> Path:
    """The daemon's whole configuration in one file, which the shims are given too: a daemon a
    shim starts (the reconnect series) then runs exactly as the first one did."""
    config = workdir / "config.toml"
    lines = [
        f"socket = {json.dumps(str(workdir / 'c.sock'))}",
        f"state_dir = {json.dumps(str(workdir / 'state'))}",
    ]
    if redis_url:
        lines += ["[backend]", f"url = {json.dumps(redis_url)}", f"mode = {json.dumps(backend_mode)}"]
    # Every series' tools, whatever the default selection is (it leaves some groups out).
    lines += ["[tools]", 'groups = ["full"]']
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)  # it may hold a password
    return config


def start_daemon(workdir: Path, redis_url: str | None, backend_mode: str = "single") -> Target:
    """``backend_mode``: ``backend.mode`` with ``redis_url`` (``cluster``: the URL names one node)."""
    if not (VENV_BIN / "coordinatord").exists():
        raise BenchError(f"no coordinatord in {VENV_BIN}: run this script with the project venv's python")
    sock = str(workdir / "c.sock")
    log_path = workdir / "daemon.out"
    config = write_config(workdir, redis_url, backend_mode)
    command = [str(VENV_BIN / "coordinatord"), "serve", "--config", str(config)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=workdir, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    backend = mask_url(redis_url) if redis_url else "embedded valkey"
    target = Target(sock, workdir, backend, proc, log_path, config=config)
    try:
        wait_until_serving(target)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    target.ready_event = daemon_ready_event(workdir / "state" / "coordinatord.log")
    return target


def daemon_ready_event(log_file: Path) -> dict[str, Any] | None:
    """The daemon's own ``daemon_ready`` log record: the backend it really uses, its start-up time."""
    with contextlib.suppress(OSError):
        for line in reversed(log_file.read_text(errors="replace").splitlines()):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == "daemon_ready":
                    return record
    return None


def wait_until_serving(target: Target) -> None:
    """Poll until the socket accepts a client and ``redis_ping`` answers (the backend is up)."""
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if target.daemon is not None and target.daemon.poll() is not None:
            raise BenchError(f"daemon exited early with {target.daemon.returncode}:\n{log_tail(target)}")
        try:
            ping(target.socket)
            return
        except (OSError, BenchError) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise BenchError(
        f"daemon did not serve on {target.socket} within {DAEMON_START_TIMEOUT_S} s "
        f"(last: {last_error})\n{log_tail(target)}"
    )


def ping(sock: str) -> None:
    client = McpClient(SocketChannel(sock))
    try:
        client.initialize()
        client.call(ToolCall("redis_ping", {}))
    finally:
        client.close()


def stop_daemon(target: Target) -> None:
    if target.daemon_pid is not None:
        stop_foreign_daemon(target.daemon_pid)
        return
    if target.daemon is None:
        return
    target.daemon.send_signal(signal.SIGTERM)
    try:
        code = target.daemon.wait(timeout=DAEMON_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        target.daemon.kill()
        target.daemon.wait()
        raise BenchError(f"daemon ignored SIGTERM for {DAEMON_STOP_TIMEOUT_S} s") from None
    if code != 0:
        raise BenchError(f"daemon exited with {code} after SIGTERM:\n{log_tail(target)}")


def log_tail(target: Target, lines: int = 20) -> str:
    """The end of the daemon's output and of its log file (console logging is off on a pipe)."""
    tails = []
    for path in (target.log_path, target.workdir / "state" / "coordinatord.log"):
        if path is not None and path.is_file():
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if text:
                tails.append(f"--- {path}\n{text}")
    return "\n".join(tails)


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# --------------------------------------------------------------------------------------------
# Measurements.


def shim_command(target: Target, autostart: bool = False, executable: str | None = None) -> list[str]:
    """``executable``: another tree's ``coordinatord`` (``--compare-shim``), given only the
    flags every version of the shim has."""
    base = [executable or str(VENV_BIN / "coordinatord"), "shim", "--socket", target.socket, "--agent", AGENT]
    base += ["--project", str(target.workdir)]
    if executable is not None:
        return base
    if target.config is not None:
        base += ["--config", str(target.config)]
    return base if autostart else [*base, "--no-autostart"]


def time_shim_start(target: Target, executable: str | None = None) -> float:
    """Spawn a shim, send ``initialize``, and time until its reply line arrives."""
    started = time.perf_counter()
    channel = ShimChannel(shim_command(target, executable=executable), target.workdir)
    channel.send(request_line(1, "initialize", INITIALIZE_PARAMS))
    line = channel.readline()
    elapsed = time.perf_counter() - started
    if not line:
        raise BenchError("shim closed stdout before answering initialize")
    checked(json.loads(line), "initialize")
    channel.close()
    return elapsed


def time_python_floor() -> float:
    started = time.perf_counter()
    subprocess.run([str(VENV_BIN / "python"), "-c", "pass"], check=True)
    return time.perf_counter() - started


def measure_startup(target: Target, starts: int) -> list[StartupFigure]:
    for _ in range(COLD_START_DISCARDED):  # page cache and the daemon's first-connection paths
        time_shim_start(target)
        time_python_floor()
    shim = [time_shim_start(target) for _ in range(starts)]
    floor = [time_python_floor() for _ in range(starts)]
    return [
        startup_figure("shim cold start (spawn -> initialize reply)", shim),
        startup_figure("python -c pass (interpreter floor)", floor),
    ]


def open_client(
    target: Target,
    transport: str,
    executable: str | None = None,
    autostart: bool = False,
    era: str = "legacy",
) -> McpClient:
    channel: Channel
    if transport == "shim":
        channel = ShimChannel(shim_command(target, autostart, executable), target.workdir)
    else:
        channel = SocketChannel(target.socket)
    client = McpClient(channel, era)
    if era == "new":
        client.discover()
    else:
        client.initialize()
    return client


def measure_eras(target: Target, eras: Sequence[str], calls: int, warmup: int) -> list[LatencyFigure]:
    """``redis_get`` through the shim in each era, alternating (legacy, new, legacy, new) in two
    halves so that drift on a shared machine lands on both: one figure per era."""
    get = SERIES_BY_NAME["redis_get"]
    latencies: dict[str, list[float]] = {era: [] for era in eras}
    walls: dict[str, float] = dict.fromkeys(eras, 0.0)
    for _ in range(2):
        for era in eras:
            client = open_client(target, "shim", era=era)
            try:
                run_calls(client, get, warmup)
                measured, wall = run_calls(client, get, calls // 2)
            finally:
                client.close()
            latencies[era] += measured
            walls[era] += wall
    return [latency_figure(f"redis_get ({era} era)", "shim", 1, latencies[era], walls[era]) for era in eras]


def run_calls(client: McpClient, series: Series, calls: int) -> tuple[list[float], float]:
    """Latencies (s) of ``calls`` sequential calls, and the wall time of the whole loop."""
    latencies: list[float] = []
    previous: Previous = None
    started = time.perf_counter()
    for i in range(calls):
        call = series.build(i, previous)
        elapsed, reply = client.timed_call(call)
        previous = reply.get("result", {}).get("structuredContent")
        if call.timed:
            latencies.append(elapsed)
    return latencies, time.perf_counter() - started


def measure_series(
    client: McpClient, series: Series, transport: str, calls: int, warmup: int
) -> LatencyFigure:
    for call in series.setup:
        client.call(call)
    run_calls(client, series, warmup)
    latencies, wall = run_calls(client, series, calls)
    for call in series.cleanup:
        client.call(call)
    return latency_figure(series.name, transport, 1, latencies, wall)


def measure_transport(target: Target, transport: str, calls: int, warmup: int) -> list[LatencyFigure]:
    client = open_client(target, transport)
    try:
        return [measure_series(client, series, transport, calls, warmup) for series in SERIES]
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# Concurrency: K worker processes of this script, each with its own shim.


def worker_main(args: argparse.Namespace) -> int:
    """Worker mode: open a shim, warm up, say ``ready``, wait for ``go``, run, print results."""
    series = SERIES_BY_NAME[args.concurrent_series]
    target = Target(args.socket, Path(args.workdir), "", config=Path(args.config) if args.config else None)
    client = open_client(target, "shim")
    for call in series.setup:
        client.call(call)
    run_calls(client, series, args.warmup)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux
    latencies, _ = run_calls(client, series, args.calls)
    end = time.monotonic()
    client.close()
    print(json.dumps({"start": start, "end": end, "latencies": latencies}), flush=True)
    return 0


def measure_concurrent(
    target: Target, series: Series, clients: int, calls: int, warmup: int
) -> LatencyFigure:
    per_client = max(1, calls // clients)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--socket",
        target.socket,
        "--workdir",
        str(target.workdir),
        "--concurrent-series",
        series.name,
        *(["--config", str(target.config)] if target.config else []),
        "--calls",
        str(per_client),
        "--warmup",
        str(warmup),
    ]
    workers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=target.workdir)
        for _ in range(clients)
    ]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.callback(reap, worker)
        for worker in workers:
            expect_line(worker, "ready")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
        results = [json.loads(expect_line(worker, None)) for worker in workers]
    cleanup(target, series)  # only now: a worker's cleanup would change what the others measure
    latencies = [s for result in results for s in result["latencies"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return latency_figure(series.name, "shim", clients, latencies, wall)


def cleanup(target: Target, series: Series) -> None:
    """Run the series' cleanup in the workers' project (a shim started in the same directory)."""
    client = open_client(target, "shim")
    try:
        for call in series.cleanup:
            client.call(call)
    finally:
        client.close()


def expect_line(worker: subprocess.Popen[bytes], expected: str | None) -> str:
    assert worker.stdout is not None
    line = worker.stdout.readline().decode().strip()
    if not line or (expected is not None and line != expected):
        raise BenchError(f"worker {worker.pid} said {line!r} instead of {expected or 'its results'!r}")
    return line


def reap(worker: subprocess.Popen[bytes]) -> None:
    if worker.stdin is not None:
        worker.stdin.close()
    try:
        code = worker.wait(timeout=REPLY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise BenchError(f"worker {worker.pid} did not exit") from None
    if code != 0:
        raise BenchError(f"worker {worker.pid} exited with {code}")


# --------------------------------------------------------------------------------------------
# Reconnect: the daemon dies under a long-lived shim, which starts another.


@dataclass
class ReconnectFigure:
    name: str
    n: int
    median_ms: float
    min_ms: float
    max_ms: float
    rounds_ms: list[float]
    errors_seen: int  # calls answered "the daemon restarted" (sent as it died) before one succeeded


def measure_reconnect(target: Target, rounds: int) -> ReconnectFigure:
    """SIGKILL the daemon under a shim with auto-start; time from the kill until a ``redis_get``
    on that same shim (and MCP session) is answered. An agent that gets the shim's "daemon
    restarted" error for a call it sent just as the daemon died retries it: counted, not hidden."""
    client = open_client(target, "shim", autostart=True)
    times: list[float] = []
    errors = 0
    try:
        client.call(ToolCall("redis_set", {"key": KEY, "value": VALUE}))
        for _ in range(rounds):
            killed_at = kill_serving_daemon(target)
            while True:
                reply = client.request(
                    "tools/call", {"name": "redis_get", "arguments": {"key": KEY}}, check=False
                )
                if "error" not in reply:
                    checked(reply, "redis_get")
                    break
                if "daemon restarted" not in str(reply["error"]):
                    raise BenchError(f"redis_get after the kill: {reply['error']}")
                errors += 1
            times.append(time.perf_counter() - killed_at)
            target.daemon_pid = serving_pid(target)
    finally:
        client.close()
    ms = sorted(t * 1000 for t in times)
    name = "reconnect after SIGKILL (kill -> next call answered, auto-start)"
    return ReconnectFigure(
        name, len(ms), statistics.median(ms), ms[0], ms[-1], [t * 1000 for t in times], errors
    )


def serving_pid(target: Target) -> int:
    """The pid of the daemon holding the socket's lock (it writes its pid there)."""
    text = Path(target.socket + ".lock").read_text().strip()
    if not text.isdigit():
        raise BenchError(f"no daemon pid in {target.socket}.lock")
    return int(text)


def kill_serving_daemon(target: Target) -> float:
    """SIGKILL whichever daemon serves now and wait until it is gone; returns the kill's time."""
    if target.daemon is not None:
        target.daemon.kill()
        killed_at = time.perf_counter()
        target.daemon.wait()
        target.daemon = None
        return killed_at
    assert target.daemon_pid is not None
    pidfd = os.pidfd_open(target.daemon_pid)
    try:
        os.kill(target.daemon_pid, signal.SIGKILL)
        killed_at = time.perf_counter()
        select.select([pidfd], [], [], DAEMON_STOP_TIMEOUT_S)
    finally:
        os.close(pidfd)
    return killed_at


def stop_foreign_daemon(pid: int) -> None:
    """SIGTERM a daemon that is not our child (a shim started it) and wait for it to exit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], DAEMON_STOP_TIMEOUT_S)[0]:
            os.kill(pid, signal.SIGKILL)
            raise BenchError(f"daemon {pid} ignored SIGTERM for {DAEMON_STOP_TIMEOUT_S} s")
    finally:
        os.close(pidfd)


# --------------------------------------------------------------------------------------------
# Comparison with another tree's shim (say the previous commit's), on the same daemon.


@dataclass
class ComparisonRound:
    start_median_ms: float
    other_start_median_ms: float
    get_p50_ms: float
    other_get_p50_ms: float


def measure_comparison(
    target: Target, other: str, rounds: int, starts: int, calls: int, warmup: int
) -> list[ComparisonRound]:
    """Alternate this tree's shim and ``other`` (a ``coordinatord`` executable), ``rounds``
    times: cold starts, then sequential ``redis_get``. On a shared 2-core machine only figures
    taken side by side like this can be compared."""
    get = SERIES_BY_NAME["redis_get"]
    results: list[ComparisonRound] = []
    for _ in range(rounds):
        medians = [
            statistics.median(time_shim_start(target, executable) for _ in range(starts)) * 1000
            for executable in (None, other)
        ]
        p50s = []
        for executable in (None, other):
            client = open_client(target, "shim", executable)
            try:
                p50s.append(measure_series(client, get, "shim", calls, warmup).p50_ms)
            finally:
                client.close()
        results.append(ComparisonRound(medians[0], medians[1], p50s[0], p50s[1]))
    return results


# --------------------------------------------------------------------------------------------
# Report.


@dataclass
class Report:
    startup: list[StartupFigure] = field(default_factory=list)
    latency: list[LatencyFigure] = field(default_factory=list)
    reconnect: ReconnectFigure | None = None
    comparison: list[ComparisonRound] = field(default_factory=list)

    def find_latency(self, name: str) -> LatencyFigure | None:
        return next((figure for figure in self.latency if figure.name == name), None)


def target_checks(report: Report) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    if report.startup:
        value = report.startup[0].median_ms
        checks.append(check("shim cold start median", value, TARGET_COLD_START_MEDIAN_MS))
    get = report.find_latency("redis_get via shim")
    if get is not None:
        checks.append(check("redis_get via shim p50", get.p50_ms, TARGET_GET_VIA_SHIM_P50_MS))
    if report.reconnect is not None:
        checks.append(
            check("reconnect after SIGKILL, median", report.reconnect.median_ms, TARGET_RECONNECT_MS)
        )
    if report.comparison:
        ours = statistics.median(r.get_p50_ms for r in report.comparison)
        other = statistics.median(r.other_get_p50_ms for r in report.comparison)
        limit = other * (1 + TARGET_SHIM_REGRESSION)
        checks.append(check("redis_get via shim p50 vs --compare-shim (median of rounds)", ours, limit))
    legacy = report.find_latency("redis_get (legacy era) via shim")
    new = report.find_latency("redis_get (new era) via shim")
    if legacy is not None and new is not None:
        limit = legacy.p50_ms * TARGET_NEW_ERA_FACTOR
        checks.append(check("redis_get via shim p50, new era (<= 1.1 x legacy era)", new.p50_ms, limit))
    socket_get = report.find_latency("redis_get via socket")
    if socket_get is not None:
        for series in SERIES:
            figure = report.find_latency(f"{series.name} via socket")
            if figure is not None and not series.name.startswith("redis_"):
                limit = TARGET_FACTOR_OF_GET * socket_get.p50_ms
                checks.append(check(f"{series.name} via socket p50 (<= 2 x redis_get)", figure.p50_ms, limit))
    return checks


def check(name: str, value_ms: float, limit_ms: float) -> dict[str, Any]:
    return {"name": name, "value_ms": value_ms, "limit_ms": limit_ms, "pass": value_ms <= limit_ms}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def render(report: Report, checks: Sequence[dict[str, Any]]) -> str:
    parts: list[str] = []
    if report.startup:
        rows = [
            [f.name, str(f.n), f"{f.median_ms:.1f}", f"{f.p90_ms:.1f}", f"{f.min_ms:.1f}"]
            for f in report.startup
        ]
        parts.append(format_table(["start-up", "n", "median ms", "p90 ms", "min ms"], rows))
    if report.latency:
        rows = [
            [
                f.name,
                str(f.n),
                f"{f.p50_ms:.3f}",
                f"{f.p99_ms:.3f}",
                f"{f.mean_ms:.3f}",
                f"{f.calls_per_s:.0f}",
            ]
            for f in report.latency
        ]
        parts.append(format_table(["series", "n", "p50 ms", "p99 ms", "mean ms", "calls/s"], rows))
    if report.reconnect is not None:
        f = report.reconnect
        rounds = ", ".join(f"{ms:.0f}" for ms in f.rounds_ms)
        rows = [[f.name, str(f.n), f"{f.median_ms:.0f}", f"{f.min_ms:.0f}", f"{f.max_ms:.0f}", rounds]]
        parts.append(format_table(["reconnect", "n", "median ms", "min ms", "max ms", "each ms"], rows))
    if report.comparison:
        rows = [
            [
                str(index + 1),
                f"{r.start_median_ms:.1f}",
                f"{r.other_start_median_ms:.1f}",
                f"{r.get_p50_ms:.3f}",
                f"{r.other_get_p50_ms:.3f}",
                f"{(r.get_p50_ms / r.other_get_p50_ms - 1) * 100:+.1f} %",
            ]
            for index, r in enumerate(report.comparison)
        ]
        headers = ["round", "start ms", "other start ms", "get p50 ms", "other get p50 ms", "get vs other"]
        parts.append(format_table(headers, rows))
    if checks:
        rows = [
            [c["name"], f"{c['value_ms']:.2f}", f"<= {c['limit_ms']:g}", "PASS" if c["pass"] else "MISS"]
            for c in checks
        ]
        parts.append(format_table(["target", "ms", "limit ms", "result"], rows))
    return "\n\n".join(parts)


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
    }


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def source_info() -> dict[str, Any]:
    """Which code was measured: coordinatord's version and the git commit (dirty or not)."""
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        version = subprocess.run(
            [str(VENV_BIN / "coordinatord"), "--version"], capture_output=True, text=True, check=True
        )
        info["coordinatord"] = version.stdout.strip()
    git = shutil.which("git")
    if git:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            head = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
            dirty = subprocess.run([git, "status", "--porcelain"], capture_output=True, text=True, check=True)
            info["git_commit"] = head.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    return info


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Driver.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark coordinatord: shim cold start and per-call latency (see bench/README.md)."
    )
    parser.add_argument("--socket", help="benchmark this running daemon instead of starting one")
    parser.add_argument("--redis-url", help="start the daemon with this REDIS_URL (default: embedded Valkey)")
    parser.add_argument("--calls", type=int, default=5000, help="measured calls per series (default 5000)")
    parser.add_argument("--starts", type=int, default=30, help="measured shim cold starts (default 30)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls before each series")
    parser.add_argument(
        "--clients", type=int, default=0, help="also run K concurrent shim clients, N/K calls each (0: skip)"
    )
    parser.add_argument(
        "--concurrent-series",
        default="redis_get",
        choices=sorted(SERIES_BY_NAME),
        help="series for --clients",
    )
    parser.add_argument(
        "--reconnects",
        type=int,
        default=5,
        help="SIGKILL the daemon this many times under a shim that restarts it (0: skip; not with --socket)",
    )
    parser.add_argument(
        "--compare-shim",
        metavar="COORDINATORD",
        help="another tree's coordinatord executable: alternate its shim with this one's",
    )
    parser.add_argument(
        "--era",
        choices=("legacy", "new", "both"),
        help="also time redis_get via shim in the handshake (legacy) era, the 2026-07-28 (new) era, or both",
    )
    parser.add_argument("--compare-rounds", type=int, default=3, help="rounds of --compare-shim (default 3)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/bench-<UTC>.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.starts < 1 or args.warmup < 0 or args.clients < 0 or args.reconnects < 0:
        parser.error(
            "--calls and --starts must be positive; --warmup, --clients and --reconnects not negative"
        )
    if args.compare_shim and not Path(args.compare_shim).is_file():
        parser.error(f"--compare-shim {args.compare_shim}: no such file (give a venv's bin/coordinatord)")
    if args.socket and args.redis_url:
        parser.error("--redis-url only applies to a daemon this script starts; drop it with --socket")
    return args


@contextlib.contextmanager
def daemon_under_test(args: argparse.Namespace) -> Iterator[Target]:
    """The daemon to measure: ``--socket``'s, or one started here and stopped (SIGTERM) after."""
    workdir = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    target: Target | None = None
    ok = False
    try:
        if args.socket:
            target = Target(args.socket, workdir, "existing daemon at " + args.socket)
            wait_until_serving(target)
        else:
            target = start_daemon(workdir, args.redis_url)
        yield target
        ok = True
    finally:
        try:
            if target is not None:
                stop_daemon(target)
        finally:
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"bench: kept {workdir} for inspection", file=sys.stderr)


def run_benchmark(args: argparse.Namespace, target: Target) -> Report:
    report = Report()
    progress(f"shim cold start x{args.starts}")
    report.startup = measure_startup(target, args.starts)
    for transport in ("shim", "socket"):
        progress(f"{', '.join(s.name for s in SERIES)} via {transport}, {args.calls} calls each")
        report.latency += measure_transport(target, transport, args.calls, args.warmup)
    if args.era:
        eras = ERAS if args.era == "both" else (args.era,)
        progress(f"redis_get via shim in the {' and '.join(eras)} era(s), {args.calls} calls each")
        report.latency += measure_eras(target, eras, args.calls, args.warmup)
    if args.clients:
        series = SERIES_BY_NAME[args.concurrent_series]
        progress(
            f"{series.name} via {args.clients} concurrent shims, {args.calls // args.clients} calls each"
        )
        report.latency.append(measure_concurrent(target, series, args.clients, args.calls, args.warmup))
    if args.compare_shim:
        progress(f"this shim and {args.compare_shim}, alternating, {args.compare_rounds} rounds")
        report.comparison = measure_comparison(
            target, args.compare_shim, args.compare_rounds, args.starts, args.calls, args.warmup
        )
    if args.reconnects and target.config is not None:
        progress(f"reconnect after SIGKILL x{args.reconnects} (the shim starts the daemon again)")
        report.reconnect = measure_reconnect(target, args.reconnects)
    return report


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    stamp = datetime.now(UTC)
    try:
        with daemon_under_test(args) as target:
            report = run_benchmark(args, target)
            backend, ready_event = target.backend, target.ready_event
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    checks = target_checks(report)
    print(render(report, checks))
    out = args.json or BENCH_DIR / "results" / f"bench-{stamp:%Y%m%dT%H%M%SZ}.json"
    write_json(
        out,
        {
            "timestamp": stamp.isoformat(),
            "backend": backend,
            "daemon_ready": ready_event,
            "machine": machine_info(),
            "source": source_info(),
            "options": {k: v for k, v in vars(args).items() if k not in ("worker", "workdir", "json")},
            "startup": [asdict(f) for f in report.startup],
            "latency": [asdict(f) for f in report.latency],
            "reconnect": asdict(report.reconnect) if report.reconnect else None,
            "comparison": [asdict(r) for r in report.comparison],
            "targets": checks,
        },
    )
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
