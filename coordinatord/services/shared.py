"""What several services need alike: one timestamp format, one way to load a Lua script, one
jittered backoff for compare-and-set retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import anyio

LUA_DIR = Path(__file__).with_name("lua")


def iso_timestamp(seconds: float) -> str:
    """UTC, millisecond precision, ``Z`` suffix: what JavaScript's ``toISOString()`` gives (the
    seed's documents are written by JavaScript agents too)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cache
def lua(name: str, after: str | None = None) -> str:
    """The source of ``services/lua/<name>.lua`` (read once per process), put after the
    fragment ``after`` (e.g. the local functions several scripts share: Lua has no include)."""
    source = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return source if after is None else lua(after) + source


async def backoff(attempt: int, base_s: float, cap_s: float) -> None:
    """Sleep before compare-and-set retry ``attempt`` (0-based), with full jitter: writers that
    lost the same race spread out instead of colliding again in lockstep."""
    await anyio.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))  # noqa: S311 - jitter, not crypto
