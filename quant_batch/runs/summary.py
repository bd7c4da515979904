"""Run summaries: one JSON file per run under ``<out>/runs/``, loaded into the ``runs`` table."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quant_batch.errors import InputError
from quant_batch.store.files import write_bytes_atomic


def new_run_id(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


STATUSES = {
    # status: (exit code, meaning)
    "completed": (0, "everything planned was done, and nothing is failing"),
    "errors": (1, "some records of this run failed; they are in the errors table (`quant-batch errors`)"),
    "partial": (1, "the spend cap stopped the run; the next run goes on from there"),
    "dead_letters": (
        3,
        "this run succeeded, but records that failed terminally before are still missing "
        "(fix the source or `quant-batch replay`)",
    ),
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
    flow_run_url: str | None = None
    """The Prefect UI page of the flow run, when the run ran under Prefect."""
    target: str | None = None
    """What the run was started on (a config, folder, table or manifest), as given."""

    @property
    def wall_s(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall_s"] = round(self.wall_s, 3)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """The summary back from :meth:`to_dict` (a flow's return value, a run file)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

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
        rows += [(k.replace("_", " "), _show(v)) for k, v in self.stats.items()]
        rows += [("warning", w) for w in self.warnings]
        rows += [
            ("api calls", str(self.api_calls)),
            ("errors", str(self.errors)),
            ("cost (USD)", f"{self.cost_usd:.6f}"),
            ("wall time (s)", f"{self.wall_s:.2f}"),
        ]
        return rows


def _show(value: Any) -> str:
    """A stat as a person reads it: ``{"320x320/standard": 3}`` becomes ``320x320/standard 3``."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    return str(value)


def list_runs(runs_dir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, read from their files (no database lock needed)."""
    runs = []
    for f in runs_dir.glob("*.json"):
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue  # being rewritten right now
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)[:limit]


def check_replay_target(out: Path | str, kind: str, run_id: str | None = None) -> None:
    """Refuse a replay that has nothing to resend, before anything is opened or sent.

    Replay resends the dead letters of an existing output folder: ``out`` must hold summaries
    of ``kind`` runs, and ``run_id`` (when given) must be one of them.

    Raises:
        InputError: ``out`` holds no ``kind`` output, or ``run_id`` is not a run recorded there.
    """
    from quant_batch.store.layout import open_output

    runs_dir = open_output(out, pull=True).runs
    runs = [r for r in list_runs(runs_dir, limit=10**9) if r.get("kind") == kind]
    if not runs:
        raise InputError(
            f"{out} holds no {kind} output (no {kind} run summaries under runs/); replay only resends "
            f"the failures of an existing output folder: run `quant-batch {kind}` first, or pass --out"
        )
    if run_id is not None and not any(r.get("run_id") == run_id for r in runs):
        recent = ", ".join(str(r.get("run_id")) for r in runs[:3])
        raise InputError(
            f"no {kind} run {run_id!r} in {runs_dir}; recent {kind} runs: {recent} (see `quant-batch runs {out}`)"
        )
