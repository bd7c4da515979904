"""A read-only view of an output folder as last published: what every reader queries.

``catalog.duckdb`` belongs to the one writer, and a running run keeps it open, so readers
(``search``, ``errors``, ``plan``, the web page) never open it. A :class:`Snapshot` is an
in-memory DuckDB whose views sit over the durable files instead:

- ``live_chunks``, ``documents``: the files the index pointer names (``store/state.py`` publishes
  them whole and replaces the pointer last, so a snapshot sees the previous index or the new one);
- ``chunks``: live chunks joined with their vectors from the committed vector parts;
- ``errors``: every committed error part; ``runs``: the run summaries;
- ``image_renders`` and ``images`` (the newest render of each manifest row).

File lists are taken when the snapshot opens; parts committed later are not seen until the next
snapshot. Paths go to DuckDB as relation arguments, never pasted into SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from quant_batch.runs.summary import list_runs
from quant_batch.store.catalog import memory_db
from quant_batch.store.files import committed_parquet
from quant_batch.store.layout import open_output
from quant_batch.store.records import ERROR_SCHEMA

RUN_COLUMNS = (
    "run_id",
    "kind",
    "status",
    "reason",
    "started_at",
    "finished_at",
    "wall_s",
    "api_calls",
    "errors",
    "cost_usd",
)


class Snapshot:
    """Views over the published files of one output folder; use as a context manager."""

    def __init__(self, out: Path | str):
        # a bucket output is read from its working copy, brought up to date here
        self.layout = open_output(out, pull=True)
        self.generation: dict[str, Any] | None = self.layout.active_generation()
        self._con = memory_db()
        self._vectors_ready = False
        self._views()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection with every view, ``chunks`` (with vectors) included.

        The vector views are made on first use: binding ten thousand part files costs a tenth of
        a second that a search answered from the matrix does not need (see :meth:`rows`).
        """
        if not self._vectors_ready:
            self._vectors_ready = True
            self._vector_views()
        return self._con

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a query that needs no vectors (live_chunks, documents, errors, runs, images)."""
        return self._con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_index(self) -> bool:
        """True when a corpus index has been published here."""
        return self.generation is not None and self.layout.live(self.generation["generation"]).exists()

    @property
    def has_images(self) -> bool:
        return any(self.layout.image_parts.glob("*.parquet"))

    @property
    def has_output(self) -> bool:
        """True when anything quant-batch writes is here (an index, images, runs or errors)."""
        return self.has_index or self.has_images or any(self.layout.runs.glob("*.json"))

    def _view(self, name: str, paths: list[Path], **kw: Any) -> bool:
        if not paths:
            return False
        self._con.read_parquet([str(p) for p in paths], **kw).create_view(name)
        return True

    def _views(self) -> None:
        lay = self.layout
        if self.has_index:
            assert self.generation is not None
            gen = self.generation["generation"]
            live = lay.live(gen)
            if "metadata" in pq.read_schema(live).names:
                self._view("live_chunks", [live])
            else:  # published before chunks carried metadata
                self._con.read_parquet(str(live)).project("*, NULL::VARCHAR AS metadata").create_view("live_chunks")
            if not self._view("documents", [lay.documents(gen)] if lay.documents(gen).exists() else []):
                self._con.execute("CREATE VIEW documents AS SELECT DISTINCT doc_id, source_path FROM live_chunks")
        if not self._view("errors", committed_parquet(lay.error_parts), union_by_name=True):
            self._con.from_arrow(ERROR_SCHEMA.empty_table()).create_view("errors")
        runs = [{c: r.get(c) for c in RUN_COLUMNS} for r in list_runs(lay.runs, limit=1_000_000)]
        self._con.register(
            "runs",
            pa.Table.from_pylist(runs) if runs else pa.table({c: pa.array([], pa.string()) for c in RUN_COLUMNS}),
        )
        if self._view("image_renders", committed_parquet(lay.image_parts), union_by_name=True):
            self._con.execute(
                "CREATE VIEW images AS SELECT * FROM image_renders "
                "QUALIFY run_id = first_value(run_id) OVER (PARTITION BY id ORDER BY created_at DESC)"
            )

    def _vector_views(self) -> None:
        if self.has_index:
            assert self.generation is not None
            parts = committed_parquet(self.layout.vector_parts(self.generation["generation"]))
            if self._view("vector_parts", parts):
                # a key is stored once per vector space; a part committed twice (a task that ran
                # twice) must not double a hit, hence the QUALIFY
                dim = int(self.generation["dimensions"])  # Parquet lists read as FLOAT[]; search needs FLOAT[dim]
                self._con.execute(
                    "CREATE VIEW chunks AS SELECT l.chunk_id, l.doc_id, l.source_path, l.position, l.start_char, "
                    f"l.end_char, l.text, l.key, l.metadata, v.tokens, v.model, v.dimensions, v.normalize, v.vector::FLOAT[{dim}] "
                    "AS vector "
                    "FROM live_chunks l JOIN vector_parts v USING (key) "
                    "QUALIFY row_number() OVER (PARTITION BY l.chunk_id) = 1"
                )

    def count(self, sql: str, params: list[Any] | None = None) -> int:
        rows = self.con.execute(sql, params or []).fetchall()
        return int(rows[0][0]) if rows else 0
