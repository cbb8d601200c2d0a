"""The task graph's pure rules: argument checks and the ready order, without a server."""

from __future__ import annotations

import pytest

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.services import task_graph_rules as rules


def test_ready_score_orders_priority_first_then_age() -> None:
    """A higher priority sorts first whatever the ages; equal priorities older first."""
    old, new = 1_770_000_000_000, 1_770_000_000_001
    assert rules.ready_score(5, new) < rules.ready_score(4, old)
    assert rules.ready_score(0, old) < rules.ready_score(0, new)
    assert rules.ready_score(rules.PRIORITY_MIN, 2**42 - 1) < 2**53  # exact in a zset's double
    with pytest.raises(ValueError, match="outside"):
        rules.ready_score(0, 2**42)


def test_priority_defaults_and_bounds() -> None:
    """No priority is 0; the bounds are inclusive; beyond them the argument is named."""
    assert rules.check_priority(None) == 0
    assert rules.check_priority(-1000) == -1000 and rules.check_priority(1000) == 1000
    with pytest.raises(InvalidArgumentError, match="argument 'priority'"):
        rules.check_priority(-1001)


def test_depends_on_checks_name_the_argument() -> None:
    """Bad ids, self-dependency, repeats and too many are refused naming depends_on[i]."""
    assert rules.check_depends_on("t", None, 5) == []
    assert rules.check_depends_on("t", ["a", "b"], 5) == ["a", "b"]
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[1\]' names the task itself"):
        rules.check_depends_on("t", ["a", "t"], 5)
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[0\]' must be 1-128"):
        rules.check_depends_on("t", ["a,b"], 5)
    with pytest.raises(InvalidArgumentError, match=r"'depends_on\[2\]' repeats the task 'a'"):
        rules.check_depends_on("t", ["a", "b", "a"], 5)
    with pytest.raises(LimitExceededError, match=r"tasks\.max_depends_on = 1"):
        rules.check_depends_on("t", ["a", "b"], 1)


def test_labels_are_checked_and_deduplicated() -> None:
    """Labels keep their order without repeats; a comma or blank is refused; the count is capped."""
    assert rules.check_labels(["b", "a", "b"], 2) == ["b", "a"]
    with pytest.raises(InvalidArgumentError, match=r"'labels\[1\]'"):
        rules.check_labels(["ok", "a,b"], 4)
    with pytest.raises(LimitExceededError, match=r"tasks\.max_labels = 1"):
        rules.check_labels(["a", "b"], 1)
    with pytest.raises(InvalidArgumentError, match="argument 'label'"):
        rules.check_label("")


def test_limit_and_lists_round_trip() -> None:
    """task_ready's limit is capped by setting; join and split are inverse for checked ids."""
    assert rules.check_limit(100, 100) == 100
    with pytest.raises(LimitExceededError, match=r"tasks\.ready_max = 100"):
        rules.check_limit(101, 100)
    assert rules.split(rules.join(["a", "b.c"])) == ["a", "b.c"]
    assert rules.split("") == [] and rules.split(None) == []
