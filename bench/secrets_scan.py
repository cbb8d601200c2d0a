"""Micro-benchmark: what the secrets guard adds to one write, per 1 kB value, on the daemon.

    .venv/bin/python bench/secrets_scan.py

It times :meth:`SecretGuard.text` (what ``redis_set`` calls on its value, in the daemon's
process; the shim never imports the detector) on 1 kB values of several shapes, and the
import of the detector. Figures are microseconds per call, the median of several rounds.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import subprocess
import sys
import time

from coordinatord.services.secret_guard import SecretGuard
from coordinatord.settings import SecretSettings

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
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            guard.text(value, "value")
        rounds.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(rounds)


def main() -> None:
    guard = SecretGuard(SecretSettings(policy="refuse"))
    off = SecretGuard(SecretSettings(policy="off"))
    print(f"{'1 kB value':<16} {'refuse (us)':>12} {'off (us)':>9}")
    for name, value in values().items():
        print(f"{name:<16} {per_call_us(guard, value):>12.1f} {per_call_us(off, value):>9.2f}")
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
