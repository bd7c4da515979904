"""Run summaries: one JSON file per run under ``<out>/runs/``, loaded into the ``runs`` table."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quant_batch.store.files import write_bytes_atomic


def new_run_id(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


STATUSES = {
    # status: (exit code, meaning)
    "completed": (0, "everything planned was done, and nothing is failing"),
    "errors": (1, "some records of this run failed; they are in the errors table (`quant-batch errors`)"),
    "partial": (1, "the spend cap stopped the run; the next run goes on from there"),
    "dead_letters": (3, "this run succeeded, but records that failed terminally before are still missing "
                        "(fix the source or `quant-batch replay`)"),
    "failed": (1, "the run stopped: an unexpected error, or (exit 2) a refused token or unreachable service"),
}


@dataclass
class RunSummary:
    """What a run did. ``status`` is one of :data:`STATUSES` (``running`` while it runs)."""

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
    warnings: list[str] = field(default_factory=list)
    """Things the user should know that did not fail the run (e.g. a model with no known price)."""
    exit_code: int = 0
    """What the CLI exits with for this run (see :data:`STATUSES`)."""

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

    def finish(self, status: str, reason: str | None = None, *, exit_code: int | None = None) -> None:
        self.finished_at = time.time()
        self.status = status
        self.reason = reason
        self.exit_code = STATUSES[status][0] if exit_code is None else exit_code

    def table(self) -> list[tuple[str, str]]:
        """Rows for a printed or artifact summary."""
        rows = [("run", self.run_id), ("status", self.status + (f" ({self.reason})" if self.reason else ""))]
        rows += [(k.replace("_", " "), str(v)) for k, v in self.stats.items()]
        rows += [("warning", w) for w in self.warnings]
        rows += [
            ("api calls", str(self.api_calls)),
            ("errors", str(self.errors)),
            ("cost (USD)", f"{self.cost_usd:.6f}"),
            ("wall time (s)", f"{self.wall_s:.2f}"),
        ]
        return rows


def list_runs(runs_dir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, read from their files (no database lock needed)."""
    runs = []
    for f in runs_dir.glob("*.json"):
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue  # being rewritten right now
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)[:limit]
