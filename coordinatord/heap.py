"""Keeping the daemon's memory where it was after a large read.

A large read (a session archive of tens of MiB) allocates as much again in strings and objects,
and freeing them does not by itself shrink the process: glibc's malloc keeps freed memory to
reuse it. Measured with a 60 MiB archive restored through a real daemon (VmRSS; the test is
tests/e2e/test_hostile_project_files.py):

- as it was: the daemon stayed 70 MB larger for good (91 -> 161 MB);
- ``malloc_trim(0)`` after the restore: still 32 MB larger. The archive is parsed in a worker
  thread, whose allocations come from that thread's own arena, and ``malloc_trim`` returns the
  free pages inside every arena but shrinks only the *main* arena's top, where the freed
  archive ended up in the thread's (kept because freeing a large block had raised malloc's
  trim threshold to up to 64 MiB);
- one arena for every thread (``M_ARENA_MAX`` = 1, set at start: :func:`use_one_arena`) and
  ``malloc_trim(0)`` after large reads (:func:`give_back_freed_memory`): back to where it was
  (within 0.5 MB).

Fixing malloc's trim and mmap thresholds instead (which also ends the dynamic threshold) gave
the same, but maps and unmaps every block over 128 KiB each time: allocating and freeing 1 MiB
took twice as long (about 260 -> 530 us), which a daemon serving 1 MiB values would pay on each.
One arena costs next to nothing here: Python threads allocate holding the GIL, so they hardly
ever contend for it.

Elsewhere than glibc (musl, macOS) neither call exists and both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

TRIM_AFTER_BYTES = 8 * 1024 * 1024
"""A read of at least this many bytes is followed by :func:`give_back_freed_memory`."""
M_ARENA_MAX = -8


@functools.cache
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt, libc.malloc_trim  # noqa: B018 - present only in glibc
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def use_one_arena() -> bool:
    """Let every thread allocate from malloc's main arena (see the module); whether it could.
    Call it before any worker thread starts."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(M_ARENA_MAX, 1))


def give_back_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the system; whether it could be asked."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
