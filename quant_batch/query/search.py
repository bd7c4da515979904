"""Semantic search over an index: embed the query with the index's own model, rank by cosine.

Search reads the last published index through a :class:`~quant_batch.query.snapshot.Snapshot`
(never ``catalog.duckdb``), so it keeps answering while a run writes and switches to the new index
when the run publishes it. Small indexes are ranked by DuckDB (``array_cosine_similarity`` over
the ``chunks`` view), the same query a user can type on the catalog. From ``MATRIX_MIN_ROWS`` live chunks on, the first search after a
run writes the live vectors once, unit-normalised, to a float32 matrix under ``state/`` and
memory-maps it: an exact scan then costs one matrix-vector product (0.17 s at 1,000,000 × 1024
here, against 0.8 s for DuckDB). The matrix is named after the published live file, so a run
that publishes a new index makes the next search build a fresh one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quant_batch.client import QuantClient
from quant_batch.errors import ConfigError
from quant_batch.query.snapshot import Snapshot
from quant_batch.store.files import atomic_path, committed_parquet
from quant_batch.store.keys import key_prefixes

MATRIX_MIN_ROWS = 100_000

SEARCH_SQL = """
SELECT source_path, position, doc_id, chunk_id, text, metadata,
       array_cosine_similarity(vector, ?::FLOAT[{dim}]) AS score
FROM chunks WHERE {where} ORDER BY score DESC LIMIT ?
"""
# the matrix already scored the vectors: the hits' rows come from the live index alone, without
# joining the vector parts (a scan of every vector at 1M chunks)
ROWS_SQL = (
    "SELECT source_path, position, doc_id, chunk_id, text, metadata FROM live_chunks "
    "WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))"
)


@dataclass(frozen=True)
class Hit:
    """One search result: a live chunk and how close it is to the query (cosine similarity)."""

    score: float
    source_path: str
    position: int
    doc_id: str
    chunk_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """Folder documents: path, extension, modified; table rows: their ``metadata_columns``."""


def filter_sql(source: str | None = None, where: Mapping[str, Any] | None = None) -> tuple[str, list[Any]]:
    """A WHERE clause over ``chunks`` and its bound parameters: nothing a user types becomes SQL.

    Args:
        source: a glob on ``source_path`` (``*`` within a folder, ``**`` across, as in DuckDB GLOB).
        where: metadata equality, e.g. ``{"lang": "en"}``; values compare as text.
    """
    clauses, params = ["true"], []
    if source:
        clauses.append("source_path GLOB ?")
        params.append(source)
    for key, value in (where or {}).items():
        clauses.append("json_extract_string(metadata, ?) = ?")
        params += ['$."' + str(key).replace('"', '\\"') + '"', _as_text(value)]
    return " AND ".join(clauses), params


def _as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def search(
    out: Path | str,
    query: str,
    client: QuantClient,
    *,
    k: int = 10,
    source: str | None = None,
    where: Mapping[str, Any] | None = None,
    matrix_min_rows: int = MATRIX_MIN_ROWS,
) -> list[Hit]:
    """Top ``k`` live chunks of the index at ``out`` for ``query``, optionally filtered.

    Args:
        source: only chunks whose ``source_path`` matches this glob.
        where: only chunks whose metadata has these values.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1 (got {k})")
    snap = Snapshot(out)
    try:
        gen = snap.generation
        if not snap.has_index or gen is None:
            raise ConfigError(_no_index(snap))
        # embed before scanning: a slow API call holds no files open
        res = client.embed([query], model=gen["model"], dimensions=gen["dimensions"], normalize=gen["normalize"])
        qvec: np.ndarray = res.vectors[0]
        dim = int(gen["dimensions"])
        clause, params = filter_sql(source, where)
        # a filtered search scans only the matching rows in DuckDB; the matrix holds every row
        matrix = None if params else _search_matrix(snap, gen, matrix_min_rows)
        if matrix is None:
            rows = snap.con.execute(SEARCH_SQL.format(dim=dim, where=clause), [qvec.tolist(), *params, k]).fetchall()
            return [_hit(r[:6], r[6]) for r in rows]
        vectors, ids = matrix
        scores = vectors @ (qvec / (np.linalg.norm(qvec) or 1.0))
        # a few spare candidates: a chunk whose part was committed twice has two rows
        want = min(len(scores), k + 8)
        top = np.argpartition(-scores, want - 1)[:want]
        top = top[np.argsort(-scores[top])]
        top_ids = ids.take(pa.array(top)).to_pylist()  # only the candidates' ids become Python strings
        by_id = {r[3]: r for r in snap.rows(ROWS_SQL, [top_ids])}
    finally:
        snap.close()
    seen: set[str] = set()
    hits: list[Hit] = []
    for i, cid in zip(top, top_ids):
        if cid in by_id and cid not in seen and len(hits) < k:
            seen.add(cid)
            hits.append(_hit(by_id[cid], scores[i]))
    return hits


def _no_index(snap: Snapshot) -> str:
    out = snap.layout.location
    if snap.has_images:
        return f"{out}: this folder holds rendered images, not a search index; search an `embed` output folder"
    if snap.layout.remote is None and not snap.layout.root.exists():
        return f"{out}: no such folder"
    return f"{out}: no search index here yet; run `quant-batch embed` with --out {out} first"


def _hit(row: tuple, score: float) -> Hit:
    meta = json.loads(row[5]) if row[5] else {}
    return Hit(
        score=float(score),
        source_path=row[0],
        position=int(row[1]),
        doc_id=row[2],
        chunk_id=row[3],
        text=row[4],
        metadata=meta,
    )


def _search_matrix(snap: Snapshot, gen: dict, min_rows: int) -> tuple[np.ndarray, pa.Array] | None:
    """The memory-mapped unit-vector matrix of the live index, built if missing; None if small."""
    layout = snap.layout
    live = layout.live(gen["generation"])
    if not live.exists():
        return None
    st = live.stat()
    base = layout.state / f"search-{gen['generation']}-{live.stem}-{st.st_size}"
    vec_path, ids_path = base.with_suffix(".f32"), base.with_suffix(".ids.arrow")
    dim = int(gen["dimensions"])
    if not (vec_path.exists() and ids_path.exists()):
        if snap.rows("SELECT count(*) FROM live_chunks")[0][0] < min_rows:
            return None
        for old in layout.state.glob(f"search-{gen['generation']}-*"):
            old.unlink(missing_ok=True)
        parts = committed_parquet(layout.vector_parts(gen["generation"]))
        build_matrix(pq.read_table(live, columns=["chunk_id", "key"]), parts, vec_path, ids_path, dim)
    vectors = np.memmap(vec_path, dtype=np.float32, mode="r").reshape(-1, dim)
    # memory-mapped, not a million Python strings per query
    ids = pa.ipc.open_file(pa.memory_map(str(ids_path))).read_all().column("chunk_id").combine_chunks()
    return vectors, ids


def build_matrix(live: pa.Table, parts: list[Path], vec_path: Path, ids_path: Path, dim: int) -> None:
    """Write the unit vectors of the live chunks (``live``: chunk_id, key) to a float32 file and their
    ids to an Arrow file, reading the vector parts one at a time.

    No join in DuckDB: under a bounded memory limit its hash join could pick the vectors as its
    build side and run out of memory. The live keys become a sorted array of 64-bit prefixes (8 MB
    a million), each part's keys are looked up in it by binary search, and its matched vectors are
    written at once. A chunk whose key is in two parts (a part committed twice) is written once.
    """
    prefixes = key_prefixes(live.column("key"))
    order = np.argsort(prefixes, kind="stable")
    ordered = prefixes[order]
    filled = np.zeros(len(prefixes), bool)
    rows: list[np.ndarray] = []
    with atomic_path(vec_path) as tmp, open(tmp, "wb") as fh:
        for part in parts:
            table = pq.read_table(part, columns=["key", "vector"])
            found = key_prefixes(table.column("key"))
            lo, hi = np.searchsorted(ordered, found, "left"), np.searchsorted(ordered, found, "right")
            counts = hi - lo
            if not counts.any():
                continue
            # a key used by several live chunks (the same text in two documents) fills each of them
            vector_rows = np.repeat(np.arange(len(found)), counts)
            live_rows = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True) if b > a])]
            fresh = ~filled[live_rows]
            vector_rows, live_rows = vector_rows[fresh], live_rows[fresh]
            filled[live_rows] = True
            flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            block = flat.astype(np.float32, copy=False).reshape(-1, dim)[vector_rows]
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            fh.write(np.ascontiguousarray(block / np.where(norms == 0, 1, norms), dtype=np.float32).tobytes())
            rows.append(live_rows)
    taken = np.concatenate(rows) if rows else np.empty(0, np.int64)
    table = pa.table({"chunk_id": live.column("chunk_id").take(pa.array(taken)).cast(pa.string())})
    with atomic_path(ids_path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
