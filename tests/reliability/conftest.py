"""Helpers for reliability tests: generated corpora and manifests, fast clients, table snapshots.

Everything here talks to the real emulator over loopback and reads the real DuckDB catalog and
Parquet parts; "equal to a clean run" always means equal sets of keys and bytes, never counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from quant_batch.client import QuantClient, RetryPolicy, Timeouts
from quant_batch.client.settings import ApiSettings
from tests.conftest import TEST_ORG, TEST_TOKEN

REPO = Path(__file__).resolve().parents[2]

# a retry policy that keeps the soak bounded: short backoffs, Retry-After honoured but capped
FAST_RETRY = RetryPolicy(max_attempts=8, max_elapsed=60.0, backoff_initial=0.02, backoff_max=0.3, retry_after_cap=1.0)
SHORT_TIMEOUTS = Timeouts(connect=2.0, embeddings=1.0, image_generation=1.5)

_ADJ = "amber brisk calm dusty eager faint gentle hollow icy jolly keen lucid misty noble opal".split()
_NOUN = "harbour lantern meadow orchard quarry river saddle tunnel valley willow beacon canyon".split()


def fast_client(
    emulator,
    *,
    token: str = TEST_TOKEN,
    timeouts: Timeouts = SHORT_TIMEOUTS,
    retry: RetryPolicy = FAST_RETRY,
    pool_size: int = 8,
) -> QuantClient:
    settings = ApiSettings.from_env(api_key=token, organization=TEST_ORG, base_url=emulator.base_url)
    return QuantClient(settings, timeouts=timeouts, retry=retry, pool_size=pool_size)


def short_text(i: int) -> str:
    """A distinct, deterministic sentence of 60-90 characters."""
    a, n = _ADJ[i % len(_ADJ)], _NOUN[(i // len(_ADJ)) % len(_NOUN)]
    return f"Entry {i}: the {a} {n} number {i * 7919 % 10007} was logged at dawn by keeper {i % 13}."


def write_text_table(path: Path, n: int) -> Path:
    """A JSONL table of ``n`` short distinct documents (one chunk each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"t{i:05d}", "text": short_text(i)}) + "\n")
    return path


def write_prompt_manifest(path: Path, n: int, *, side: int = 320) -> Path:
    """A JSONL manifest of ``n`` TEXT_IMAGE rows, each with an explicit seed (deterministic output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {
                "id": f"img-{i:03d}",
                "prompt": f"A {_ADJ[i % len(_ADJ)]} {_NOUN[i % len(_NOUN)]} study {i}",
                "width": side,
                "height": side,
                "seed": 1000 + i,
            }
            fh.write(json.dumps(row) + "\n")
    return path


def table_config(table: Path, out: Path, **kw) -> dict:
    data = {
        "sources": [{"table": str(table)}],
        "out": str(out),
        "dimensions": 256,
        "chunking": {"max_chars": 600, "overlap_chars": 80, "min_chars": 150},
    }
    data.update(kw)
    return data


def query(out: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(Path(out) / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def vector_snapshot(out: Path) -> dict[tuple[str, str], str]:
    """(chunk_id, key) → sha256 of the float32 vector bytes, from the ``chunks`` view."""
    con = duckdb.connect(str(Path(out) / "catalog.duckdb"), read_only=True)
    try:
        t = con.sql("SELECT chunk_id, key, vector FROM chunks").to_arrow_table()
    finally:
        con.close()
    vecs = t.column("vector").combine_chunks()
    dim = vecs.type.list_size
    flat = vecs.flatten().to_numpy(zero_copy_only=False).astype("<f4").reshape(-1, dim)
    ids, keys = t.column("chunk_id").to_pylist(), t.column("key").to_pylist()
    return {(c, k): hashlib.sha256(v.tobytes()).hexdigest() for c, k, v in zip(ids, keys, flat, strict=True)}


def assert_no_duplicate_vectors(out: Path) -> None:
    """One row per chunk in the view, one per key in every vectors table, one part row per key."""
    total, chunks, keys = query(out, "SELECT count(*), count(DISTINCT chunk_id), count(DISTINCT key) FROM chunks")[0]
    assert total == chunks, f"{total - chunks} duplicate chunk rows in {out}"
    tables = [
        r[0] for r in query(out, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'vectors_%'")
    ]
    for t in tables:
        n, distinct = query(out, f"SELECT count(*), count(DISTINCT key) FROM {t}")[0]
        assert n == distinct, f"{n - distinct} duplicate keys in {t}"
    parts = query(out, "SELECT name, count(*) FROM _parts GROUP BY name HAVING count(*) > 1")
    assert not parts, f"parts loaded twice: {parts}"


def part_rows(out: Path) -> tuple[int, int]:
    """(rows, distinct keys) over every vector part file on disk."""
    keys: list[str] = []
    for p in sorted((Path(out) / "parts" / "vectors").rglob("*.parquet")):
        keys += pq.read_table(p, columns=["key"]).column("key").to_pylist()
    return len(keys), len(set(keys))


def image_snapshot(out: Path) -> set[tuple[str, int, str]]:
    return set(query(out, "SELECT id, n, sha256 FROM images WHERE status = 'ok'"))


def png_files(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(out).glob("*.png")}


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (files, folders, links), relative, without following links."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def cli_env(emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANT_")}
    env.update(
        QUANT_API_KEY=TEST_TOKEN,
        QUANT_ORGANIZATION=TEST_ORG,
        QUANT_BASE_URL=emulator.base_url,
        PYTHONPATH=str(REPO),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.update(extra)
    return env


CLI = [sys.executable, "-m", "quant_batch.cli"]


@pytest.fixture
def faulty(emulator):
    """The session emulator; faults set by the test are switched off again afterwards."""
    yield emulator
    emulator.reset()
