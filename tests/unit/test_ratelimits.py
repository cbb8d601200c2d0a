"""Rate-limit rules without a server: argument checks and the sliding-window maths.

:class:`SlidingLog` is the executable specification that ``lua/ratelimit_hit.lua`` implements
step for step (trim units a window old, admit all of a hit or none, report the deciding unit),
so that the properties below pin the semantics the script must keep.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.services.ratelimits import (
    RateLimitResult,
    check_cost,
    check_service,
    check_window,
    seconds_until_leaves,
    window_result,
)
from coordinatord.settings import RateLimitSettings

SETTINGS = RateLimitSettings(max_window_s=3_600, max_limit=1_000)
S = 1_000_000  # µs per second


@dataclass
class SlidingLog:
    """One window log as the Lua script keeps it: admitted units' times in µs."""

    limit: int
    window_s: int
    units: list[int] = field(default_factory=list)

    def _trim(self, now_us: int) -> None:
        # Half-open windows (now - w, now]: a unit exactly one window old has left.
        del self.units[: bisect.bisect_right(self.units, now_us - self.window_s * S)]

    def hit(self, now_us: int, cost: int) -> RateLimitResult:
        self._trim(now_us)
        used = len(self.units)
        if used + cost > self.limit:
            deciding = self.units[used + cost - self.limit - 1]
            return window_result(False, used, self.limit, self.window_s, deciding, now_us)
        self.units += [now_us] * cost
        return window_result(True, used + cost, self.limit, self.window_s, self.units[0], now_us)

    def probe(self, now_us: int, cost: int) -> RateLimitResult:
        """What the hit would get, leaving this log as it is."""
        return SlidingLog(self.limit, self.window_s, list(self.units)).hit(now_us, cost)


hits = st.lists(
    st.tuples(st.integers(0, 400_000), st.integers(1, 4)),  # (µs since the previous hit, cost)
    min_size=1,
    max_size=80,
)


@settings(max_examples=300)
@given(limit=st.integers(4, 12), window_s=st.integers(1, 2), sequence=hits)
def test_no_window_ever_holds_more_than_the_limit(
    limit: int, window_s: int, sequence: list[tuple[int, int]]
) -> None:
    """Whatever the timing and costs, no window_s-long interval contains more than limit admitted units."""
    log, now, admitted = SlidingLog(limit, window_s), 10 * S, []
    for gap, cost in sequence:
        now += gap
        result = log.hit(now, cost)
        if result.allowed:
            admitted += [now] * cost
        assert result.used + result.remaining == limit or result.remaining == 0
    for index, end in enumerate(admitted):
        start = bisect.bisect_right(admitted, end - window_s * S)
        assert index + 1 - start <= limit


@settings(max_examples=300)
@given(limit=st.integers(4, 12), window_s=st.integers(1, 2), sequence=hits, cost=st.integers(1, 4))
def test_a_refusal_says_exactly_when_the_same_hit_fits(
    limit: int, window_s: int, sequence: list[tuple[int, int]], cost: int
) -> None:
    """After a refusal, the same hit fits reset_in_s later and not a millisecond sooner."""
    log, now = SlidingLog(limit, window_s), 10 * S
    for gap, step_cost in sequence:
        now += gap
        log.hit(now, step_cost)
        refused = log.probe(now, cost)
        if refused.allowed:
            continue
        wait_us = round(refused.reset_in_s * S)
        assert wait_us > 0
        assert log.probe(now + wait_us, cost).allowed
        assert not log.probe(now + wait_us - 1_000, cost).allowed


def test_an_admitted_hit_reports_when_its_oldest_unit_leaves() -> None:
    """When allowed, reset_in_s is the time until the oldest unit in the window frees."""
    log = SlidingLog(limit=3, window_s=10)
    assert log.hit(100 * S, 1).reset_in_s == 10
    second = log.hit(104 * S, 2)
    assert (second.allowed, second.used, second.remaining, second.reset_in_s) == (True, 3, 0, 6)
    refused = log.hit(105 * S, 2)
    assert (refused.allowed, refused.used, refused.remaining, refused.reset_in_s) == (False, 3, 0, 9)


def test_seconds_until_leaves_rounds_up_to_the_millisecond() -> None:
    """Waiting the reported time is always enough: partial milliseconds round up; gone is 0."""
    assert seconds_until_leaves(0, 1, 0) == 1
    assert seconds_until_leaves(0, 1, 1) == 1  # 999 999 µs left → 1.000 s
    assert seconds_until_leaves(0, 1, 1_001) == 0.999
    assert seconds_until_leaves(0, 1, S) == 0
    assert seconds_until_leaves(0, 1, 5 * S) == 0


def test_window_result_without_units_and_over_a_smaller_limit() -> None:
    """An empty window resets in 0; usage above a caller's smaller limit leaves 0 remaining."""
    assert window_result(True, 0, 5, 60, None, 0) == RateLimitResult(
        allowed=True, used=0, remaining=5, reset_in_s=0
    )
    assert window_result(False, 8, 5, 60, 0, 0).remaining == 0


@pytest.mark.parametrize("service", ["firecrawl", "github-api", "a", "x" * 64, "v1.2_beta"])
def test_service_names_that_fit_in_a_key(service: str) -> None:
    """Letters, digits, '.', '_' and '-' up to 64 characters make a service name."""
    assert check_service(service) == service


@pytest.mark.parametrize("service", ["", "a:b", "x" * 65, "a b", "a*", "ü", "a{b}"])
def test_service_names_that_would_bend_a_key_are_refused(service: str) -> None:
    """Colons, globs, braces, spaces and over-long names are refused, naming the argument."""
    with pytest.raises(InvalidArgumentError, match="'service' must be 1-64 characters"):
        check_service(service)


def test_limits_windows_and_costs_name_their_bound() -> None:
    """Each bound names the argument and, for configured caps, the setting (the floors of 1 are
    the tools' argument models', see tests/unit/test_tool_limits.py)."""
    check_window(1_000, 3_600, SETTINGS)
    with pytest.raises(LimitExceededError, match=r"ratelimits\.max_limit = 1000"):
        check_window(1_001, 60, SETTINGS)
    with pytest.raises(LimitExceededError, match=r"ratelimits\.max_window_s = 3600"):
        check_window(10, 3_601, SETTINGS)
    assert check_cost(10, 10) == 10
    with pytest.raises(InvalidArgumentError, match="could never be admitted"):
        check_cost(11, 10)
