"""The one rule every store applies to a call: bounded in time, errors named in our terms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from coordinatord.errors import BackendError, BackendUnavailableError

T = TypeVar("T")


async def bounded_call(
    name: str,
    timeout_s: float,
    operation: Callable[[], Awaitable[T]],
    *,
    unreachable: tuple[type[BaseException], ...] = (),
    refused: tuple[type[BaseException], ...] = (),
    explain: Callable[[BaseException], BackendError | None] | None = None,
    timeout_hint: str = "",
) -> T:
    """Run ``operation`` (retries included) within ``timeout_s``; a timeout or an ``unreachable``
    error becomes :class:`BackendUnavailableError`, a ``refused`` one :class:`BackendError`,
    each naming the backend ``name`` — unless ``explain`` knows better (a missing password is
    not an unreachable server)."""
    try:
        # asyncio's own timeout, not anyio's fail_after: this wraps every backend call, and an
        # anyio cancel scope costs several times as much (the daemon runs on asyncio only).
        async with asyncio.timeout(timeout_s):
            return await operation()
    except TimeoutError:
        raise BackendUnavailableError(
            f"backend {name} did not answer within {timeout_s:g} s (backend.timeout_s){timeout_hint}",
            kind="timeout",
        ) from None
    except unreachable as exc:
        raise _explained(exc, explain) or BackendUnavailableError(
            f"backend {name} could not be reached: {exc}"
        ) from None
    except refused as exc:
        raise _explained(exc, explain) or BackendError(f"backend {name} refused the command: {exc}") from None


def _explained(
    exc: BaseException, explain: Callable[[BaseException], BackendError | None] | None
) -> BackendError | None:
    return explain(exc) if explain is not None else None
