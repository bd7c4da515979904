"""Allocator settings for a run of many threads: memory that follows the data, not the threads.

A corpus run has 16 worker threads that each decode ~2 MB answers and write a Parquet part per
batch. With the allocators' defaults every thread grows heaps of its own that keep their
high-water marks: glibc makes up to 8 arenas per core, and Arrow's mimalloc pool per-thread
pages. Measured on the scale scenario (docs/benchmarks.md, 2 December), Arrow on the system
allocator and two glibc arenas take a 20k-chunk run from 510 to about 210 MB peak RSS, at no
measurable CPU cost.

Both are process-wide and only work fully when set before pyarrow loads (Arrow reads
``ARROW_DEFAULT_MEMORY_POOL`` once, when it starts) and before worker threads allocate, so
``import quant_batch`` sets them; the API's run functions set them again for a process that
loaded pyarrow first (then only pyarrow's own allocations move: a 100k run holds 354 MB just
before publishing instead of 443 MB, against 208 MB when set first). A user's own ``MALLOC_ARENA_MAX`` or
``ARROW_DEFAULT_MEMORY_POOL`` always wins, and ``QUANT_BATCH_MALLOC_ARENAS=0`` leaves glibc alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("quant_batch")

M_ARENA_MAX = -8  # glibc malloc.h
DEFAULT_ARENAS = 2
ARENAS_ENV = "QUANT_BATCH_MALLOC_ARENAS"
"""Arenas to allow (default 2); ``0`` leaves glibc's default alone."""
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
"""Arrow's own switch (``system``, ``jemalloc``, ``mimalloc``); read once, when pyarrow loads."""


def tune_allocators() -> None:
    """Fewer glibc arenas and Arrow on the system allocator, unless the user chose otherwise."""
    limit_malloc_arenas()
    use_system_arrow_pool()


def limit_malloc_arenas() -> int | None:
    """Cap glibc's malloc arenas (idempotent); returns the cap set, or None when left alone.

    ``MALLOC_ARENA_MAX`` is read only when a process starts, so a running one must call
    ``mallopt``, before its worker threads first allocate. Not glibc (macOS, musl): nothing.
    """
    arenas = _wanted_arenas()
    if os.environ.get("MALLOC_ARENA_MAX") or not arenas:
        return None
    libc = _glibc()
    if libc is None or not libc.mallopt(M_ARENA_MAX, arenas):
        return None
    log.debug("malloc arenas capped at %d", arenas)
    return arenas


def use_system_arrow_pool() -> bool:
    """Arrow buffers from the C library's malloc; False when the user picked a pool."""
    if os.environ.get(ARROW_POOL_ENV):
        return False
    if "pyarrow" not in sys.modules:
        os.environ[ARROW_POOL_ENV] = "system"  # every allocation, C++ internals included
        return True
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())  # loaded already: pyarrow's own allocations from now on
    return True


def _wanted_arenas() -> int:
    raw = os.environ.get(ARENAS_ENV, "").strip()
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
