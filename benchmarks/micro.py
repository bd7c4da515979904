"""Scenario 5b: where a batch's client CPU goes, on a canned 100 × 1024 embeddings answer.

Each step runs on its own, single-threaded, many times, and is reported as CPU seconds per
1,000 vectors, the unit of the client-CPU target: JSON decode (orjson as the client does, and
the stdlib ``json`` a hand-written script would use), the float32 matrix, the quality gate,
the Arrow table, the Parquet part write (zstd as the pipeline writes it, and uncompressed), and
and the catalog's DuckDB load of part files (the pipeline's own functions for both).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import DIMS, MODEL, Outcome, Settings
from quant_batch.store.files import write_parquet_atomic

TITLE = "Client CPU breakdown per 1,000 vectors (micro-benchmarks on a canned answer)"
BATCH = 100


def canned_body(seed: int = 0) -> bytes:
    """An answer shaped like the service's: 100 normalized float vectors, as JSON text."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((BATCH, DIMS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    body = {
        "embeddings": v.tolist(),
        "model": MODEL,
        "dimension": DIMS,
        "usage": {"inputTokens": 15_000, "totalTokens": 15_000},
    }
    return json.dumps(body).encode()


def cpu_per_call(fn: Callable[[], object], min_seconds: float) -> float:
    fn()  # warm
    calls, t0 = 0, time.process_time()
    while True:
        fn()
        calls += 1
        spent = time.process_time() - t0
        if spent >= min_seconds and calls >= 3:
            return spent / calls


def _table(vectors: np.ndarray) -> pa.Table:
    from quant_batch.store.records import vector_array

    n = len(vectors)
    return pa.table(
        {
            "key": [f"k{i:08d}" for i in range(n)],
            "chunk_id": [f"c{i}" for i in range(n)],
            "doc_id": [f"d{i}" for i in range(n)],
            "source_path": ["bench.parquet"] * n,
            "position": pa.array([0] * n, pa.int32()),
            "text": ["x" * 700] * n,
            "tokens": pa.array([150] * n, pa.int32()),
            "model": [MODEL] * n,
            "dimensions": pa.array([DIMS] * n, pa.int32()),
            "normalize": [True] * n,
            "run_id": ["bench"] * n,
            "vector": vector_array(vectors),
        }
    )


def run(s: Settings) -> Outcome:
    from quant_batch.client._parse import _as_matrix

    out = Outcome("micro", TITLE)
    budget = 0.3 if s.quick else 1.0
    body = canned_body()
    per_k = 1000 / BATCH
    parsed = orjson.loads(body)
    vectors = _as_matrix(parsed["embeddings"], BATCH)
    table = _table(vectors)
    work = s.root / "micro"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    steps: dict[str, Callable[[], object]] = {
        "JSON decode (orjson.loads)": lambda: orjson.loads(body),
        "JSON decode (stdlib json.loads)": lambda: json.loads(body),
        "lists → float32 matrix (np.asarray)": lambda: _as_matrix(parsed["embeddings"], BATCH),
        "quality gate (finite, norms)": lambda: _gate(vectors),
        "Arrow table (12 columns)": lambda: _table(vectors),
        "Parquet write, zstd (the pipeline's write_parquet_atomic)": lambda: write_parquet_atomic(
            table,
            work / "z.parquet",
            {"model": MODEL, "dimensions": str(DIMS), "normalize": "true"},
            dictionary=("doc_id", "source_path", "model", "run_id"),
        ),
        "Parquet write, snappy": lambda: pq.write_table(table, work / "s.parquet", compression="snappy"),
        "Parquet write, uncompressed": lambda: pq.write_table(table, work / "u.parquet", compression="none"),
    }
    total = 0.0
    for name, fn in steps.items():
        cpu = cpu_per_call(fn, budget) * per_k
        if "stdlib" not in name and "snappy" not in name and "uncompressed" not in name:
            total += cpu
        out.add(name, cpu, "CPU-s/1k")
    out.add("client CPU: decode → matrix → gate → Arrow → Parquet", total, "CPU-s/1k", at_most=0.1)
    load = duckdb_load_cpu(table, work, parts=10 if s.quick else 40)
    out.add(
        "catalog writer: DuckDB load of parts (Catalog.load_vector_parts)",
        load,
        "CPU-s/1k",
        note="one bulk load of all parts, the pipeline's own SQL; DuckDB's threads included",
    )
    out.add("client + catalog writer", total + load, "CPU-s/1k")
    size = (work / "z.parquet").stat().st_size
    raw = (work / "u.parquet").stat().st_size
    out.notes.append(
        f"Part file of 100 vectors: {size / 1e3:.0f} kB with zstd vs {raw / 1e3:.0f} kB "
        "uncompressed: random float32 barely compresses."
    )
    shutil.rmtree(work, ignore_errors=True)
    return out


def _gate(vectors: np.ndarray) -> None:
    finite = np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0), axis=1)
    [(ok, n) for ok, n in zip(finite, norms)]


def duckdb_load_cpu(table: pa.Table, work: Path, parts: int) -> float:
    """CPU per 1,000 vectors for the catalog to load ``parts`` part files, as a run's finish does."""
    from quant_batch.store.catalog import Catalog
    from quant_batch.store.layout import Layout

    layout = Layout(work / "out")
    folder = layout.vector_parts("bench")
    paths = []
    for i in range(parts):
        t = table.set_column(0, "key", pa.array([f"p{i:04d}-{j:04d}" for j in range(len(table))]))
        p = folder / f"part-{i:04d}.parquet"
        write_parquet_atomic(t, p, {"model": MODEL, "dimensions": str(DIMS), "normalize": "true"})
        paths.append(p)
    with Catalog(layout) as cat:
        t0 = time.process_time()
        cat.load_vector_parts("bench", paths)  # a run's parts are loaded in one bulk insert
        cpu = time.process_time() - t0
    return cpu / (parts * len(table) / 1000)
