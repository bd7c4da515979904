"""Fewer glibc malloc arenas for a process of many client threads.

glibc gives each thread that meets contention its own heap ("arena"), up to 8 per core. Sixteen
threads that each decode ~2 MB JSON answers into ~100,000 Python floats then spread their peaks
over as many arenas, and each arena keeps its high-water mark: peak RSS grows with concurrency,
not with the data in flight. Two arenas cost no measurable CPU here (the GIL serialises most
allocations anyway) and cut the embedding phase's RSS (see docs/benchmarks.md).

``MALLOC_ARENA_MAX`` is read only when the process starts, so a running process must call
``mallopt`` instead, before its worker threads first allocate. Elsewhere (macOS, musl, Windows)
this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("quant_batch.client")

M_ARENA_MAX = -8  # glibc malloc.h
DEFAULT_ARENAS = 2
ENV = "QUANT_BATCH_MALLOC_ARENAS"
"""Arenas to allow (default 2); ``0`` leaves glibc's default alone."""


def limit_malloc_arenas() -> int | None:
    """Cap glibc's malloc arenas (idempotent); returns the cap set, or None when left alone.

    A ``MALLOC_ARENA_MAX`` the user set in the environment wins (glibc applied it at start).
    """
    arenas = _wanted()
    if os.environ.get("MALLOC_ARENA_MAX") or not arenas:
        return None
    libc = _glibc()
    if libc is None or not libc.mallopt(M_ARENA_MAX, arenas):
        return None
    log.debug("malloc arenas capped at %d", arenas)
    return arenas


def _wanted() -> int:
    raw = os.environ.get(ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_ARENAS
    except ValueError:
        return DEFAULT_ARENAS  # a tuning knob, never a reason to stop a run


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the interpreter's own C library, no ldconfig lookup
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc (musl's mallopt ignores M_ARENA_MAX)
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
