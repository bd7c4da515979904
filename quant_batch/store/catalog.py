"""The DuckDB catalog: the one writer that turns part files into queryable tables.

Workers only write part files. This module, running in exactly one process per output folder
(guarded by :class:`~quant_batch.store.lock.OutputLock`), loads each part once: the part's name
goes into ``_parts`` in the same transaction as its rows, so loading the same part twice is a
no-op, and a crash mid-load rolls back. ``sync()`` loads whatever is on disk and not yet loaded,
which is also how a run finishes the work of a run that crashed after writing a part.

Tables: ``vectors_<generation>`` (a view: key → FLOAT[dim] over the Parquet parts, which hold the
one stored copy of the vectors), ``live_chunks`` and ``documents`` (the
current corpus), view ``chunks`` (live chunks with their vectors: what search reads),
``image_renders`` and view ``images`` (the newest render of each manifest row), ``enrich_*`` (chat
enrichment answers, one table per enrichment, with a ``<table>_current`` view), ``errors``, ``runs``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from quant_batch.errors import LockError
from quant_batch.store.layout import Layout

MEMORY_LIMIT = os.environ.get("QUANT_BATCH_DUCKDB_MEMORY", "256MB")


def memory_db() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for set operations over Parquet files, bounded like the catalog.

    Its spill folder is the system temp folder: DuckDB's default, ``.tmp`` in the working
    directory, would leave a folder behind in whatever folder the user ran a command from.
    """
    spill = Path(tempfile.gettempdir()) / "quant-batch-duckdb"
    # no implicit order: every query that needs one says ORDER BY, and keeping insertion order
    # makes DuckDB buffer a streamed result instead of passing it on under its memory limit
    return duckdb.connect(
        config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill), "preserve_insertion_order": False}
    )


_SAFE_IDENT = re.compile(r"^[a-z0-9_]+$")

_DDL = """
CREATE TABLE IF NOT EXISTS _parts (name VARCHAR PRIMARY KEY, kind VARCHAR, rows BIGINT, loaded_at TIMESTAMP DEFAULT now());
CREATE TABLE IF NOT EXISTS _meta (k VARCHAR PRIMARY KEY, v VARCHAR);
CREATE TABLE IF NOT EXISTS generations (generation VARCHAR PRIMARY KEY, model VARCHAR, dimensions INTEGER, normalize BOOLEAN);
CREATE TABLE IF NOT EXISTS errors (
    error_id VARCHAR PRIMARY KEY, run_id VARCHAR, stage VARCHAR, source_path VARCHAR, line BIGINT,
    doc_id VARCHAR, chunk_id VARCHAR, key VARCHAR, status BIGINT, kind VARCHAR, message VARCHAR,
    retryable BOOLEAN, created_at DOUBLE, part VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, kind VARCHAR, status VARCHAR, reason VARCHAR, started_at DOUBLE,
    finished_at DOUBLE, wall_s DOUBLE, api_calls BIGINT, errors BIGINT, cost_usd DOUBLE, stats JSON);
"""


def _ident(name: str) -> str:
    if not _SAFE_IDENT.match(name):
        raise ValueError(f"unsafe identifier {name!r}")
    return name


def _files(paths: Iterable[Path]) -> list[str]:
    return [str(p) for p in paths]


def _sql_string(value: str) -> str:
    """A SQL string literal, for the DDL that cannot bind parameters (a view over files)."""
    return "'" + value.replace("'", "''") + "'"


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, turning "another process holds the file" into a LockError after ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            # DuckDB has no subclass for this; its message is the only signal ("Could not set lock")
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                pid = re.search(r"\(PID (\d+)\)", str(exc))
                holder = f"pid {pid.group(1)}" if pid else "another process"
                raise LockError(
                    f"{path} is in use by another run or command ({holder}); try again when it finishes"
                ) from None
            time.sleep(0.1)


class Catalog:
    """DuckDB catalog of one output folder. Use as a context manager; one writer at a time."""

    def __init__(self, layout: Layout, *, read_only: bool = False, wait_seconds: float | None = None):
        """Open the catalog; ``wait_seconds`` (default: 0 to read, 30 to write) waits out another
        process that has the file open, e.g. a ``search`` between its SQL and its API call."""
        self.layout = layout
        layout.root.mkdir(parents=True, exist_ok=True)
        wait = (0.0 if read_only else 30.0) if wait_seconds is None else wait_seconds
        self.con = _connect(layout.catalog, read_only, wait)
        # DuckDB's default buffer pool is 80% of RAM: bound it so a run's memory stays flat
        self.con.execute("SET memory_limit = ?", [MEMORY_LIMIT])
        if not read_only:
            self.con.execute(_DDL)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading ---------------------------------------------------------------------------

    def sync(self) -> int:
        """Load every part, run summary and state file not loaded yet; returns parts loaded."""
        loaded = 0
        vectors_root = self.layout.parts / "vectors"
        if vectors_root.exists():
            for gen_dir in sorted(p for p in vectors_root.iterdir() if p.is_dir()):
                loaded += self.load_vector_parts(gen_dir.name, sorted(gen_dir.glob("*.parquet")))
        loaded += self.load_image_parts(sorted(self.layout.image_parts.glob("*.parquet")))
        loaded += self.load_error_parts(sorted(self.layout.error_parts.glob("*.parquet")))
        enrich_root = self.layout.parts / "enrich"
        if enrich_root.exists():
            for table_dir in sorted(p for p in enrich_root.iterdir() if p.is_dir()):
                loaded += self.load_enrich_parts(table_dir.name, sorted(table_dir.glob("*.parquet")))
        self.load_runs()
        self.load_state()
        return loaded

    def _new_parts(self, paths: Iterable[Path]) -> list[Path]:
        known = {r[0] for r in self.con.execute("SELECT name FROM _parts").fetchall()}
        return [p for p in paths if self._part_name(p) not in known]

    def _part_name(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    def _load(self, kind: str, paths: list[Path], insert_sql: str) -> int:
        """Run ``insert_sql`` over the new ``paths``; its ``$files`` and ``$root`` are bound
        parameters (the file list, and the output folder's prefix to strip from file names)."""
        paths = self._new_parts(paths)
        if not paths:
            return 0
        self.con.execute("BEGIN TRANSACTION")
        try:
            params: dict[str, Any] = {"files": _files(paths)}
            if "$root" in insert_sql:
                params["root"] = f"{self.layout.root}/"
            self.con.execute(insert_sql, params)
            for p in paths:
                rows = pq.read_metadata(p).num_rows
                self.con.execute(
                    "INSERT INTO _parts (name, kind, rows) VALUES (?, ?, ?)", [self._part_name(p), kind, rows]
                )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return len(paths)

    def ensure_generation(self, generation: str, model: str, dimensions: int, normalize: bool) -> str:
        self.con.execute(
            "INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?)", [generation, model, dimensions, normalize]
        )
        return f"vectors_{_ident(generation)}"

    def load_vector_parts(self, generation: str, paths: list[Path]) -> int:
        """Record new vector parts and point ``vectors_<generation>`` at every part of the space.

        The catalog holds no copy of the vectors: the Parquet parts are the stored copy, and
        ``vectors_<generation>`` is a view over them with one row per key (a part committed
        twice by a task that ran twice must not double a row).
        """
        new = self._new_parts(paths)
        if not paths or (not new and not self._is_base_table(f"vectors_{_ident(generation)}")):
            return 0
        meta = pq.read_schema((new or paths)[0]).metadata or {}
        dims = int(meta.get(b"dimensions", b"0"))
        table = self.ensure_generation(
            generation, meta.get(b"model", b"").decode(), dims, meta.get(b"normalize", b"true").decode() == "true"
        )
        self.con.execute("BEGIN TRANSACTION")
        try:
            for p in new:
                self.con.execute(
                    "INSERT INTO _parts (name, kind, rows) VALUES (?, ?, ?)",
                    [self._part_name(p), "vectors", pq.read_metadata(p).num_rows],
                )
            self._point_vectors_view(table, generation, dims)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return len(new)

    def _point_vectors_view(self, table: str, generation: str, dims: int) -> None:
        names = [
            r[0]
            for r in self.con.execute(
                "SELECT name FROM _parts WHERE kind = 'vectors' AND name LIKE ? ORDER BY name",
                [f"parts/vectors/{generation}/%"],
            ).fetchall()
        ]
        if self._is_base_table(table):  # catalogs before views held a copy; parts are the truth
            self.con.execute(f"DROP TABLE {table}")
        files = ", ".join(_sql_string(str(self.layout.root / n)) for n in names)
        # a view's SQL cannot take bound parameters: the paths are quoted literals (see _sql_string)
        self.con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT key, tokens, model, dimensions, normalize, run_id, "
            f"vector::FLOAT[{int(dims)}] AS vector FROM read_parquet([{files}], union_by_name=true) "
            "QUALIFY row_number() OVER (PARTITION BY key ORDER BY run_id) = 1"
        )

    def load_error_parts(self, paths: list[Path]) -> int:
        sql = (
            "INSERT OR IGNORE INTO errors SELECT error_id, run_id, stage, source_path, line, doc_id, "
            "chunk_id, key, status, kind, message, retryable, created_at, "
            "replace(filename, $root, '') FROM read_parquet($files, filename=true)"
        )
        return self._load("errors", paths, sql)

    def load_image_parts(self, paths: list[Path]) -> int:
        paths = self._new_parts(paths)
        if not paths:
            return 0
        if not self._has_table("image_renders"):
            self.con.execute(
                "CREATE TABLE image_renders AS SELECT * FROM read_parquet(?, union_by_name=true) LIMIT 0",
                [_files(paths[:1])],
            )
            self.con.execute(
                # the newest render of each row wins as a whole: a re-render with fewer
                # images must not leave the old extra images in the view
                "CREATE OR REPLACE VIEW images AS SELECT * FROM image_renders "
                "QUALIFY run_id = first_value(run_id) OVER (PARTITION BY id ORDER BY created_at DESC)"
            )
        return self._load(
            "images",
            paths,
            "INSERT INTO image_renders BY NAME SELECT * FROM read_parquet($files, union_by_name=true)",
        )

    def load_enrich_parts(self, table: str, paths: list[Path]) -> int:
        """Upsert chat answers into ``table`` keyed by (key, template_hash); the newest answer wins.

        Columns and their DuckDB types come from each part's ``duckdb_types`` metadata, so a
        schema that gains a property adds a column; ``<table>_current`` shows the rows of the
        newest template.
        """
        paths = self._new_parts(paths)
        if not paths:
            return 0
        table = _ident(table)
        types: dict[str, str] = {}
        for p in paths:
            types.update(json.loads((pq.read_schema(p).metadata or {}).get(b"duckdb_types", b"{}")))
        self._ensure_enrich_table(table, types)
        cols = ", ".join(f'"{c}"' for c in types)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in [*types, "part"] if c not in ("key", "template_hash"))
        sql = (
            f"INSERT INTO {table} BY NAME SELECT * FROM (SELECT {cols}, replace(filename, $root, '') AS part "
            "FROM read_parquet($files, union_by_name=true, filename=true)) "
            "QUALIFY row_number() OVER (PARTITION BY key, template_hash ORDER BY created_at DESC) = 1 "
            f"ON CONFLICT (key, template_hash) DO UPDATE SET {updates} WHERE excluded.created_at >= {table}.created_at"
        )
        loaded = self._load("enrich", paths, sql)
        self.con.execute(
            f"CREATE OR REPLACE VIEW {table}_current AS SELECT * FROM {table} WHERE template_hash = "
            f"(SELECT template_hash FROM {table} ORDER BY created_at DESC LIMIT 1)"
        )
        return loaded

    def _ensure_enrich_table(self, table: str, types: dict[str, str]) -> None:
        if not self._has_table(table):
            cols = ", ".join(f'"{c}" {t}' for c, t in types.items())
            self.con.execute(f"CREATE TABLE {table} ({cols}, part VARCHAR, PRIMARY KEY (key, template_hash))")
            return
        have = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        }
        for c, t in types.items():
            if c not in have:  # a schema that gained a property; older rows read NULL there
                self.con.execute(f'ALTER TABLE {table} ADD COLUMN "{c}" {t}')

    def load_runs(self) -> int:
        files = sorted(self.layout.runs.glob("*.json"))
        for f in files:
            try:
                run = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # a summary being rewritten; the next sync picks it up
            self.con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run["run_id"],
                    run.get("kind"),
                    run.get("status"),
                    run.get("reason"),
                    run.get("started_at"),
                    run.get("finished_at"),
                    run.get("wall_s"),
                    run.get("api_calls"),
                    run.get("errors"),
                    run.get("cost_usd"),
                    json.dumps(run.get("stats", {})),
                ],
            )
        return len(files)

    def close_interrupted_runs(self) -> int:
        """Mark summaries still ``running`` as failed; call only while holding the OutputLock.

        The lock holder is the only live run of this folder, so any other ``running`` summary
        belongs to a process that died (kill -9, power loss) before it could write its end.
        """
        closed = 0
        for f in sorted(self.layout.runs.glob("*.json")):
            try:
                run = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(run, dict) and run.get("status") == "running":
                run.update(status="failed", reason="interrupted: the process ended before the run finished")
                self.layout.replace(f, json.dumps(run, indent=2, default=str).encode())
                closed += 1
        return closed

    def load_state(self) -> None:
        """Point ``live_chunks`` / ``documents`` at the active generation's published state files.

        Views, not copies: the published files never change once written (a publish writes new
        ones and moves the pointer), so the catalog holds no second copy of every chunk's text.
        """
        gen = self.active_generation()
        if gen is None:
            return
        g = gen["generation"]
        for table, path in (("live_chunks", self.layout.live(g)), ("documents", self.layout.documents(g))):
            if not path.exists():
                continue
            if self._is_base_table(table):  # catalogs before views held a copy
                self.con.execute(f"DROP TABLE {table}")
            # a view's SQL cannot take bound parameters: the path is a quoted literal
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({_sql_string(str(path))})")
        self._point_chunks_view()

    def _point_chunks_view(self) -> None:
        gen = self.active_generation()
        if gen is None or not self._has_table("live_chunks"):
            return
        table = f"vectors_{_ident(gen['generation'])}"
        dims = int(gen["dimensions"])
        cols = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'live_chunks'"
            ).fetchall()
        }
        meta = "l.metadata" if "metadata" in cols else "NULL::VARCHAR AS metadata"
        self.ensure_generation(gen["generation"], gen["model"], dims, bool(gen["normalize"]))
        if not self._has_table(table):  # no part of this space yet
            self.con.execute(
                f"CREATE VIEW {table} AS SELECT NULL::VARCHAR AS key, NULL::INTEGER AS tokens, NULL::VARCHAR AS model, "
                f"NULL::INTEGER AS dimensions, NULL::BOOLEAN AS normalize, NULL::VARCHAR AS run_id, "
                f"NULL::FLOAT[{dims}] AS vector WHERE false"
            )
        self.con.execute(
            f"""CREATE OR REPLACE VIEW chunks AS
                SELECT l.chunk_id, l.doc_id, l.source_path, l.position, l.start_char, l.end_char,
                       l.text, l.key, {meta}, v.tokens, v.model, v.dimensions, v.normalize, v.vector
                FROM live_chunks l JOIN {table} v USING (key)"""
        )

    # -- reading ---------------------------------------------------------------------------

    def _is_base_table(self, name: str) -> bool:
        kind = self.con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name])
        rows = kind.fetchall()
        return bool(rows) and rows[0][0] == "BASE TABLE"

    def _has_table(self, name: str) -> bool:
        row = self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()
        return bool(row and row[0])

    def active_generation(self) -> dict[str, Any] | None:
        return self.layout.active_generation()

    def dead_letter_keys(
        self, stages: tuple[str, ...], *, replay: bool | str = False, source_path: str | None = None
    ) -> set[str]:
        """Keys that failed terminally (4xx, content filter, quality gate) in ``stages``.

        A normal run skips them; ``replay=True`` resends them all, ``replay="<run id>"`` only
        those that failed in that run. The ledger keeps a replay idempotent: a key that has
        succeeded since is simply done.
        """
        if replay is True:
            return set()
        sql = (
            f"SELECT DISTINCT key FROM errors WHERE stage IN ({', '.join('?' * len(stages))}) "
            "AND NOT retryable AND key IS NOT NULL"
        )
        params: list[Any] = list(stages)
        if source_path is not None:
            sql += " AND source_path = ?"
            params.append(source_path)
        dead = {r[0] for r in self.con.execute(sql, params).fetchall()}
        if isinstance(replay, str) and replay:
            again = self.con.execute(sql + " AND run_id = ?", [*params, replay]).fetchall()
            dead -= {r[0] for r in again}
        return dead

    def done_image_keys(self) -> set[str]:
        if not self._has_table("image_renders"):
            return set()
        rows = self.con.execute("SELECT DISTINCT key FROM image_renders WHERE status = 'ok'").fetchall()
        return {r[0] for r in rows}

    def done_enrich_keys(self, table: str) -> tuple[set[str], set[str]]:
        """Unit keys of ``table`` answered in full, and those whose answer was truncated."""
        if not self._has_table(_ident(table)):
            return set(), set()
        rows = self.con.execute(f"SELECT unit_key, truncated FROM {table}").fetchall()
        return {k for k, t in rows if not t}, {k for k, t in rows if t}

    def count(self, sql: str, params: list[Any] | None = None) -> int:
        row = self.con.execute(sql, params or []).fetchone()
        return int(row[0]) if row else 0
