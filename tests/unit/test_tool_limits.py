"""Each static bound is stated once, in the tool's argument model; the configured ceilings stay
in the services. Through the tool, both are refused with the argument named."""

from __future__ import annotations

from typing import Any

import pytest

from coordinatord.errors import InvalidArgumentError
from coordinatord.tool_groups import GROUPS
from coordinatord.tools import build_registry

REGISTRY = build_registry()

LOCK = {"resource": "r"}
RATE = {"service": "svc", "limit": 10, "window_s": 60}


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("lock_acquire", {**LOCK, "ttl": 0}, "argument 'ttl' must be at least 1, got 0"),
        ("lock_acquire", {**LOCK, "wait_ms": -1}, "argument 'wait_ms' must be at least 0, got -1"),
        ("lock_renew", {**LOCK, "token": "t", "ttl": 0}, "argument 'ttl' must be at least 1, got 0"),
        (
            "session_save",
            {"session_id": "s", "context": {}, "ttl": 0},
            "argument 'ttl' must be at least 1, got 0",
        ),
        ("session_history", {"session_id": "s", "last": 0}, "argument 'last' must be at least 1, got 0"),
        (
            "session_append",
            {"session_id": "s", "role": "robot", "message": "m"},
            "argument 'role' must be one of user, assistant, system, tool; got 'robot'",
        ),
        ("ratelimit_hit", {**RATE, "limit": 0}, "argument 'limit' must be at least 1, got 0"),
        ("ratelimit_hit", {**RATE, "window_s": 0}, "argument 'window_s' must be at least 1, got 0"),
        ("ratelimit_hit", {**RATE, "cost": 0}, "argument 'cost' must be at least 1, got 0"),
        ("ratelimit_status", {**RATE, "limit": -5}, "argument 'limit' must be at least 1, got -5"),
        ("ratelimit_status", {**RATE, "window_s": 0}, "argument 'window_s' must be at least 1, got 0"),
    ],
)
def test_static_bounds_are_refused_by_the_model(tool: str, arguments: dict[str, Any], message: str) -> None:
    """The bound the services no longer check is refused before any service runs."""
    spec = REGISTRY.get(tool, frozenset(GROUPS))
    assert spec is not None
    with pytest.raises(InvalidArgumentError) as caught:
        spec.parse_arguments(arguments)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("tool", "arguments", "field", "value"),
    [
        ("lock_acquire", {**LOCK, "ttl": 1, "wait_ms": 0}, "ttl", 1),
        ("lock_acquire", LOCK, "wait_ms", 0),
        ("session_history", {"session_id": "s", "last": 1}, "last", 1),
        ("ratelimit_hit", {**RATE, "cost": 1}, "cost", 1),
    ],
)
def test_the_bound_itself_is_allowed(tool: str, arguments: dict[str, Any], field: str, value: int) -> None:
    """The bounds are inclusive, as the schemas' ``minimum`` says."""
    spec = REGISTRY.get(tool, frozenset(GROUPS))
    assert spec is not None
    assert getattr(spec.parse_arguments(arguments), field) == value
