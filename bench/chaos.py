"""A bounded chaos run: do acknowledged writes survive, exactly once, when everything breaks?

    .venv/bin/python bench/chaos.py                    # 16 shims, 300 s
    .venv/bin/python bench/chaos.py --duration 60 --shims 8 --drop 0.05

Parts, all real and all on this machine: a Valkey (the test suite's fixture, append-only), the
suite's reply-losing proxy on loopback TCP between the daemon and that Valkey which, while chaos
runs, loses the reply to ``--drop`` of the writes *after the server applied them* and cuts the
connection (the lost-reply case: redis-py sends the command again), one daemon, and ``--shims``
real ``coordinatord shim`` processes with auto-start, one agent each, writing in closed loops:

- ``session_append`` of a unique line to the agent's own session,
- ``task_advance`` of the agent's own task (200 steps, started over when completed),
- ``ratelimit_hit`` of cost 3 on the agent's own service,
- ``message_send`` of a unique subject to the agent itself.

Meanwhile, every ``--every`` seconds (at random within ±50 %), the daemon gets SIGKILL (the next
call of a shim starts a new one) or the Valkey does (started again on its data after a pause).
Afterwards, with chaos off, every agent reads back what it wrote, and the run counts:

- **lost**: writes that were acknowledged (a result, not an error) and are not there;
- **applied twice**: a unique line or subject stored twice, or a counter (completed steps,
  units used) above what the acknowledged plus the failed calls could have made.

A call that failed (an error to the agent: the daemon died under it, the backend was down) may
have been applied once or not at all; the counters allow that. The run prints each outage
window (from the first failed call to the last one of a burst) after the event that caused it,
writes JSON to ``bench/results/chaos-<UTC>.json`` and exits 1 when anything was lost or applied
twice. Standard library only, but for the suite's Valkey fixture.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

import bench  # noqa: E402
from tests.support import ValkeyProcess  # noqa: E402
from tests.support_proxy import ReplyLosingProxy  # noqa: E402

TASK_STEPS = 200  # tasks.max_steps' default: a task is started over when completed
SESSION_TURNS = 4_000  # below sessions.max_turns
HIT_COST = 3
RATE_LIMIT = 100_000  # ratelimits.max_limit's default: never refused in a run of this size
RATE_WINDOW_S = 86_400
OUTAGE_GAP_S = 1.0  # failures closer than this belong to one outage window
VALKEY_DOWN_S = (0.5, 2.0)


# --------------------------------------------------------------------------------------------
# The writers.


@dataclass
class Ledger:
    """What one agent sent, and what it was told."""

    agent: str
    acked_lines: list[str] = field(default_factory=list)
    failed_lines: list[str] = field(default_factory=list)
    acked_subjects: list[str] = field(default_factory=list)
    failed_subjects: list[str] = field(default_factory=list)
    advances: Counter[str] = field(default_factory=Counter)  # task id -> acknowledged advances
    failed_advances: Counter[str] = field(default_factory=Counter)
    refused_advances: Counter[str] = field(default_factory=Counter)  # "already completed"
    hits_acked: int = 0
    hits_failed: int = 0
    calls: int = 0
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, reason


def _outcome(reply: dict[str, Any]) -> tuple[bool, str]:
    """Acknowledged, or the reason it was not."""
    if "error" in reply:
        return False, str(reply["error"].get("message", reply["error"]))[:160]
    result = reply.get("result") or {}
    if result.get("isError"):
        texts = [c.get("text", "") for c in result.get("content", []) if isinstance(c, dict)]
        return False, " ".join(texts)[:160]
    return True, ""


def _structured(reply: dict[str, Any]) -> dict[str, Any]:
    return dict((reply.get("result") or {}).get("structuredContent") or {})


class LoggedShimChannel(bench.ShimChannel):
    """bench's shim channel with the shim's stderr (its reconnect notes) in a file of its own."""

    def __init__(self, command: list[str], cwd: Path, log: Path) -> None:
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=cwd,
                env=bench.clean_env(),
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._stdout = self.proc.stdout


class Writer(threading.Thread):
    """One shim, one agent, a closed loop of writes until ``stop``."""

    def __init__(self, index: int, command: list[str], cwd: Path, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True, name=f"writer-{index}")
        self._log = cwd / f"shim-{index}.err"
        self.ledger = Ledger(agent=f"chaos-w{index}")
        self._command = command
        self._cwd = cwd
        self._halt = stop
        self._random = random.Random(seed)
        self._task_round = 0
        self.client: bench.McpClient | None = None
        self.error: str | None = None

    @property
    def session(self) -> str:
        sent = len(self.ledger.acked_lines) + len(self.ledger.failed_lines)
        return f"chaos-{self.ledger.agent}-{sent // SESSION_TURNS}"

    @property
    def task(self) -> str:
        return f"{self.ledger.agent}-t{self._task_round}"

    def run(self) -> None:
        try:
            self.client = bench.McpClient(LoggedShimChannel(self._command, self._cwd, self._log))
            self.client.initialize()
            self._new_task()
            n = 0
            while not self._halt.is_set():
                n += 1
                self._one(n)
        except Exception as exc:  # reported, not raised: the run goes on with the others
            self.error = f"{type(exc).__name__}: {exc}"

    def _call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        assert self.client is not None
        started = time.monotonic()
        reply = self.client.request("tools/call", {"name": name, "arguments": arguments}, check=False)
        ok, reason = _outcome(reply)
        self.ledger.calls += 1
        if not ok:
            self.ledger.failures.append((started, time.monotonic(), f"{name}: {reason}"))
        return ok, reply

    def _new_task(self) -> None:
        # Retried until it is there: the counters below assume the task exists.
        steps = [f"s{i}" for i in range(TASK_STEPS)]
        while not self._halt.is_set():
            ok, _ = self._call("task_create", {"task_id": self.task, "steps": steps, "replace": True})
            if ok:
                return

    def _one(self, n: int) -> None:
        kind = self._random.choice(("append", "advance", "hit", "send"))
        ledger = self.ledger
        if kind == "append":
            line = f"{ledger.agent}-{n}"
            ok, _ = self._call(
                "session_append", {"session_id": self.session, "role": "user", "message": line}
            )
            (ledger.acked_lines if ok else ledger.failed_lines).append(line)
        elif kind == "advance":
            ok, reply = self._call("task_advance", {"task_id": self.task})
            if ok:
                ledger.advances[self.task] += 1
            elif "already completed" in _outcome(reply)[1]:
                ledger.refused_advances[self.task] += 1  # certainly not applied: not "failed"
                ledger.failures.pop()  # an answer, not an outage
            else:
                ledger.failed_advances[self.task] += 1
            if (
                sum(c[self.task] for c in (ledger.advances, ledger.failed_advances, ledger.refused_advances))
                >= TASK_STEPS
            ):
                self._task_round += 1  # it may be completed: start a new one
                self._new_task()
        elif kind == "hit":
            args = {
                "service": f"chaos-{ledger.agent}",
                "limit": RATE_LIMIT,
                "window_s": RATE_WINDOW_S,
                "cost": HIT_COST,
            }
            ok, _ = self._call("ratelimit_hit", args)
            if ok:
                ledger.hits_acked += 1
            else:
                ledger.hits_failed += 1
        else:
            subject = f"{ledger.agent}-{n}"
            ok, _ = self._call("message_send", {"to": ledger.agent, "subject": subject, "body": "chaos"})
            (ledger.acked_subjects if ok else ledger.failed_subjects).append(subject)


# --------------------------------------------------------------------------------------------
# Reading back.


@dataclass
class Tally:
    lost: int = 0
    twice: int = 0
    details: list[str] = field(default_factory=list)

    def add_lost(self, count: int, what: str) -> None:
        if count > 0:
            self.lost += count
            self.details.append(f"lost {count}: {what}")

    def add_twice(self, count: int, what: str) -> None:
        if count > 0:
            self.twice += count
            self.details.append(f"applied twice {count}: {what}")


def _must(client: bench.McpClient, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A read after the chaos stopped: retried for a while (the daemon may be starting)."""
    deadline = time.monotonic() + 60
    while True:
        reply = client.request("tools/call", {"name": name, "arguments": arguments}, check=False)
        ok, reason = _outcome(reply)
        if ok:
            return _structured(reply)
        if time.monotonic() > deadline:
            raise bench.BenchError(f"{name} after the chaos: {reason}")
        time.sleep(0.2)


def verify(writer: Writer, tally: Tally) -> None:
    client, ledger = writer.client, writer.ledger
    assert client is not None
    stored: Counter[str] = Counter()
    sessions = {
        f"chaos-{ledger.agent}-{i}"
        for i in range((len(ledger.acked_lines) + len(ledger.failed_lines)) // SESSION_TURNS + 1)
    }
    for session in sorted(sessions):
        history = _must(client, "session_history", {"session_id": session, "last": SESSION_TURNS + 100})
        stored.update(turn["message"] for turn in history.get("turns", []))
    tally.add_lost(
        sum(1 for line in ledger.acked_lines if stored[line] == 0), f"{ledger.agent} session turns"
    )
    tally.add_twice(sum(count - 1 for count in stored.values() if count > 1), f"{ledger.agent} session turns")

    for task in set(ledger.advances) | set(ledger.failed_advances):
        document = _must(client, "task_get", {"task_id": task})
        done = int(document.get("completedSteps", document.get("completed_steps", 0)))
        acked, failed = ledger.advances[task], ledger.failed_advances[task]
        tally.add_lost(acked - done if done < acked and done < TASK_STEPS else 0, f"{task} advances")
        tally.add_twice(done - (acked + failed) if done > acked + failed else 0, f"{task} advances")

    status = _must(
        client,
        "ratelimit_status",
        {"service": f"chaos-{ledger.agent}", "limit": RATE_LIMIT, "window_s": RATE_WINDOW_S},
    )
    used = int(status.get("used", 0))
    tally.add_lost(max(0, HIT_COST * ledger.hits_acked - used) // HIT_COST, f"{ledger.agent} rate-limit hits")
    over = used - HIT_COST * (ledger.hits_acked + ledger.hits_failed)
    tally.add_twice(max(0, over) // HIT_COST, f"{ledger.agent} rate-limit hits")

    subjects: Counter[str] = Counter()
    since: str | None = None
    while True:
        page = _must(client, "message_inbox", {"unread_only": False, "since": since, "limit": 200})
        subjects.update(m["subject"] for m in page.get("messages", []))
        since = page.get("next_since")
        if not page.get("more"):
            break
    tally.add_lost(sum(1 for s in ledger.acked_subjects if subjects[s] == 0), f"{ledger.agent} messages")
    tally.add_twice(sum(count - 1 for count in subjects.values() if count > 1), f"{ledger.agent} messages")


# --------------------------------------------------------------------------------------------
# The run.


@dataclass
class Outage:
    cause: str
    started_s: float
    ended_s: float
    failed_calls: int
    reasons: list[str]


def outage_windows(writers: list[Writer], events: list[tuple[float, str]], origin: float) -> list[Outage]:
    failures = sorted(f for w in writers for f in w.ledger.failures)
    windows: list[Outage] = []
    for started, ended, reason in failures:
        if windows and started - (origin + windows[-1].ended_s) <= OUTAGE_GAP_S:
            window = windows[-1]
            window.ended_s = max(window.ended_s, ended - origin)
            window.failed_calls += 1
            if (
                reason.split(": ", 1)[-1][:60] not in {r[:60] for r in window.reasons}
                and len(window.reasons) < 3
            ):
                window.reasons.append(reason.split(": ", 1)[-1])
            continue
        cause = next(
            (what for at, what in reversed(events) if at <= ended), "none"
        )  # a call may start before the kill that fails it
        windows.append(Outage(cause, started - origin, ended - origin, 1, [reason.split(": ", 1)[-1]]))
    return windows


def write_config(workdir: Path, backend_url: str, timeout_s: float) -> Path:
    config = workdir / "config.toml"
    config.write_text(
        "\n".join(
            [
                f"socket = {json.dumps(str(workdir / 'c.sock'))}",
                f"state_dir = {json.dumps(str(workdir / 'state'))}",
                "[backend]",
                f"url = {json.dumps(backend_url)}",
                f"timeout_s = {timeout_s}",
                "[tools]",
                'groups = ["full"]',
                "[messages]",
                "max_inbox = 100000",
                "",
            ]
        )
    )
    config.chmod(0o600)
    return config


def kill_daemon(socket_path: Path) -> bool:
    """SIGKILL whichever daemon holds the socket's lock now (none while one is starting)."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((socket_path.parent / (socket_path.name + ".lock")).read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(pid)
            select.select([pidfd], [], [], 10)
            os.close(pidfd)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of chaos (default 300)")
    parser.add_argument("--shims", type=int, default=16, help="concurrent shims, one agent each (default 16)")
    parser.add_argument("--every", type=float, default=8.0, help="mean seconds between kills (default 8)")
    parser.add_argument(
        "--drop", type=float, default=0.02, help="share of writes whose reply is lost (default 0.02)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument(
        "--json", type=Path, default=None, help="results file (default bench/results/chaos-<UTC>.json)"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.shims < 1 or args.every <= 0 or not 0 <= args.drop < 1:
        parser.error("--duration, --shims and --every must be positive, --drop in [0, 1)")
    seed = args.seed if args.seed is not None else int(time.time())
    chooser = random.Random(seed)

    workdir = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    valkey = ValkeyProcess(workdir / "vk", persist=True)
    (workdir / "vk").mkdir()
    valkey.start()
    proxy = ReplyLosingProxy(valkey.socket_path, chance=args.drop, seed=seed)
    config = write_config(workdir, proxy.url, timeout_s=3.0)
    socket_path = workdir / "c.sock"
    daemon = subprocess.Popen(
        [str(bench.VENV_BIN / "coordinatord"), "serve", "--config", str(config)],
        cwd=workdir, env=bench.clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ok = False
    events: list[tuple[float, str]] = []
    stop = threading.Event()
    writers: list[Writer] = []
    try:
        bench.wait_until_serving(
            bench.Target(
                str(socket_path),
                workdir,
                "chaos",
                daemon,
                workdir / "state" / "coordinatord.log",
                config=config,
            )
        )
        command = [
            str(bench.VENV_BIN / "coordinatord"),
            "shim",
            "--config",
            str(config),
            "--project",
            str(workdir),
        ]
        writers = [
            Writer(i, [*command, "--agent", f"chaos-w{i}"], workdir, stop, seed + i)
            for i in range(args.shims)
        ]
        origin = time.monotonic()
        for writer in writers:
            writer.start()
        proxy.losing = True
        events.append((time.monotonic(), f"{args.drop:.0%} of write replies lost"))
        deadline = origin + args.duration
        kills = Counter[str]()
        while time.monotonic() < deadline:
            pause = chooser.uniform(0.5 * args.every, 1.5 * args.every)
            if stop.wait(min(pause, max(0.0, deadline - time.monotonic()))):
                break
            if time.monotonic() >= deadline:
                break
            if chooser.random() < 0.5:
                at = time.monotonic()  # before the kill: calls fail as soon as it lands
                if kill_daemon(socket_path):
                    events.append((at, "daemon SIGKILL"))
                    kills["daemon"] += 1
            else:
                events.append((time.monotonic(), "valkey SIGKILL"))
                valkey.kill()
                kills["valkey"] += 1
                time.sleep(chooser.uniform(*VALKEY_DOWN_S))
                valkey.start()
            print(f"chaos: {events[-1][1]} at {events[-1][0] - origin:.1f} s", file=sys.stderr, flush=True)
        proxy.losing = False
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        hung = [w.ledger.agent for w in writers if w.is_alive()]
        broken = [f"{w.ledger.agent}: {w.error}" for w in writers if w.error]
        tally = Tally()
        for writer in writers:
            if not writer.is_alive() and writer.error is None:
                verify(writer, tally)
        windows = outage_windows(writers, events, origin)
        calls = sum(w.ledger.calls for w in writers)
        acked = sum(
            len(w.ledger.acked_lines)
            + len(w.ledger.acked_subjects)
            + sum(w.ledger.advances.values())
            + w.ledger.hits_acked
            for w in writers
        )
        report = {
            "seed": seed,
            "duration_s": args.duration,
            "shims": args.shims,
            "drop": args.drop,
            "kills": dict(kills),
            "replies_dropped": len(proxy.lost),
            "calls": calls,
            "acknowledged_writes": acked,
            "failed_calls": sum(len(w.ledger.failures) for w in writers),
            "lost": tally.lost,
            "applied_twice": tally.twice,
            "details": tally.details,
            "hung_writers": hung,
            "broken_writers": broken,
            "outages": [asdict(o) for o in windows],
        }
        print_report(report)
        out = args.json or BENCH_DIR / "results" / f"chaos-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {out}")
        ok = tally.lost == 0 and tally.twice == 0 and not hung and not broken
        return 0 if ok else 1
    finally:
        stop.set()
        proxy.losing = False
        for writer in writers:
            if writer.client is not None and not writer.is_alive():
                with contextlib.suppress(Exception):
                    writer.client.close()
        kill_daemon(socket_path)
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()
        proxy.close()
        valkey.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} (daemon log in state/coordinatord.log)", file=sys.stderr)


def print_report(report: dict[str, Any]) -> None:
    rows = [
        ["calls", str(report["calls"])],
        ["acknowledged writes", str(report["acknowledged_writes"])],
        ["failed calls (errors to the agent)", str(report["failed_calls"])],
        ["write replies lost (then resent)", str(report["replies_dropped"])],
        ["daemon / valkey kills", f"{report['kills'].get('daemon', 0)} / {report['kills'].get('valkey', 0)}"],
        ["acknowledged writes lost", str(report["lost"])],
        ["writes applied twice", str(report["applied_twice"])],
    ]
    print(bench.format_table(["chaos run", "count"], rows))
    if report["outages"]:
        outage_rows = [
            [
                o["cause"],
                f"{o['started_s']:.1f}",
                f"{o['ended_s'] - o['started_s']:.2f}",
                str(o["failed_calls"]),
                o["reasons"][0][:70],
            ]
            for o in report["outages"]
        ]
        print()
        print(
            bench.format_table(
                ["outage after", "at s", "lasted s", "failed calls", "first reason"], outage_rows
            )
        )
    for line in report["details"] + report["hung_writers"] + report["broken_writers"]:
        print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
