"""Wall-clock time as a dependency, so tests can move time instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch, like :func:`time.time`."""

system_clock: Clock = time.time
