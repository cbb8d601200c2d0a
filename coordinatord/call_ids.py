"""Ids for writes, so that a write the daemon resends is applied once (see
:mod:`coordinatord.store.once`).

Every tool call gets a call id when it starts (:func:`tool_call`, entered by
:func:`coordinatord.server.calls.invoke`); each exactly-once script the call runs takes the next
write id of its call (``<call id>.<n>``, :func:`next_write_id`) when it is invoked, and keeps it
for every resend of that invocation. So two script calls of one tool call are two writes, and a
resend after a lost reply is the same write. Work outside a tool call (the scheduled jobs, the
activity flusher, operator commands) gets a fresh call id per script invocation: a resend of it
is still recognised, and nothing else needs to share its id.

Why a context variable rather than an argument: the id is transport state, like the secret
guard's notes (:func:`coordinatord.services.secret_guard.collect_notes`). Passed explicitly, it
would run through every service method and tool handler (about fifty signatures) to reach the
one place that uses it, the script layer; and a service method called by a job and by a tool
would need two ways to get one. The variable is set in one place and read in one place.

Call ids are unique across processes and time, not only per connection and request: a record
lives on the backend, which several daemons (and a restarted daemon) share, so each process
draws a random token once and counts its calls after it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PROCESS_TOKEN = secrets.token_hex(8)
"""Random per process: no two daemons, nor one daemon before and after a restart, draw the same
call ids (64 bits: a collision among the daemons of one backend is out of reach)."""

_calls = itertools.count(1)


class _Call:
    """One call's id and how many write ids it has handed out."""

    __slots__ = ("_writes", "call_id")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._writes = 0

    def next_write_id(self) -> str:
        self._writes += 1
        return f"{self.call_id}.{self._writes}"


_current: ContextVar[_Call | None] = ContextVar("coordinatord_call", default=None)


def new_call_id() -> str:
    """A call id no other call of any daemon has: ``<process token>-<sequence>``."""
    return f"{PROCESS_TOKEN}-{next(_calls):x}"


@contextmanager
def tool_call() -> Iterator[str]:
    """Run the block as one call; yields its id (tasks the block starts share it)."""
    call = _Call(new_call_id())
    token = _current.set(call)
    try:
        yield call.call_id
    finally:
        _current.reset(token)


def current_call_id() -> str | None:
    """The id of the call running now, or ``None`` outside one."""
    call = _current.get()
    return None if call is None else call.call_id


def next_write_id() -> str:
    """The id of the write about to be sent: the next of the running call, or (outside a call)
    one of its own."""
    call = _current.get()
    if call is None:
        return f"{new_call_id()}.1"
    return call.next_write_id()
