"""Small words in messages, said right: ``1 turn``, ``2 turns``, ``4 min 58 s``. Standard library
only: the operator commands that must start fast use them."""

from __future__ import annotations

from typing import Any


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless there is exactly one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration(seconds: Any) -> str:
    """A length of time as people read it: `0.2 s`, `33 s`, `4 min 58 s`, `3 h 5 min`, `2 d 1 h`."""
    if not isinstance(seconds, int | float):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def skew_words(skew_s: float) -> str:
    """``2 h ahead of the backend's``: a clock skew (this machine's clock minus the backend's).
    Whole seconds from 10 s on: a reading is off by up to half a round trip, and 7199.9998 s is
    two hours, not "1 h 59 min"."""
    size = abs(skew_s)
    direction = "ahead of" if skew_s > 0 else "behind"
    return f"{duration(size if size < 10 else round(size))} {direction} the backend's"
