"""Micro-benchmark: what the secrets guard adds to one write, per 1 kB value, on the daemon.

    .venv/bin/python bench/secrets_scan.py

It times :meth:`SecretGuard.text` (what ``redis_set`` calls on its value, in the daemon's
process; the shim never imports the detector) on 1 kB values of several shapes, the import of
the detector, and what :func:`coordinatord.server.calls.invoke` adds to every call for its
identifiers (the agent name and each identifier argument, read from the raw arguments, plus
the log key where it is not one of them). Figures are microseconds per call, the median of
several rounds.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from coordinatord.services.secret_guard import SecretGuard
from coordinatord.settings import SecretSettings
from coordinatord.tool_groups import GROUPS
from coordinatord.tools import build_registry

ROUNDS = 7
CALLS = 2_000


def values() -> dict[str, str]:
    rng = random.Random(1)
    prose = ("The build step now caches wheels; next, split the task notes per agent. " * 20)[:1024]
    doc = json.dumps({"lastTask": "implement-feature", "progress": 75, "notes": prose[:900]})[:1024]
    keyword = ("token handling: see the api_key docs and the password reset flow. " * 20)[:1024]
    return {
        "prose": prose,
        "json context": doc,
        "base64 blob": base64.b64encode(rng.randbytes(768)).decode()[:1024],
        "keyword prose": keyword,
        "hex ids": " ".join(rng.randbytes(16).hex() for _ in range(31))[:1024],
    }


def per_call_us(guard: SecretGuard, value: str) -> float:
    return median_us(lambda: guard.text(value, "value"))


def median_us(work: Callable[[], object]) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            work()
        rounds.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(rounds)


# Typical calls: (tool, arguments, the log key its handler sets).
CALLS_WITH_IDENTIFIERS: list[tuple[str, dict[str, Any], str | None]] = [
    ("redis_get", {"key": "agent:context:session-2026-02-13-001"}, "agent:context:session-2026-02-13-001"),
    ("task_update", {"task_id": "implement-redis-docs", "step": "write tests", "status": "completed"}, None),
    ("lock_acquire", {"resource": "src/coordinatord/server/calls.py", "ttl": 300}, None),
    ("files_reserve", {"paths": ["src/app.py", "src/util/*.py", "tests/test_app.py"]}, "src/app.py …"),
    ("message_send", {"to": ["reviewer", "planner"], "subject": "Ready", "body": "…"}, "reviewer: Ready"),
]


def identifiers_us(guard: SecretGuard, tool: str, arguments: dict[str, Any], log_key: str | None) -> float:
    """What invoke() runs for the secrets before and after a call (calls.py), without the call."""
    spec = build_registry().get(tool, frozenset({"full", *GROUPS}))
    assert spec is not None
    agent = "kilocode-main"

    def work() -> None:
        texts = spec.identifier_texts(arguments) if guard.policy != "off" else []
        guard.check_agent(agent)
        guard.identifiers(texts)
        if log_key is not None and not any(log_key == text for _, text in texts):
            guard.shown(log_key)

    return median_us(work)


def main() -> None:
    guard = SecretGuard(SecretSettings(policy="refuse"))
    off = SecretGuard(SecretSettings(policy="off"))
    print(f"{'1 kB value':<16} {'refuse (us)':>12} {'off (us)':>9}")
    for name, value in values().items():
        print(f"{name:<16} {per_call_us(guard, value):>12.1f} {per_call_us(off, value):>9.2f}")
    print(f"\n{'identifiers of one call':<24} {'refuse (us)':>12} {'off (us)':>9}")
    for tool, arguments, log_key in CALLS_WITH_IDENTIFIERS:
        on = identifiers_us(guard, tool, arguments, log_key)
        print(f"{tool:<24} {on:>12.2f} {identifiers_us(off, tool, arguments, log_key):>9.2f}")
    code = (
        "import time; t = time.perf_counter(); import coordinatord.secrets_scan; "
        "print(time.perf_counter() - t)"
    )
    seconds = float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    print(f"import coordinatord.secrets_scan: {seconds * 1000:.2f} ms (daemon only)")


if __name__ == "__main__":
    main()
