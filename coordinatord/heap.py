"""Keeping the daemon's memory where it was after a large read.

A large read (a session archive of tens of MiB) allocates as much again in strings and objects,
and freeing them does not by itself shrink the process: glibc's malloc keeps freed memory to
reuse it. Two of its habits, measured here with a 60 MiB archive restored through a real daemon
(VmRSS, tests/e2e/test_hostile_project_files.py):

- the *dynamic mmap threshold*: freeing a large mapped block raises the threshold (up to
  32 MiB) and the trim threshold with it (to twice that), so later blocks of that size come
  from an arena instead of mappings of their own, and up to 64 MiB of freed memory at the top
  of an arena is kept. The archive is parsed in a worker thread, whose arena's top
  ``malloc_trim`` does not shrink (it trims only the main arena's top);
- free chunks inside the arenas, which ``malloc_trim(0)`` returns page by page.

Without either fix the daemon stayed 70 MB larger for good (VmRSS 91 -> 161 MB); with
``malloc_trim`` alone 32 MB larger; with fixed thresholds alone 6.6 MB.

So the daemon fixes the thresholds at start (:func:`fix_thresholds`: ``M_TRIM_THRESHOLD`` and
``M_MMAP_THRESHOLD`` at glibc's own defaults, which also turns the dynamic adjustment off, as
its manual says), and calls :func:`give_back_freed_memory` after reads of at least
:data:`TRIM_AFTER_BYTES`. With both it is back within 0.1 MB of where it was. The cost: blocks over
128 KiB are always mapped and unmapped (a few microseconds each), which the daemon's workload
(small JSON documents) rarely makes. Elsewhere than glibc (musl, macOS) neither exists and
both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

TRIM_AFTER_BYTES = 8 * 1024 * 1024
"""A read of at least this many bytes is followed by :func:`give_back_freed_memory`."""
THRESHOLD_BYTES = 128 * 1024
"""glibc's default mmap and trim thresholds, fixed at that."""
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt, libc.malloc_trim  # noqa: B018 - present only in glibc
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def fix_thresholds() -> bool:
    """Fix malloc's trim and mmap thresholds (see the module); whether it could."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)
    )


def give_back_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the system; whether it could be asked."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
