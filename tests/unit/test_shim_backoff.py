"""The shim's reconnect backoff (coordinatord/shim/relay.py) and where a failed start's reason
is read from (coordinatord/shim/autostart.py), as pure functions."""

from __future__ import annotations

from pathlib import Path

from coordinatord.shim.autostart import _last_line
from coordinatord.shim.relay import FIRST_RETRY_S, MAX_RETRY_FIRST_START_S, MAX_RETRY_S, backoff_s


def test_the_backoff_doubles_to_its_cap_with_half_of_it_random() -> None:
    """50 ms doubling per step, never above the cap, never below half of the step's full wait."""
    for step in range(30):
        full = min(MAX_RETRY_S, FIRST_RETRY_S * 2**step)
        assert backoff_s(step, MAX_RETRY_S, 0.0) == full / 2
        assert full / 2 <= backoff_s(step, MAX_RETRY_S, 0.999) <= full
    assert backoff_s(0, MAX_RETRY_S, 0.999) <= 0.05
    assert backoff_s(10, MAX_RETRY_FIRST_START_S, 0.999) <= 0.25


def attempts_within(seconds: float, cap: float, jitter: float) -> int:
    at, step, count = 0.0, 0, 1
    while True:
        at += backoff_s(step, cap, jitter)
        step += 1
        if at > seconds:
            return count
        count += 1


def test_attempts_a_second_stay_few() -> None:
    """The ceiling the end-to-end test relies on: even with the shortest waits jitter gives, at
    most 7 attempts in the first second and about one a second after that."""
    assert attempts_within(1.0, MAX_RETRY_S, 0.0) <= 7
    assert attempts_within(60.0, MAX_RETRY_S, 0.0) <= 7 + 60
    assert attempts_within(60.0, MAX_RETRY_S, 0.999) <= 7 + 30


def test_a_failed_start_is_explained_by_its_own_lines_only(tmp_path: Path) -> None:
    """An earlier daemon's ready line is not the reason this start failed: only what was
    appended after the offset this start began at counts, and nothing is nothing."""
    log = tmp_path / "autostart.log"
    log.write_text("coordinatord 0.1.0 ready: socket /x, backend b, pid 1\n")
    offset = log.stat().st_size
    assert "ready:" in _last_line(log)  # what reading the whole log's end gave
    assert _last_line(log, since=offset) == ""
    with log.open("a") as handle:
        handle.write("--- started by coordinatord shim (pid 7): coordinatord serve\n")
    assert _last_line(log, since=offset) == ""
    with log.open("a") as handle:
        handle.write("coordinatord: limits.max_key_bytes = 1: too small\n\n")
    assert _last_line(log, since=offset) == "coordinatord: limits.max_key_bytes = 1: too small"
