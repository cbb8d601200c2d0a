"""Secrets a call must keep out of the daemon's log and the activity stream while it runs.

Under ``secrets.policy = "warn"`` a call whose identifier (a key, an id, a path…) holds a
secret goes ahead with the identifier as given, so the services, the handler and their error
texts all see it; what they log must not. :func:`coordinatord.server.calls.invoke` wraps such a
call in :func:`scrubbing`, and the two places text leaves the process for a file or the
backend's log-like stream apply :func:`scrub`: the structlog processor :func:`scrub_event`
(every line the call logs, tracebacks included) and the activity log's ``record``. A context
variable, so concurrent calls never see each other's secrets, and nothing is paid when unset
(every other call). Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_replacements: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("coordinatord_scrub", default=())


@contextmanager
def scrubbing(replacements: Mapping[str, str]) -> Iterator[None]:
    """While the block runs, each key of ``replacements`` (a secret's text) is shown as its
    value (``[REDACTED:<kind>]``) in what :func:`scrub` is given. Nothing is set for none."""
    if not replacements:
        yield
        return
    # Longest first: a secret that contains another is replaced whole.
    ordered = tuple(sorted(replacements.items(), key=lambda item: -len(item[0])))
    token = _replacements.set(_replacements.get() + ordered)
    try:
        yield
    finally:
        _replacements.reset(token)


def scrub(text: str) -> str:
    """``text`` with the running call's secrets replaced (unchanged outside :func:`scrubbing`)."""
    for secret, shown in _replacements.get():
        text = text.replace(secret, shown)
    return text


def active() -> bool:
    return bool(_replacements.get())


def scrub_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the event's string fields scrubbed (after the traceback is
    formatted, so that is too)."""
    if _replacements.get():
        for name, value in event_dict.items():
            if isinstance(value, str):
                event_dict[name] = scrub(value)
    return event_dict
