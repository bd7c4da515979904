"""Everything the web page reads, from the published files of an output folder.

The page never opens ``catalog.duckdb``: a running run holds it open for writing. It reads what
runs publish atomically instead (``state/live-<gen>.parquet``, ``state/documents-<gen>.parquet``,
``state/generation.json``, ``parts/images``, ``parts/errors``, ``parts/vectors``, ``runs/*.json``)
into an in-memory DuckDB with the catalog's table names (``live_chunks``, ``documents``,
``image_renders`` and view ``images``, ``errors``), refreshed before each request: new parts are
appended, replaced state files reloaded. So a page shows the last published state while a run
writes, and nothing here can write the catalog. The only files written are the page's own cache
under ``<out>/.ui-cache/`` (thumbnails, the search matrix).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from quant_batch.query.search import Hit, build_matrix, filter_sql
from quant_batch.render.run import IMAGE_SCHEMA
from quant_batch.runs.summary import list_runs
from quant_batch.store.catalog import memory_db
from quant_batch.store.files import committed_parquet
from quant_batch.store.layout import open_output
from quant_batch.store.location import is_uri
from quant_batch.store.records import ERROR_SCHEMA

CACHE_DIR = ".ui-cache"
PULL_EVERY_S = 10.0
"""A bucket output is listed at most this often (each listing is a request)."""
APPEND_FILES = 500
IMAGE_COLUMNS = ", ".join(IMAGE_SCHEMA.names)
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\"<>:]+/)+([^\s/'\"<>:]+)")


def public_path(text: str | None) -> str:
    """``text`` with absolute machine paths cut to their file name (pages show no machine paths)."""
    return _ABS_PATH.sub(r"\1", text) if text else ""


def _stamp(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{path.name}:{st.st_mtime_ns}:{st.st_size}"


@dataclass(frozen=True)
class Page:
    """One page of rows and the total they were cut from."""

    rows: list[dict[str, Any]]
    total: int


class OutputData:
    """Read-only view of one output folder; thread-safe (one lock around its DuckDB)."""

    def __init__(self, root: Path | str, name: str):
        # a bucket output is served from its working copy, refreshed from the bucket
        self.layout = open_output(root)
        self.root = self.layout.root.resolve()
        self.name = name
        self._pulled = 0.0
        self.cache = self.root / CACHE_DIR
        self.con = memory_db()
        self.con.execute("SET enable_progress_bar = false")
        self.lock = threading.RLock()
        self._loaded: dict[str, set[str]] = {"image_renders": set(), "errors": set()}
        self._stamps: dict[str, str | None] = {}
        self._matrix: tuple[str, np.ndarray, list[str], dict[str, int]] | None = None
        self.generation: dict | None = None
        self.con.execute(f"CREATE TABLE image_renders AS {self._empty(IMAGE_SCHEMA)}")
        self.con.execute(f"CREATE TABLE errors AS {self._empty(ERROR_SCHEMA)}")
        # the newest render of each row wins as a whole, as in the catalog's view
        self.con.execute(
            "CREATE VIEW images AS SELECT * FROM image_renders "
            "QUALIFY run_id = first_value(run_id) OVER (PARTITION BY id ORDER BY created_at DESC)"
        )
        for t in ("live_chunks", "documents"):
            self.con.execute(
                f"CREATE TABLE {t} (doc_id VARCHAR, chunk_id VARCHAR, source_path VARCHAR, "
                "position INTEGER, text VARCHAR, key VARCHAR, chunks INTEGER, status VARCHAR, "
                "message VARCHAR, run_id VARCHAR)"
            )

    @staticmethod
    def _empty(schema: pa.Schema) -> str:
        """A zero-row SELECT with the columns and DuckDB types of ``schema``."""
        types = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}
        return "SELECT " + ", ".join(f"NULL::{types[f.type]} AS {f.name}" for f in schema) + " LIMIT 0"

    # -- refreshing from the published files -----------------------------------------------

    def refresh(self) -> None:
        """Append parts published since the last call; reload replaced state files."""
        with self.lock:
            if self.layout.remote is not None and time.monotonic() - self._pulled > PULL_EVERY_S:
                self.layout.pull()
                self._pulled = time.monotonic()
            self._append("image_renders", self.layout.image_parts, IMAGE_SCHEMA)
            self._append("errors", self.layout.error_parts, ERROR_SCHEMA)
            self.generation = self.layout.active_generation()
            if self.generation:
                g = self.generation["generation"]
                self._reload("live_chunks", self.layout.live(g))
                self._reload("documents", self.layout.documents(g))

    def _append(self, table: str, folder: Path, schema: pa.Schema) -> None:
        loaded = self._loaded[table]
        new = [p.name for p in committed_parquet(folder) if p.name not in loaded]
        columns = ", ".join(schema.names)  # never an image part's optional embedded ``png`` column
        # 500 files per read: one read_parquet over 10,000 one-row parts took 30 s and ran out of
        # memory; in slices it takes a few seconds, once (later calls read only new parts)
        for i in range(0, len(new), APPEND_FILES):
            batch = new[i : i + APPEND_FILES]
            self.con.execute(
                f"INSERT INTO {table} BY NAME SELECT {columns} FROM read_parquet(?, union_by_name=true)",
                [[str(folder / n) for n in batch]],
            )
            loaded.update(batch)

    def _reload(self, table: str, path: Path) -> None:
        stamp = _stamp(path)
        if stamp is None or self._stamps.get(table) == stamp:
            return
        self.con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet(?)", [str(path)])
        self._stamps[table] = stamp

    def rows(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.con.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def scalar(self, sql: str, params: list | None = None) -> Any:
        with self.lock:
            row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row else None

    # -- documents and chunks --------------------------------------------------------------

    def documents(self, offset: int, limit: int) -> Page:
        rows = self.rows(
            "SELECT doc_id, source_path, chunks, status, message, run_id FROM documents "
            "ORDER BY doc_id LIMIT ? OFFSET ?",
            [limit, offset],
        )
        started = {r["run_id"]: r.get("started_at") for r in self.runs()}
        for r in rows:
            r["changed_at"] = started.get(r["run_id"])
            r["message"] = public_path(r["message"])
        return Page(rows, int(self.scalar("SELECT count(*) FROM documents")))

    def document_chunks(self, doc_id: str) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT chunk_id, position, text FROM live_chunks WHERE doc_id = ? ORDER BY position", [doc_id]
        )

    # -- search ----------------------------------------------------------------------------

    def rank(
        self, qvec: np.ndarray, k: int, source_glob: str | None = None, where: dict[str, str] | None = None
    ) -> list[Hit]:
        """Top ``k`` live chunks by cosine to ``qvec``, optionally only sources matching a glob and
        chunks whose metadata has the ``where`` values (the filters of ``quant-batch search``)."""
        matrix = self._search_matrix()
        if matrix is None:
            return []
        vectors, ids, _ = matrix
        scores = vectors @ (qvec / (np.linalg.norm(qvec) or 1.0))
        if source_glob or where:
            allowed = self._filter_mask(source_glob, where, len(ids))
            scores = np.where(allowed, scores, -np.inf)
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        by_id = {
            r["chunk_id"]: r
            for r in self.rows(
                "SELECT source_path, position, doc_id, chunk_id, text FROM live_chunks "
                "WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))",
                [[ids[i] for i in top]],
            )
        }
        return [Hit(float(scores[i]), **by_id[ids[i]]) for i in top if ids[i] in by_id]

    def _filter_mask(self, pattern: str | None, where: dict[str, str] | None, n: int) -> np.ndarray:
        assert self._matrix is not None
        index = self._matrix[3]
        mask = np.zeros(n, dtype=bool)
        if where and "metadata" not in {
            r["column_name"]
            for r in self.rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'live_chunks'")
        }:
            return mask  # an index published before chunks carried metadata matches no metadata filter
        clause, params = filter_sql(pattern, where)  # bound parameters, the same rule as the CLI's
        for r in self.rows(f"SELECT chunk_id FROM live_chunks WHERE {clause}", params):
            if (i := index.get(r["chunk_id"])) is not None:
                mask[i] = True
        return mask

    def _search_matrix(self) -> tuple[np.ndarray, list[str], dict[str, int]] | None:
        """Unit vectors of the live chunks as a memory-mapped matrix, built once per live index."""
        with self.lock:
            gen, stamp = self.generation, self._stamps.get("live_chunks")
            if gen is None or stamp is None:
                return None
            name = f"search-{gen['generation']}-{re.sub(r'[^0-9A-Za-z]+', '-', stamp)}"
            if self._matrix is None or self._matrix[0] != name:
                self._matrix = (name, *self._load_matrix(name, gen))
            return self._matrix[1:]

    def _load_matrix(self, name: str, gen: dict) -> tuple[np.ndarray, list[str], dict[str, int]]:
        dim = int(gen["dimensions"])
        vec_path, ids_path = self.cache / f"{name}.f32", self.cache / f"{name}.ids.arrow"
        if not (vec_path.exists() and ids_path.exists()):
            for old in self.cache.glob(f"search-{gen['generation']}-*"):
                old.unlink(missing_ok=True)
            parts = committed_parquet(self.layout.vector_parts(gen["generation"]))
            live = self.con.sql("SELECT chunk_id, key FROM live_chunks").to_arrow_table()
            build_matrix(live, parts, vec_path, ids_path, dim)
        size = vec_path.stat().st_size
        vectors = (
            np.memmap(vec_path, dtype=np.float32, mode="r").reshape(-1, dim)
            if size
            else np.zeros((0, dim), dtype=np.float32)
        )
        with pa.memory_map(str(ids_path)) as src:
            ids = pa.ipc.open_file(src).read_all().column("chunk_id").to_pylist()
        return vectors, ids, {c: i for i, c in enumerate(ids)}

    # -- images ----------------------------------------------------------------------------

    def gallery(self, filters: dict[str, str], offset: int, limit: int) -> Page:
        """Failed rows first (newest error of each row not rendered since), then images by id."""
        where, params = self._gallery_filter(filters)
        sql = f"SELECT * FROM ({self._gallery_sql()}) g WHERE {where}"
        rows = self.rows(f"{sql} ORDER BY failed DESC, id, n LIMIT ? OFFSET ?", [*params, limit, offset])
        total = self.scalar(f"SELECT count(*) FROM ({sql})", params)
        for r in rows:
            r["error"] = public_path(r["error"])
        return Page(rows, int(total or 0))

    @staticmethod
    def _gallery_sql() -> str:
        return (
            "SELECT id, n, key, path, width, height, seed, task_type, prompt, status, error, run_id, "
            "created_at, false AS failed FROM images UNION ALL "
            "SELECT doc_id, NULL, key, NULL, NULL, NULL, NULL, NULL, NULL, 'failed', message, run_id, created_at, "
            "true FROM errors WHERE stage = 'render' AND key NOT IN (SELECT key FROM images) "
            "QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC) = 1"
        )

    @staticmethod
    def _gallery_filter(filters: dict[str, str]) -> tuple[str, list]:
        clauses, params = ["true"], []
        for col in ("run_id", "task_type", "status"):
            if filters.get(col):
                clauses.append(f"{col} = ?")
                params.append(filters[col])
        if filters.get("q"):
            clauses.append("(prompt ILIKE ? OR id ILIKE ?)")
            params += [f"%{filters['q']}%"] * 2
        return " AND ".join(clauses), params

    def gallery_facets(self) -> dict[str, list[str]]:
        """Values offered in the gallery's filter menus."""
        sql = self._gallery_sql()
        return {
            col: [
                r["v"] for r in self.rows(f"SELECT DISTINCT {col} AS v FROM ({sql}) WHERE {col} IS NOT NULL ORDER BY 1")
            ]
            for col in ("run_id", "task_type", "status")
        }

    def image(self, row_id: str, n: int) -> dict[str, Any] | None:
        rows = self.rows(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ? AND n = ?", [row_id, n])
        return rows[0] if rows else None

    def row_errors(self, key: str) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT run_id, stage, line, status, kind, message, retryable, created_at FROM errors "
            "WHERE key = ? ORDER BY created_at DESC",
            [key],
        )
        for r in rows:
            r["message"] = public_path(r["message"])
        return rows

    def failed_row(self, key: str) -> dict[str, Any] | None:
        rows = self.rows(
            "SELECT doc_id AS id, key, line FROM errors WHERE key = ? AND stage = 'render' "
            "ORDER BY created_at DESC LIMIT 1",
            [key],
        )
        return rows[0] if rows else None

    def image_file(self, name: str) -> tuple[Path, str] | None:
        """The PNG ``name`` and its sha256, if the image parts list it and it is a file directly
        under the folder; anything else (traversal, other files of the folder) is None."""
        sql = "SELECT path, sha256 FROM image_renders WHERE path = ? ORDER BY created_at DESC LIMIT 1"
        found = self.rows(sql, [name])
        if not found:  # maybe published since the last refresh: file requests skip refreshing
            self.refresh()
            found = self.rows(sql, [name])
        if not found:
            return None
        path = (self.root / found[0]["path"]).resolve()
        if path.parent == self.root and not path.exists() and self.layout.remote is not None:
            self.layout.fetch([path.name])  # images of a bucket output are fetched when first shown
        return (path, found[0]["sha256"]) if path.parent == self.root and path.is_file() else None

    # -- runs and failures -----------------------------------------------------------------

    def runs(self, limit: int = 500) -> list[dict[str, Any]]:
        runs = list_runs(self.layout.runs, limit)
        for r in runs:
            r["reason"] = public_path(r.get("reason"))
        return runs

    def failures(self, offset: int, limit: int) -> Page:
        """Dead letters: the newest terminal failure of each key that has not succeeded since."""
        sql = (
            "SELECT * FROM errors WHERE NOT coalesce(retryable, false) AND key IS NOT NULL "
            "AND key NOT IN (SELECT key FROM images) "
            "QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC) = 1"
        )
        rows = self.rows(f"SELECT * FROM ({sql}) ORDER BY created_at DESC, key LIMIT ? OFFSET ?", [limit, offset])
        for r in rows:
            r["message"] = public_path(r["message"])
            r["source_path"] = public_path(r["source_path"])
        return Page(rows, int(self.scalar(f"SELECT count(*) FROM ({sql})") or 0))


def out_names(roots: Sequence[Path | str]) -> list[tuple[str, Path | str]]:
    """A short, unique, URL-safe name for each output folder or bucket URI (its last segment, numbered if repeated)."""
    named: list[tuple[str, Path | str]] = []
    seen: set[str] = set()
    for root in roots:
        last = str(root).rstrip("/").rsplit("/", 1)[-1] if is_uri(root) else Path(root).resolve().name
        base = re.sub(r"[^0-9A-Za-z_.-]+", "-", last).strip(".-") or "out"
        name, i = base, 2
        while name in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name)
        named.append((name, root if is_uri(root) else Path(root)))
    return named


def manifest_row(image: dict[str, Any]) -> str:
    """The manifest row (JSON) that renders this image again: id, seed and its flat parameters."""
    params = json.loads(image.get("params") or "{}")
    row = {"id": image["id"], **params}
    if image.get("seed") is not None:
        row["seed"] = image["seed"]
    # input images are stored as machine paths; the row names them by file name, as a manifest
    # next to them would
    return public_path(json.dumps(row, ensure_ascii=False, default=str))
