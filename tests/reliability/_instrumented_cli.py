"""The real ``quant-batch`` CLI with wider crash windows and a phase log, for kill -9 tests.

Run as ``python tests/reliability/_instrumented_cli.py embed CONFIG --no-prefect``. With
``RELIABILITY_PHASE_LOG`` set, every phase (startup sync, plan, part write, DuckDB load, finish)
appends ``+name`` / ``-name`` lines to that file, so a test can tell what was running when it
killed the process. ``RELIABILITY_WRITE_PAUSE`` sleeps between writing a temp file and renaming
it; ``RELIABILITY_LOAD_PAUSE`` sleeps per part inside the DuckDB load transaction;
``RELIABILITY_CRASH_AFTER_PARTS=N`` ends the process with ``os._exit(137)`` (no cleanup, like
``kill -9``) right after the N-th vector part is renamed into place, before the run records it.
The code that runs is otherwise unchanged: the hooks only wrap library functions.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

LOG = os.environ.get("RELIABILITY_PHASE_LOG")
WRITE_PAUSE = float(os.environ.get("RELIABILITY_WRITE_PAUSE", "0"))
LOAD_PAUSE = float(os.environ.get("RELIABILITY_LOAD_PAUSE", "0"))
CRASH_AFTER_PARTS = int(os.environ.get("RELIABILITY_CRASH_AFTER_PARTS", "0"))
_fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if LOG else None


def mark(line: str) -> None:
    if _fd is not None:
        os.write(_fd, f"{time.monotonic():.4f} {line}\n".encode())


def _traced(name: str, fn):
    def wrapper(*args, **kwargs):
        mark(f"+{name}")
        try:
            return fn(*args, **kwargs)
        finally:
            mark(f"-{name}")

    return wrapper


def _crash_after_parts(limit: int) -> None:
    """Exit hard once ``limit`` vector parts are committed (the workers' own commit, wrapped)."""
    import threading

    from quant_batch.store.output import OutputWriter

    original, lock, written = OutputWriter.commit, threading.Lock(), [0]

    def commit_then_maybe_die(self, key, data):
        result = original(self, key, data)
        if key.startswith("parts/vectors/"):
            with lock:
                written[0] += 1
                if written[0] >= limit:
                    mark("crash")
                    os._exit(137)
        return result

    OutputWriter.commit = commit_then_maybe_die


def install() -> None:
    import pyarrow.parquet as real_pq

    import quant_batch.store.catalog as catalog
    import quant_batch.store.commit as commit
    import quant_batch.store.files as files
    from quant_batch.embed import run
    from quant_batch.render import run as render

    original = files.atomic_path

    @contextmanager
    def slow_atomic_path(path):
        kind = "part-write" if "parts" in Path(path).parts else "file-write"  # state, runs, PNGs
        mark(f"+{kind}")
        try:
            with original(path) as tmp:
                yield tmp
                time.sleep(WRITE_PAUSE)  # the temp file is complete and not yet renamed
        finally:
            mark(f"-{kind}")

    files.atomic_path = slow_atomic_path
    run.atomic_path = slow_atomic_path
    commit.atomic_path = slow_atomic_path  # PNGs and summaries replaced through the commit module
    original_publish = commit._publish_temp

    def slow_publish(tmp, path, *, exclusive):
        """Workers commit parts (and PNGs) here: temp file complete, not yet linked into place."""
        kind = "part-write" if "parts" in Path(path).parts else "file-write"
        mark(f"+{kind}")
        try:
            time.sleep(WRITE_PAUSE)
            return original_publish(tmp, path, exclusive=exclusive)
        finally:
            mark(f"-{kind}")

    commit._publish_temp = slow_publish

    class _SlowMetadata:
        """``pq`` for catalog.py: read_metadata runs inside the load transaction, once per part."""

        def __getattr__(self, name):
            return getattr(real_pq, name)

        @staticmethod
        def read_metadata(path, *a, **kw):
            mark("+load-tx")  # rows inserted, transaction not committed
            try:
                time.sleep(LOAD_PAUSE)
                return real_pq.read_metadata(path, *a, **kw)
            finally:
                mark("-load-tx")

    catalog.pq = _SlowMetadata()
    catalog.Catalog._load = _traced("duckdb-load", catalog.Catalog._load)
    catalog.Catalog.sync = _traced("sync", catalog.Catalog.sync)
    run.CorpusRun.make_plan = _traced("plan", run.CorpusRun.make_plan)
    run.CorpusRun.finish = _traced("finish", run.CorpusRun.finish)
    render.RenderRun.make_plan = _traced("plan", render.RenderRun.make_plan)
    render.RenderRun.finish = _traced("finish", render.RenderRun.finish)
    if CRASH_AFTER_PARTS:
        _crash_after_parts(CRASH_AFTER_PARTS)


if __name__ == "__main__":
    install()
    mark("+cli")
    from quant_batch.cli import app

    try:
        app(prog_name="quant-batch")
    finally:
        mark("-cli")
