"""Lock rules without a server: argument checks, backoff bounds, local wake-ups."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinatord.errors import InvalidArgumentError, LimitExceededError
from coordinatord.services.locks import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    _Wakeups,
    backoff_delay,
    check_resource,
    check_token,
    check_ttl,
    check_wait,
    lease_seconds,
)
from coordinatord.settings import LockSettings

SETTINGS = LockSettings(default_ttl_s=60, max_ttl_s=600, max_wait_ms=5_000)


@pytest.mark.parametrize("resource", ["src/app.py", "db:migrations", "port 8080", "ü/{x}*?", "r" * 512])
def test_resources_are_any_printable_text(resource: str) -> None:
    """File paths, names with spaces, braces, globs and non-ASCII text are valid resources."""
    assert check_resource(resource) == resource


@pytest.mark.parametrize(
    ("resource", "error", "message"),
    [
        ("", InvalidArgumentError, "must not be empty"),
        ("a\x00b", InvalidArgumentError, "printable"),
        ("a\tb", InvalidArgumentError, "printable"),
        ("a\u2028b", InvalidArgumentError, "printable"),
        ("ü" * 257, LimitExceededError, "514 bytes; the limit is 512"),
    ],
)
def test_bad_resources_are_refused(resource: str, error: type[Exception], message: str) -> None:
    """Empty, control-character and oversized resources are refused, naming the argument."""
    with pytest.raises(error, match=message) as caught:
        check_resource(resource)
    assert "'resource'" in str(caught.value)


def test_ttl_and_wait_bounds_name_their_setting() -> None:
    """ttl is at most locks.max_ttl_s and wait_ms at most locks.max_wait_ms; the errors say which
    (the floors are the tools' argument models', see tests/unit/test_tool_limits.py)."""
    assert check_ttl(1, SETTINGS) == 1 and check_ttl(600, SETTINGS) == 600
    assert check_wait(0, SETTINGS) == 0 and check_wait(5_000, SETTINGS) == 5_000
    with pytest.raises(LimitExceededError, match=r"'ttl' is 601 s; the limit is locks\.max_ttl_s = 600"):
        check_ttl(601, SETTINGS)
    with pytest.raises(LimitExceededError, match=r"locks\.max_wait_ms = 5000"):
        check_wait(5_001, SETTINGS)


def test_tokens_must_be_plausible() -> None:
    """An empty or absurdly long token is an argument error, not a failed release."""
    assert check_token("ab" * 16) == "ab" * 16
    with pytest.raises(InvalidArgumentError, match="'token' must not be empty"):
        check_token("")
    with pytest.raises(InvalidArgumentError, match="'token' is 129 characters"):
        check_token("a" * 129)


@given(
    attempt=st.integers(0, 1_000),
    jitter=st.floats(0, 1, exclude_max=True),
    deadline=st.floats(0, 60),
    holder=st.none() | st.floats(0, 3_600),
)
def test_backoff_never_passes_the_deadline_the_lease_or_the_cap(
    attempt: int, jitter: float, deadline: float, holder: float | None
) -> None:
    """A waiter never sleeps past its deadline, past the holder's lease end, or longer than the cap."""
    delay = backoff_delay(attempt, jitter, deadline_left_s=deadline, holder_left_s=holder)
    assert 0 <= delay <= min(BACKOFF_CAP_S, deadline, BACKOFF_CAP_S if holder is None else holder)


def test_backoff_grows_from_the_base_to_the_cap() -> None:
    """Without other bounds the delay doubles per attempt from the base and then stays at the cap."""
    far = {"deadline_left_s": 60.0, "holder_left_s": None}
    delays = [backoff_delay(n, 0.999_999, **far) for n in range(12)]  # type: ignore[arg-type]
    assert delays[0] == pytest.approx(BACKOFF_BASE_S, rel=1e-3)
    assert delays[1] == pytest.approx(2 * BACKOFF_BASE_S, rel=1e-3)
    assert delays[-1] == pytest.approx(BACKOFF_CAP_S, rel=1e-3)
    assert backoff_delay(0, 0.0, **far) == pytest.approx(BACKOFF_BASE_S / 2)  # type: ignore[arg-type]


def test_lease_seconds_reads_pttl() -> None:
    """PTTL milliseconds become seconds; a key without expiry has no lease end."""
    assert lease_seconds(1_500) == 1.5
    assert lease_seconds(0) == 0
    assert lease_seconds(-1) is None


@pytest.mark.anyio
async def test_a_release_wakes_the_oldest_local_waiter_only() -> None:
    """notify wakes one waiter, oldest first; waiters that time out leave no trace."""
    wakeups, key = _Wakeups(), ("project", "resource")
    order: list[str] = []

    async def wait(name: str, limit_s: float) -> None:
        await wakeups.wait(key, limit_s)
        order.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, "first", 60)
            tg.start_soon(wait, "second", 60)
            while wakeups.count(key) < 2:
                await anyio.lowlevel.checkpoint()
            wakeups.notify(key)
            while order != ["first"]:
                await anyio.lowlevel.checkpoint()
            assert wakeups.count(key) == 1
            wakeups.notify(key)
    assert order == ["first", "second"]
    assert wakeups.count(key) == 0
    await wakeups.wait(key, 0)
    assert wakeups.count(key) == 0 and wakeups._queues == {}
    wakeups.notify(key)  # nobody waiting: nothing happens
