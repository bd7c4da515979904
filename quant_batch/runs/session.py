"""The single-writer side of a run: the output lock, the catalog and the run summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from quant_batch.runs.runner import RUNNER
from quant_batch.runs.summary import RunSummary, new_run_id

if TYPE_CHECKING:
    from quant_batch.store.catalog import Catalog


class RunSession:
    """The single-writer side of one run on an output folder: lock, catalog, run summary.

    Entering takes the folder's lock, sweeps temp files a crashed run left, marks runs that
    died while "running" as interrupted, loads every part not loaded yet, and records this
    run as running. Leaving after an exception records the run as failed. Subclasses add the
    planning and the finish of their kind of work.
    """

    def __init__(self, out: Path, kind: str, *, lock_wait: float = 0.0):
        from quant_batch.store.layout import Layout
        from quant_batch.store.lock import OutputLock

        self.layout = Layout(Path(out))
        self.summary = RunSummary(new_run_id(kind), kind)
        self.summary.stats["runner"] = RUNNER.get()
        self.lock = OutputLock(self.layout.root, wait_seconds=lock_wait)
        self.catalog: Catalog | None = None

    def prepare(self) -> None:
        """Clean-up a subclass needs under the lock, before the catalog opens."""

    def __enter__(self):
        from quant_batch.store.catalog import Catalog
        from quant_batch.store.files import sweep_temp_files

        self.lock.acquire()
        try:
            sweep_temp_files(self.layout.root)
            self.prepare()
            self.catalog = Catalog(self.layout)
            self.catalog.close_interrupted_runs()  # before our own summary exists
            self.catalog.sync()  # finish what a crashed run wrote but did not load
            self.summary.save(self.layout.runs)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.summary.status == "running":
                self.summary.finish("failed", f"{type(exc).__name__}: {exc}")
                self.summary.save(self.layout.runs)
                if self.catalog:
                    self.catalog.load_runs()
        finally:
            if self.catalog:
                self.catalog.close()
            self.lock.release()
