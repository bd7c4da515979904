"""The dead letters of an output folder, read from the error part files.

``catalog.duckdb`` is never opened here: a running run holds its lock, and the part files under
``parts/errors/`` are the published truth anyway (each is written whole, then renamed). An
in-memory DuckDB reads them, so listing errors works while a run is writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quant_batch.store.files import committed_parquet
from quant_batch.store.layout import open_output

COLUMNS = (
    "run_id",
    "stage",
    "key",
    "source_path",
    "line",
    "doc_id",
    "status",
    "kind",
    "retryable",
    "message",
    "created_at",
)


def list_errors(out: str | Path, run: str | None = None) -> list[dict[str, Any]]:
    """Every error record under ``out`` (only run ``run``'s when given), oldest first.

    Each record has ``run_id``, ``stage``, ``key``, ``source_path``, ``line`` (CSV/JSONL line or
    Parquet row, else None), ``doc_id``, ``status`` (HTTP status or None), ``kind``,
    ``retryable`` (transient: the next normal run retries it), ``message`` and ``created_at``.
    """
    from quant_batch.store.catalog import memory_db

    files = [str(p) for p in committed_parquet(open_output(out, pull=True).error_parts)]
    if not files:
        return []
    sql = f"SELECT {', '.join(COLUMNS)} FROM read_parquet(?) {'WHERE run_id = ?' if run else ''} ORDER BY created_at, error_id"
    with memory_db() as con:
        cur = con.execute(sql, [files, run] if run else [files])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def where(record: dict[str, Any]) -> str:
    """``source:line`` (or the doc id / key) of an error record, for one table cell."""
    place = record.get("source_path") or record.get("doc_id") or ""
    return f"{place}:{record['line']}" if place and record.get("line") else place
