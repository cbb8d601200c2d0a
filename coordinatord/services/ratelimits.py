"""Sliding-window rate limits: never more than ``limit`` units admitted in any ``window_s``.

Key layout, inside the project namespace:

- ``ratelimit:{service}:{window_s}`` — a sliding-window log: a sorted set with one member per
  admitted unit (a hit of cost ``c`` adds ``c`` members), scored by the server's time in µs.
  Its TTL is the window, refreshed on every admission, so an idle log disappears by itself.
  Memory is O(limit), hence ``ratelimits.max_limit``. It is a sorted set, so the raw
  ``redis_get`` cannot show it (``redis_ttl``/``redis_exists``/``redis_del`` work).
- ``_idx:ratelimit:{service}`` — the set of window lengths in use for the service, so
  ``reset`` finds every log without SCAN; its TTL covers the longest window in it.

Atomicity: a hit is one Lua script (``lua/ratelimit_hit.lua``): drop units older than the
window, count, admit all ``cost`` units or none. Because every unit inside any window-long
interval is still in the log when the last of them is admitted, and that admission checked
the count, no interval ever holds more than ``limit`` units. ``status`` is a read-only script;
``reset`` deletes the named logs and the set in one script that first checks that it was told
every window (else it hands back the set and the caller retries with it; only a stream of
brand-new windows, one per round trip, could outrun that, and then the call says so).

Calls may use one window with different limits: each call is judged against its own limit.

Nothing in Redis says what a budget's limit is (each call brings its own), so the service
remembers, in this process only, the limit the last ``hit``/``status`` of each service and window
used (:data:`BUDGETS_REMEMBERED` per project, the most recently used): :meth:`RateLimitService.budgets`
reads those logs' usage for ``coordinatord top``. Budgets used only through another daemon, or
before this one started, are not shown.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coordinatord.errors import ConflictError, InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import Namespace, ratelimit_key, ratelimit_windows_key
from coordinatord.services.shared import lua
from coordinatord.settings import RateLimitSettings
from coordinatord.store import Store

RESET_ATTEMPTS = 8
BUDGETS_REMEMBERED = 32
"""Budgets (service, window) remembered per project for :meth:`RateLimitService.budgets`."""
PROJECTS_REMEMBERED = 256
"""Projects whose budgets are remembered (the most recently used)."""

_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HIT, _STATUS, _RESET, _USAGE = (lua(f"ratelimit_{name}") for name in ("hit", "status", "reset", "usage"))


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class RateLimitResult(_Result):
    allowed: bool = Field(
        description="hit: whether it was admitted (a refused hit consumes nothing); "
        "status: whether a hit of cost 1 would be admitted now"
    )
    used: int = Field(description="units admitted in the last window_s seconds, this hit included")
    remaining: int = Field(description="units still free in the window (limit - used, at least 0)")
    reset_in_s: float = Field(
        description="when allowed: seconds until the oldest unit leaves the window (0 if none); "
        "when refused: seconds until the same hit would be admitted"
    )


class RateLimitResetResult(_Result):
    service: str
    windows_cleared: int = Field(description="how many window logs of the service were deleted")


class RateLimitBudget(_Result):
    service: str
    window_s: int
    limit: int = Field(description="the limit the last call through this daemon gave")
    used: int = Field(description="units admitted in the last window_s seconds")


class RateLimitBudgets(_Result):
    budgets: list[RateLimitBudget] = Field(description="the most recently used first")
    total: int = Field(description="budgets this daemon remembers for the project")


# --- Pure rules -------------------------------------------------------------------------------


def check_service(service: str) -> str:
    """A service name becomes part of key names: 1-64 of ``A-Z a-z 0-9 . _ -``."""
    if not _SERVICE.fullmatch(service):
        raise InvalidArgumentError(
            "argument 'service' must be 1-64 characters of letters, digits, '.', '_' or '-'; "
            f"got {service[:80]!r}"
        )
    return service


def check_window(limit: int, window_s: int, settings: RateLimitSettings) -> None:
    """The configured ceilings; the floors (at least 1) are the tool's argument models'."""
    if limit > settings.max_limit:
        raise LimitExceededError(
            f"argument 'limit' is {limit}; the limit is ratelimits.max_limit = {settings.max_limit}"
        )
    if window_s > settings.max_window_s:
        raise LimitExceededError(
            f"argument 'window_s' is {window_s} s; the limit is "
            f"ratelimits.max_window_s = {settings.max_window_s}"
        )


def check_cost(cost: int, limit: int) -> int:
    """``cost`` against ``limit`` (two arguments); ``cost`` >= 1 is the tool's argument model's."""
    if cost > limit:
        raise InvalidArgumentError(
            f"argument 'cost' is {cost}, above 'limit' {limit}: such a hit could never be admitted"
        )
    return cost


def seconds_until_leaves(unit_us: int, window_s: int, now_us: int) -> float:
    """Seconds until a unit admitted at ``unit_us`` leaves a ``window_s`` window, rounded up to
    the millisecond so that waiting that long is always enough; 0 if it has left.
    """
    left_us = unit_us + window_s * 1_000_000 - now_us
    return 0.0 if left_us <= 0 else math.ceil(left_us / 1000) / 1000


def window_result(
    allowed: bool, used: int, limit: int, window_s: int, deciding_us: int | None, now_us: int
) -> RateLimitResult:
    """The reply for a script's facts: ``deciding_us`` is the score of the unit whose leaving
    matters (the oldest when admitted, the one that makes room when refused), or ``None``.
    """
    reset = 0.0 if deciding_us is None else seconds_until_leaves(deciding_us, window_s, now_us)
    return RateLimitResult(allowed=allowed, used=used, remaining=max(limit - used, 0), reset_in_s=reset)


def _score(raw: str | None) -> int | None:
    # Scores are integral µs below 2**53: exact as doubles, whatever notation the server prints.
    return None if raw is None or raw == "" else int(float(raw))


# --- The service ------------------------------------------------------------------------------


class RateLimitService:
    def __init__(self, store: Store, settings: RateLimitSettings) -> None:
        self._store = store
        self._settings = settings
        self._hit = store.script(_HIT)
        self._status = store.script(_STATUS, exactly_once=False)  # reads only
        self._reset = store.script(_RESET)
        self._usage = store.script(_USAGE, exactly_once=False)  # reads only
        # project id → (service, window_s) → limit, both the most recently used last.
        self._limits: OrderedDict[str, OrderedDict[tuple[str, int], int]] = OrderedDict()

    @property
    def settings(self) -> RateLimitSettings:
        return self._settings

    async def hit(
        self, ns: Namespace, service: str, limit: int, window_s: int, cost: int = 1
    ) -> RateLimitResult:
        """Admit ``cost`` units if the last ``window_s`` seconds hold room for them."""
        check_service(service)
        check_window(limit, window_s, self._settings)
        check_cost(cost, limit)
        self._remember(ns, service, window_s, limit)
        keys = [ns.key(ratelimit_key(service, window_s)), ns.key(ratelimit_windows_key(service))]
        admitted, used, deciding, now = await self._hit(keys, [limit, window_s, cost, secrets.token_hex(8)])
        return window_result(bool(admitted), int(used), limit, window_s, _score(deciding), int(now))

    async def status(self, ns: Namespace, service: str, limit: int, window_s: int) -> RateLimitResult:
        """What a hit of cost 1 would see now; admits and removes nothing."""
        check_service(service)
        check_window(limit, window_s, self._settings)
        self._remember(ns, service, window_s, limit)
        allowed, used, deciding, now = await self._status(
            [ns.key(ratelimit_key(service, window_s))], [limit, window_s]
        )
        return window_result(bool(allowed), int(used), limit, window_s, _score(deciding), int(now))

    def _remember(self, ns: Namespace, service: str, window_s: int, limit: int) -> None:
        limits = self._limits.get(ns.project_id)
        if limits is None:
            limits = self._limits[ns.project_id] = OrderedDict()
            if len(self._limits) > PROJECTS_REMEMBERED:
                self._limits.popitem(last=False)
        self._limits.move_to_end(ns.project_id)
        limits[(service, window_s)] = limit
        limits.move_to_end((service, window_s))
        if len(limits) > BUDGETS_REMEMBERED:
            limits.popitem(last=False)

    async def budgets(self, ns: Namespace, limit: int = 8) -> RateLimitBudgets:
        """Usage now of the ``limit`` budgets of the project used most recently through this
        daemon: one read-only script call. Read only."""
        remembered = list(reversed(self._limits.get(ns.project_id, {}).items()))
        shown = remembered[:limit]
        if not shown:
            return RateLimitBudgets(budgets=[], total=len(remembered))
        keys = [ns.key(ratelimit_key(service, window_s)) for (service, window_s), _ in shown]
        used: list[Any] = await self._usage(keys, [window_s for (_, window_s), _ in shown])
        return RateLimitBudgets(
            budgets=[
                RateLimitBudget(service=service, window_s=window_s, limit=budget, used=int(count))
                for ((service, window_s), budget), count in zip(shown, used, strict=True)
            ],
            total=len(remembered),
        )

    async def reset(self, ns: Namespace, service: str) -> RateLimitResetResult:
        """Delete every window log of ``service`` at once."""
        check_service(service)
        windows_key = ns.key(ratelimit_windows_key(service))
        windows = sorted(await self._store.smembers(windows_key))
        for _ in range(RESET_ATTEMPTS):
            logs = [ns.key(ratelimit_key(service, int(w))) for w in windows if w.isdigit()]
            reply: list[Any] = await self._reset([windows_key, *logs], windows)
            if int(reply[0]) >= 0:
                return RateLimitResetResult(service=service, windows_cleared=int(reply[0]))
            windows = [str(w) for w in reply[1:]]
        raise ConflictError(
            f"ratelimit_reset: the windows of service {service!r} kept changing during "
            f"{RESET_ATTEMPTS} attempts; try again"
        )
