"""The task graph's pure rules: dependencies, labels, priority and the ready order. No I/O.

A task may name, when it is created, tasks it depends on (``depends_on``), labels and a
priority. It is *ready* while every dependency is ``completed`` (the task status of
:mod:`coordinatord.services.task_rules`: every step completed), it is not completed itself, and
nobody has claimed it. The ready index orders tasks by priority, highest first, then by age,
oldest first (creation time in ms), then by task id: :func:`ready_score` packs the first two
into one zset score, and a zset orders equal scores by member.

Why cycles need a check at all: a dependency must already exist when it is named (an unknown
one is refused), so plain creation can only point at older tasks and never closes a cycle; a
task cannot name itself (refused here). ``task_create(replace=true)`` can, though: it gives an
existing task, which others may already depend on, new dependencies. That case is refused in
``lua/task_write.lua``, which walks the task's dependents inside the same script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.keyspace import check_id

PRIORITY_MIN = -1_000
PRIORITY_MAX = 1_000
DEFAULT_PRIORITY = 0
_AGE_BITS = 42
"""Creation times in ms below 2**42 (until the year 2109) fit beside the priority: the score
stays below 2**53, where a zset's double is still exact."""
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SEPARATOR = ","
"""Joins ids and labels in the graph hash; neither can contain it."""


def ready_score(priority: int, created_ms: int) -> int:
    """The ready-index score: lower comes first, so higher priority first, then older first."""
    if not 0 <= created_ms < 1 << _AGE_BITS:
        raise ValueError(f"creation time {created_ms} ms is outside the score's range")
    return ((PRIORITY_MAX - priority) << _AGE_BITS) + created_ms


def check_priority(priority: int | None) -> int:
    if priority is None:
        return DEFAULT_PRIORITY
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidArgumentError(
            f"argument 'priority' must be from {PRIORITY_MIN} to {PRIORITY_MAX} (higher is more "
            f"urgent; default {DEFAULT_PRIORITY}), got {priority}"
        )
    return priority


def check_depends_on(task_id: str, depends_on: Sequence[str] | None, max_depends_on: int) -> list[str]:
    """Well-formed, distinct task ids, not the task itself, at most ``max_depends_on``."""
    if not depends_on:
        return []
    if len(depends_on) > max_depends_on:
        raise LimitExceededError(
            f"argument 'depends_on' has {len(depends_on)} tasks; the limit is "
            f"tasks.max_depends_on = {max_depends_on}"
        )
    seen: set[str] = set()
    for index, dep in enumerate(depends_on):
        argument = f"depends_on[{index}]"
        check_id(dep, argument)
        if dep == task_id:
            raise InvalidArgumentError(
                f"argument {argument!r} names the task itself; a task cannot depend on itself"
            )
        if dep in seen:
            raise InvalidArgumentError(f"argument {argument!r} repeats the task {dep!r}")
        seen.add(dep)
    return list(depends_on)


def check_labels(labels: Sequence[str] | None, max_labels: int) -> list[str]:
    """Labels of 1-64 letters, digits, '.', '_' or '-'; repeats dropped (order kept)."""
    if not labels:
        return []
    unique = list(dict.fromkeys(labels))
    if len(unique) > max_labels:
        raise LimitExceededError(
            f"argument 'labels' has {len(unique)} labels; the limit is tasks.max_labels = {max_labels}"
        )
    for index, label in enumerate(labels):
        check_label(label, f"labels[{index}]")
    return unique


def check_label(label: str, argument: str = "label") -> str:
    if not _LABEL.fullmatch(label):
        raise InvalidArgumentError(
            f"argument {argument!r} must be 1-64 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {label[:80]!r}"
        )
    return label


def check_limit(limit: int, maximum: int) -> int:
    if limit > maximum:
        raise LimitExceededError(f"argument 'limit' is {limit}; the limit is tasks.ready_max = {maximum}")
    return limit


def join(items: Sequence[str]) -> str:
    return SEPARATOR.join(items)


def split(text: str | None) -> list[str]:
    return [item for item in (text or "").split(SEPARATOR) if item]
