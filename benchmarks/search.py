"""Scenario 9: top-10 cosine search over N × 1024 vectors (N = 1,000,000 by default).

Synthetic, clustered unit vectors (2,000 topic centroids plus noise, so neighbourhoods exist as
in real embeddings) are generated in slices straight to disk and stored four ways:

* a Parquet file with ``fixed_size_list<float32>[1024]`` (what the pipeline writes), loaded into
  a DuckDB table ``chunks`` with a ``FLOAT[1024]`` column (what the catalog holds);
* a float32 ``.npy`` read through ``np.load(mmap_mode="r")``;
* a float16 ``.npy`` copy (half the bytes; converted to float32 block by block);
* an approximate index (faiss IVF-Flat, inner product) if ``faiss`` is importable.

Queries are stored vectors plus noise, normalized. Exact top-10 comes from the float32 matrix;
every method is scored by recall@10 against it. Latency is per query with warm caches (one
untimed query first). Generated data is kept under ``workdir/search-N`` for reuse with --keep.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import DIMS, Outcome, Settings, peak_rss_mb

TITLE = "Search: top-10 cosine over N × 1024"
SLICE = 50_000
CLUSTERS = 2_000
BLOCK = 131_072


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def generate(folder: Path, n: int, seed: int = 42) -> dict[str, float]:
    """Write vectors-f32.npy, vectors-f16.npy, vectors.parquet and search.duckdb (reused if READY)."""
    if (folder / "READY").exists():
        return {}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    need = n * DIMS * 14
    free = shutil.disk_usage(folder).free
    if free < need * 1.2:
        raise RuntimeError(
            f"search set needs ~{need / 1e9:.1f} GB on {folder}, {free / 1e9:.1f} GB free; use --search-n"
        )
    from quant_batch.store.records import vector_array

    rng = np.random.default_rng(seed)
    centroids = _unit(rng.standard_normal((CLUSTERS, DIMS), dtype=np.float32))
    f32 = np.lib.format.open_memmap(folder / "vectors-f32.npy", mode="w+", dtype=np.float32, shape=(n, DIMS))
    f16 = np.lib.format.open_memmap(folder / "vectors-f16.npy", mode="w+", dtype=np.float16, shape=(n, DIMS))
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), DIMS))])
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    # dictionary encoding off: it only costs CPU on float data (see the micro scenario)
    with pq.ParquetWriter(folder / "vectors.parquet", schema, compression="zstd", use_dictionary=["id"]) as writer:
        for start in range(0, n, SLICE):
            m = min(SLICE, n - start)
            noise = rng.standard_normal((m, DIMS), dtype=np.float32) / np.float32(np.sqrt(DIMS))
            v = _unit(centroids[rng.integers(CLUSTERS, size=m)] + noise).astype(np.float32)
            f32[start : start + m] = v
            f16[start : start + m] = v.astype(np.float16)
            writer.write_table(pa.table({"id": np.arange(start, start + m), "vector": vector_array(v)}, schema=schema))
    f32.flush(), f16.flush()
    del f32, f16
    times["generate + write npy/parquet"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    con = _duckdb(folder)
    con.execute(
        f"CREATE TABLE chunks AS SELECT id, vector::FLOAT[{DIMS}] AS vector "
        f"FROM read_parquet('{folder / 'vectors.parquet'}')"
    )
    con.close()
    times["DuckDB load from Parquet"] = time.perf_counter() - t0
    (folder / "READY").write_text("ok")
    return times


def _duckdb(folder: Path):
    import duckdb

    con = duckdb.connect(str(folder / "search.duckdb"))
    con.execute("SET memory_limit = '8GB'")
    return con


def queries(f32: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(f32), size=count, replace=False))
    base = np.asarray(f32[rows])
    return _unit(base + 0.5 * rng.standard_normal(base.shape, dtype=np.float32) / np.float32(np.sqrt(DIMS)))


def top_k(scores: np.ndarray, k: int = 10) -> np.ndarray:
    idx = np.argpartition(-scores, k)[:k]
    return idx[np.argsort(-scores[idx])]


def numpy_f32(mat: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda q: top_k(mat @ q)


def numpy_f16(mat16: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    scores = np.empty(len(mat16), dtype=np.float32)

    def search(q: np.ndarray) -> np.ndarray:
        for start in range(0, len(mat16), BLOCK):
            block = mat16[start : start + BLOCK]
            scores[start : start + len(block)] = block.astype(np.float32) @ q
        return top_k(scores)

    return search


def duckdb_search(con, fn: str) -> Callable[[np.ndarray], np.ndarray]:
    sql = f"SELECT id FROM chunks ORDER BY {fn}(vector, ?::FLOAT[{DIMS}]) DESC LIMIT 10"
    return lambda q: np.array([r[0] for r in con.execute(sql, [q.tolist()]).fetchall()])


def timed(
    search: Callable[[np.ndarray], np.ndarray], qs: np.ndarray, truth: list[set[int]], budget_s: float = 20.0
) -> tuple[float, float, int]:
    """(median seconds per query, recall@10, queries timed); one untimed warm-up query."""
    search(qs[0])
    lat, hits, done = [], 0, 0
    for q, t in zip(qs, truth):
        t0 = time.perf_counter()
        found = search(q)
        lat.append(time.perf_counter() - t0)
        hits += len(t & {int(i) for i in found})
        done += 1
        if sum(lat) > budget_s and done >= 3:
            break
    return statistics.median(lat), hits / (10 * done), done


def ann_faiss(f32: np.ndarray, out: Outcome, qs: np.ndarray, truth: list[set[int]]) -> None:
    try:
        import faiss
    except ImportError:
        out.notes.append("faiss is not installed: `pip install faiss-cpu` to add the ANN rows.")
        return
    n = len(f32)
    nlist = max(16, int(np.sqrt(n)))
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(DIMS)
    index = faiss.IndexIVFFlat(quantizer, DIMS, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.asarray(f32[np.random.default_rng(1).choice(n, size=min(n, 40 * nlist), replace=False)])
    index.train(sample)
    for start in range(0, n, SLICE * 4):
        index.add(np.ascontiguousarray(f32[start : start + SLICE * 4]))
    build = time.perf_counter() - t0
    out.notes.append(
        f"faiss IVF-Flat: nlist {nlist}, trained on {len(sample):,} vectors, built in {build:.1f} s "
        f"(holds a full float32 copy in RAM: {n * DIMS * 4 / 1e9:.1f} GB)."
    )
    for nprobe in (8, 32):
        index.nprobe = nprobe

        def search(q: np.ndarray, ivf: Any = index) -> np.ndarray:
            return ivf.search(q[None, :], 10)[1][0]

        med, recall, done = timed(search, qs, truth)
        out.add(
            f"(d) faiss IVF-Flat nprobe={nprobe}: per query",
            med,
            "s",
            at_most=0.5,
            note=f"recall@10 {recall:.3f}; {done} queries",
        )
    del index


def run(s: Settings) -> Outcome:
    out = Outcome("search", TITLE)
    n = s.search_n
    folder = s.root / f"search-{n}"
    gen_times = generate(folder, n)
    for k, v in gen_times.items():
        out.notes.append(f"Setup: {k}: {v:.1f} s.")
    f32 = np.load(folder / "vectors-f32.npy", mmap_mode="r")
    f16 = np.load(folder / "vectors-f16.npy", mmap_mode="r")
    qs = queries(f32, s.search_queries)
    exact = numpy_f32(f32)
    exact(qs[0])  # page the matrix in
    truth = [set(int(i) for i in exact(q)) for q in qs]

    med, recall, done = timed(exact, qs, truth)
    out.add("(b) numpy float32 mmap: per query", med, "s", at_most=0.5, note=f"exact; {done} queries")
    med, recall, done = timed(numpy_f16(f16), qs, truth)
    out.add("(c) numpy float16 copy: per query", med, "s", at_most=0.5, note=f"recall@10 {recall:.3f}; {done} queries")

    con = _duckdb(folder)
    for fn, label in (
        ("array_cosine_similarity", "(a) DuckDB array_cosine_similarity"),
        ("array_inner_product", "(a) DuckDB array_inner_product"),
    ):
        med, recall, done = timed(duckdb_search(con, fn), qs, truth)
        out.add(f"{label}: per query", med, "s", at_most=0.5, note=f"recall@10 {recall:.3f}; {done} queries")
    con.close()
    ann_faiss(f32, out, qs, truth)
    out.add("peak RSS of this process", peak_rss_mb(), "MB", note="mmapped pages count toward RSS")
    sizes = {p.name: p.stat().st_size / 1e9 for p in folder.iterdir() if p.is_file() and p.name != "READY"}
    out.notes.append("On disk: " + ", ".join(f"{k} {v:.2f} GB" for k, v in sorted(sizes.items())) + ".")
    out.notes.append(
        f"Queries: {s.search_queries} stored vectors plus noise (cosine ≈ 0.9 to their source), "
        "normalized; 2,000 clusters; warm per-query latency is the median over the queries timed."
    )
    if not s.keep:
        del f32, f16
        shutil.rmtree(folder, ignore_errors=True)
    return out
