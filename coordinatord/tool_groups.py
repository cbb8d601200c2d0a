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
    "messages",
    "files",
)
"""Every group, in the order ``tools.groups`` lists them by default. Groups exist even before
their tools do, so that config and ``--tools`` can name them."""


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
    "message_inbox": "messages",
    "message_thread": "messages",
    "files_check": "files",
    "files_list": "files",
}
"""Every tool whose ``readOnlyHint`` is true, with its group: what ``coordinatord editor add``
puts in an editor's ``alwaysAllow`` list (a unit test pins it against the registry). Kept here,
not derived from the registry, because the editor command must not import pydantic."""


def always_allow(groups: list[str] | None, allow_writes: bool) -> list[str]:
    """The tools an editor may call without asking: the read-only ones of the selection (groups,
    profiles, tool names, as ``--tools`` takes them; none given: the ``default`` profile, what a
    shim without ``--tools`` serves); with ``allow_writes``, the seed's eight raw tools first
    (those selected), then those."""
    wanted = selection(groups or list(DEFAULT_TOOLS))
    read_only = [name for name, group in READ_ONLY_TOOLS.items() if group in wanted or name in wanted]
    if not allow_writes:
        return read_only
    seed = [name for name in SEED_TOOLS if "kv" in wanted or name in wanted]
    return seed + [name for name in read_only if name not in seed]


# --- Profiles ------------------------------------------------------------------------------------
# A profile is a name for a selection of groups and single tools, usable wherever a group is
# (``--tools``, ``editor add --tools``, ``tools.groups``). A connection's selection is one
# frozenset holding group names and tool names side by side (the registry refuses a tool named
# like a group), so that a profile can pick a few tools of a group without a second mechanism.

OUTPUT_SCHEMAS = "output_schemas"
"""Not a group: named in a selection, it adds each tool's (compacted) ``outputSchema`` to
``tools/list``. Structured results are sent either way; the schemas let a client validate them,
at about twice the bytes of the list without them, so only ``full`` includes them."""

MINIMAL: tuple[str, ...] = (
    # who is here, and what they hold
    "agent_register",
    "agent_heartbeat",
    "agent_list",
    "lock_acquire",
    "lock_release",
    "lock_list",
    "files_reserve",
    "files_release",
    "files_check",
    # talk, and take work
    "message_send",
    "message_inbox",
    "task_ready",
    "task_claim",
    "task_update",
)

PROFILES: dict[str, tuple[str, ...]] = {
    "minimal": MINIMAL,
    # minimal's workflows made whole (create and follow tasks, read a message's body, renew a
    # lease) beside the seed's raw tools: about 12 kB, leaving room under the 16 kB target.
    "default": ("kv", *MINIMAL, "tasks", "message_read", "lock_renew", "files_renew"),
    "full": (*GROUPS, OUTPUT_SCHEMAS),
}
"""``minimal``: the everyday coordination set (presence, locks and file reservations, messages,
claiming ready tasks); ``default`` (what a shim serves without ``--tools``, and ``tools.groups``'
default): the seed's eight ``kv`` tools, ``minimal``, the whole ``tasks`` group, ``message_read``,
``lock_renew`` and ``files_renew``; ``full``: every group, with output
schemas. Entries are group or tool names (or :data:`OUTPUT_SCHEMAS`)."""

DEFAULT_TOOLS: tuple[str, ...] = ("default",)
"""The selection when neither ``--tools`` nor ``tools.groups`` names one."""


def selection(names: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The group and tool names that ``--tools`` names select, profiles expanded. Unknown
    names are kept (the caller checks them first with :func:`unknown_tool_names`)."""
    selected: set[str] = set()
    for name in names:
        selected.update(PROFILES.get(name, (name,)))
    return frozenset(selected)


def unknown_tool_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names of ``--tools`` that are neither a profile nor a group, sorted."""
    return sorted(set(names) - set(GROUPS) - set(PROFILES) - {OUTPUT_SCHEMAS})


def unknown_tools_message(unknown: list[str]) -> str:
    """What the shim, ``editor add`` and the daemon say about such names."""
    return (
        f"unknown tool group(s) {', '.join(unknown)} in --tools; known profiles: "
        f"{', '.join(sorted(PROFILES))}; known groups: {', '.join(sorted(GROUPS))} (and {OUTPUT_SCHEMAS})"
    )
