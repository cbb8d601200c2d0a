"""Placeholder: being written."""

from __future__ import annotations

from coordinatord.jobs import JobContext


async def run(ctx: JobContext) -> dict[str, int]:
    return {}
