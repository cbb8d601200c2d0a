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


SEED_TOOLS: tuple[str, ...] = (
    "redis_get",
    "redis_set",
    "redis_del",
    "redis_keys",
    "redis_exists",
    "redis_ttl",
    "redis_expire",
    "redis_ping",
)
"""The seed's eight raw tools, in the order of its ``alwaysAllow`` list."""

READ_ONLY_TOOLS: dict[str, str] = {
    "redis_get": "kv",
    "redis_keys": "kv",
    "redis_exists": "kv",
    "redis_ttl": "kv",
    "redis_ping": "kv",
    "session_load": "sessions",
    "session_history": "sessions",
    "session_list": "sessions",
    "task_get": "tasks",
    "task_list": "tasks",
    "task_ready": "tasks",
    "agent_list": "agents",
    "lock_list": "locks",
    "ratelimit_status": "ratelimit",
    "activity_recent": "activity",
    "memory_bank_index": "memory_bank",
    "memory_bank_get": "memory_bank",
}
"""Every tool whose ``readOnlyHint`` is true, with its group: what ``coordinatord editor add``
puts in an editor's ``alwaysAllow`` list (a unit test pins it against the registry). Kept here,
not derived from the registry, because the editor command must not import pydantic."""


def always_allow(groups: list[str] | None, allow_writes: bool) -> list[str]:
    """The tools an editor may call without asking: the read-only ones (of ``groups`` only,
    when given); with ``allow_writes``, the seed's eight raw tools first, then those."""
    wanted = set(groups) if groups else set(GROUPS)
    read_only = [name for name, group in READ_ONLY_TOOLS.items() if group in wanted]
    if not allow_writes:
        return read_only
    seed = list(SEED_TOOLS) if "kv" in wanted else []
    return seed + [name for name in read_only if name not in seed]
