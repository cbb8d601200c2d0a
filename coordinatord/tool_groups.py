"""The names of the tool groups, in one place the shim can import (standard library only): it
checks ``--tools`` itself, so that a typo reaches the user before any byte is relayed."""

from __future__ import annotations

GROUPS: tuple[str, ...] = (
    "kv",
    "sessions",
    "tasks",
    "agents",
    "locks",
    "ratelimit",
    "activity",
    "memory_bank",
)
"""Every group, in the order ``tools.groups`` lists them by default. Groups exist even before
their tools do, so that config and ``--tools`` can name them."""


def unknown_groups_message(unknown: list[str]) -> str:
    """What the shim and the daemon say about groups that do not exist."""
    return f"unknown tool group(s) {', '.join(unknown)} in --tools; known groups: {', '.join(sorted(GROUPS))}"
