"""Test-only: a machine whose wall clock is off, for the one process that puts this folder on its
``PYTHONPATH`` (Python imports ``sitecustomize`` at start-up, before any other module).

``SKEWED_CLOCK_OFFSET_S`` seconds (may be negative) are added to every wall-clock reading of that
process: ``time.time``, ``time.time_ns``, ``time.clock_gettime(CLOCK_REALTIME)`` and
``datetime.datetime.now``/``utcnow``/``today``. Clocks nobody sets (``time.monotonic``,
``CLOCK_BOOTTIME``, ``perf_counter``) are left alone, as on a real machine whose clock is wrong.
Nothing of the product reads this variable: the tests set it in a daemon's environment only, so
that a backend started by the tests (and every other process) keeps the true time.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time
from typing import Any

OFFSET_VARIABLE = "SKEWED_CLOCK_OFFSET_S"


def _install(offset_s: float) -> None:
    offset_ns = round(offset_s * 1e9)
    real_time, real_time_ns = _time.time, _time.time_ns
    real_gettime, real_gettime_ns = _time.clock_gettime, _time.clock_gettime_ns
    realtime = _time.CLOCK_REALTIME

    def time() -> float:
        return real_time() + offset_s

    def time_ns() -> int:
        return real_time_ns() + offset_ns

    def clock_gettime(clock: int) -> float:
        return real_gettime(clock) + (offset_s if clock == realtime else 0.0)

    def clock_gettime_ns(clock: int) -> int:
        return real_gettime_ns(clock) + (offset_ns if clock == realtime else 0)

    _time.time, _time.time_ns = time, time_ns
    _time.clock_gettime, _time.clock_gettime_ns = clock_gettime, clock_gettime_ns

    real_datetime = _datetime.datetime
    shift = _datetime.timedelta(seconds=offset_s)

    class _Instances(type):
        # A datetime made by C code (pydantic, the datetime module itself) is of the real class:
        # it must still pass isinstance checks against the shifted one that code imported.
        def __instancecheck__(cls, obj: Any) -> bool:
            return isinstance(obj, real_datetime)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, real_datetime)

    class ShiftedDatetime(_datetime.datetime, metaclass=_Instances):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> Any:
            return real_datetime.now(tz) + shift

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.now(_datetime.UTC).replace(tzinfo=None) + shift

        @classmethod
        def today(cls) -> Any:
            return real_datetime.now() + shift

    _datetime.datetime = ShiftedDatetime  # type: ignore[misc]


_offset = os.environ.get(OFFSET_VARIABLE)
if _offset:
    _install(float(_offset))
