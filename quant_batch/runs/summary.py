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


@dataclass
class RunSummary:
    """What a run did.

    ``status``: ``running`` while it runs; then ``completed``, ``errors`` (some records failed or
    were truncated), ``partial`` (stopped at the spend cap; the next run continues) or ``failed``
    (an exception, or the process ended before the run finished).
    """

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


def list_runs(runs_dir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, read from their files (no database lock needed)."""
    runs = []
    for f in runs_dir.glob("*.json"):
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue  # being rewritten right now
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)[:limit]
