"""Process-wide allocator settings (quant_batch.allocators): set unless the user chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pyarrow as pa
import pytest

from quant_batch.allocators import limit_malloc_arenas, use_system_arrow_pool

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt(M_ARENA_MAX) is glibc's")
def test_malloc_arenas_are_capped_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("QUANT_BATCH_MALLOC_ARENAS", raising=False)
    assert limit_malloc_arenas() == 2
    monkeypatch.setenv("QUANT_BATCH_MALLOC_ARENAS", "4")
    assert limit_malloc_arenas() == 4
    monkeypatch.setenv("QUANT_BATCH_MALLOC_ARENAS", "0")
    assert limit_malloc_arenas() is None
    monkeypatch.setenv("QUANT_BATCH_MALLOC_ARENAS", "lots")
    assert limit_malloc_arenas() == 2  # a bad tuning value never stops a run
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is None


def _pool_backend_after(code: str, **env: str) -> str:
    """The backend of pyarrow's default pool in a fresh interpreter that ran ``code`` first."""
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    script = code + "\nimport pyarrow as pa\nprint(pa.default_memory_pool().backend_name)"
    out = subprocess.run(
        [sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def test_importing_quant_batch_puts_arrow_on_the_system_allocator_before_pyarrow_loads():
    assert _pool_backend_after("pass") in ("mimalloc", "jemalloc")  # pyarrow's own default, not ours
    assert _pool_backend_after("import quant_batch") == "system"
    assert _pool_backend_after("import quant_batch.cli") == "system"  # the CLI, through the package
    assert _pool_backend_after("import quant_batch", ARROW_DEFAULT_MEMORY_POOL="jemalloc") == "jemalloc"  # the user's


def test_a_process_that_loaded_pyarrow_already_switches_its_pool(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    system = pa.system_memory_pool()
    assert use_system_arrow_pool()
    before = system.bytes_allocated()
    held = pa.array(range(100_000))  # allocated through pyarrow's pool, now the system one
    assert system.bytes_allocated() >= before + held.nbytes
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    assert not use_system_arrow_pool()
