"""Run summaries: one JSON file per run under ``<out>/runs/``, loaded into the ``runs`` table."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from quant_batch.store.files import write_bytes_atomic

if TYPE_CHECKING:
    from quant_batch.store.catalog import Catalog


def new_run_id(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunSummary:
    """What a run did; ``status`` is completed, partial (cap or failures) or failed."""

    run_id: str
    kind: str
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    status: str = "running"
    reason: str | None = None
    api_calls: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall_s"] = round(self.wall_s, 3)
        return d

    def save(self, runs_dir: Path) -> Path:
        path = runs_dir / f"{self.run_id}.json"
        write_bytes_atomic(path, json.dumps(self.to_dict(), indent=2, default=str).encode())
        return path

    def finish(self, status: str, reason: str | None = None) -> None:
        self.finished_at = time.time()
        self.status = status
        self.reason = reason

    def table(self) -> list[tuple[str, str]]:
        """Rows for a printed or artifact summary."""
        rows = [("run", self.run_id), ("status", self.status + (f" ({self.reason})" if self.reason else ""))]
        rows += [(k.replace("_", " "), str(v)) for k, v in self.stats.items()]
        rows += [
            ("api calls", str(self.api_calls)),
            ("errors", str(self.errors)),
            ("cost (USD)", f"{self.cost_usd:.6f}"),
            ("wall time (s)", f"{self.wall_s:.2f}"),
        ]
        return rows


R = TypeVar("R")


def sum_results(results: list[R], cls: type[R]) -> R:
    """Add up the counters of per-shard results: numbers are summed, ``dict`` counters merged."""
    total = cls()
    for r in results:
        for f in fields(cls):  # type: ignore[arg-type]
            value, acc = getattr(r, f.name), getattr(total, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(total, f.name, acc + value)
            elif isinstance(value, dict):
                for k, v in value.items():
                    acc[k] = acc.get(k, 0) + v
    return total


def interleaved_shards(items: list[R], concurrency: int) -> list[list[R]]:
    """At most 4 × concurrency interleaved shards: few Prefect tasks, and slow units spread out."""
    n = max(1, min(len(items), concurrency * 4))
    return [items[i::n] for i in range(n)] if items else []


def run_in_threads(session: Any, shards: list, work: Callable[[Any], Any], concurrency: int) -> None:
    """The library's executor: ``work`` each shard on a bounded pool, ``absorb`` results as they
    finish. Every future is waited on, like the flows' ``submit_windowed``."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for fut in as_completed([pool.submit(work, shard) for shard in shards]):
            session.absorb(fut.result())


def list_runs(runs_dir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, read from their files (no database lock needed)."""
    runs = []
    for f in runs_dir.glob("*.json"):
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue  # being rewritten right now
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)[:limit]


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
