"""The single-writer side of a run: the output lock, the catalog and the run summary."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from quant_batch.pricing import PriceTable, check_priced
from quant_batch.runs.runner import RUNNER, TARGET
from quant_batch.runs.summary import RunSummary, new_run_id

if TYPE_CHECKING:
    from quant_batch.pricing import Budget
    from quant_batch.store.catalog import Catalog
    from quant_batch.store.storage_config import StorageConfig


class RunSession:
    """The single-writer side of one run on an output folder: lock, catalog, run summary.

    Entering takes the folder's lock, sweeps temp files a crashed run left, marks runs that
    died while "running" as interrupted, loads every part not loaded yet, and records this
    run as running. Leaving after an exception records the run as failed. Subclasses add the
    planning and the finish of their kind of work.
    """

    def __init__(self, out: Path | str, kind: str, *, lock_wait: float = 0.0, storage: StorageConfig | None = None):
        from quant_batch.store.layout import open_output
        from quant_batch.store.lease import BucketLease
        from quant_batch.store.lock import OutputLock

        self.layout = open_output(out, storage)
        self.summary = RunSummary(new_run_id(kind), kind)
        self.summary.target = TARGET.get()
        self.summary.stats["runner"] = RUNNER.get()
        # the local lock guards the folder (or a bucket's working copy) on this machine, the
        # lease the bucket across machines
        self.lock = OutputLock(self.layout.root, wait_seconds=lock_wait)
        remote = self.layout.remote
        self.lease = BucketLease(remote, self.summary.run_id, wait_seconds=lock_wait) if remote else None
        self.catalog: Catalog | None = None

    def check_still_owner(self) -> None:
        """Before publishing: refuse when a bucket output's lease may have passed to another run."""
        if self.lease is not None:
            self.lease.check()

    def save_summary(self) -> None:
        """Write the run summary (and send it to the bucket of a bucket output)."""
        self.layout.replace(self.layout.runs / f"{self.summary.run_id}.json", self.summary.to_json())

    def prepare(self) -> None:
        """Clean-up a subclass needs under the lock, before the catalog opens."""

    def check_prices(self, prices: PriceTable, kind: str, models: Iterable[str], cap: float | None) -> None:
        """Warn in the summary about models with no price; refuse them when a spend cap is set."""
        for model in sorted(set(models)):
            warning = check_priced(prices, kind, model, cap)
            if warning and warning not in self.summary.warnings:
                self.summary.warnings.append(warning)

    def outcome(
        self, *, failed: int, skipped: int, dead: int, unit: str, budget: Budget | None = None
    ) -> tuple[str, str | None, int | None]:
        """The status, reason and exit code of a finished run: one rule for every kind of run.

        Args:
            failed: records of this run that failed.
            skipped: units not sent because the spend cap was reached.
            dead: units skipped because they failed terminally in an earlier run and are still
                part of the sources (dead letters a cron job must keep seeing).
            unit: what ``skipped`` counts, for the message.
            budget: the run's budget; a halted budget means the run stopped on a run-level failure.
        """
        budget = budget if budget is not None else getattr(self, "budget", None)
        if budget is not None and budget.halted:
            return "failed", f"stopped: {budget.halted}", 2
        if skipped:
            cap = budget.cap if budget is not None else None
            return "partial", f"spend cap ${cap} reached; {skipped} {unit} left for the next run", None
        if failed:
            return "errors", f"{failed} records failed; see `quant-batch errors {self.layout.location}`", None
        if dead:
            return (
                "dead_letters",
                (
                    f"{dead} records that failed before are still not indexed; fix their source or run "
                    "`quant-batch replay`"
                ),
                None,
            )
        return "completed", None, None

    def __enter__(self):
        from quant_batch.store.catalog import Catalog
        from quant_batch.store.files import sweep_temp_files

        self.lock.acquire()
        try:
            if self.lease is not None:
                self.lease.acquire()
            self.layout.pull(prune=True)
            sweep_temp_files(self.layout.root)
            self.prepare()
            self.catalog = Catalog(self.layout)
            self.catalog.close_interrupted_runs()  # before our own summary exists
            self.catalog.sync()  # finish what a crashed run wrote but did not load
            self.save_summary()
        except BaseException:
            if self.catalog:
                self.catalog.close()
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.summary.status == "running":
                self.summary.finish("failed", f"{type(exc).__name__}: {exc}")
                self.save_summary()
                if self.catalog:
                    self.catalog.load_runs()
        finally:
            if self.catalog:
                self.catalog.close()
            self._release()

    def _release(self) -> None:
        try:
            if self.lease is not None:
                self.lease.release()
        finally:
            self.lock.release()
