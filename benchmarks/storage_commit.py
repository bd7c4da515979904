"""Commit cost per part: local folder vs an S3-compatible server (moto over loopback).

``python -m benchmarks.storage_commit [--parts 1000] [--threads 8]`` commits N small Parquet
parts (10 rows, 1024-dim float32 vectors, ~41 KB) with ``commit_once``, then commits them again
(every one a duplicate avoided), checks them with ``is_committed`` and lists them, first in a
local temp folder, then in a bucket on a ``moto.server`` process of its own. Not a timed test:
figures for the closing note and the issue's "local vs bucket" ratio. moto is a Python server,
so the bucket figures are an upper bound on client cost, not a forecast for AWS.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from quant_batch.store.commit import parquet_bytes
from quant_batch.store.storage import Storage, open_storage


def _part(i: int, dim: int = 1024, rows: int = 10) -> bytes:
    v = np.random.default_rng(i).standard_normal((rows, dim)).astype(np.float32)
    table = pa.table(
        {
            "chunk_id": [f"{i}-{j}" for j in range(rows)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim),
        }
    )
    return parquet_bytes(table, {"run_id": "bench"})


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _bench(storage: Storage, parts: list[bytes], threads: int) -> dict[str, tuple[float, int]]:
    """(seconds, operations) per step."""
    keys = [f"parts/vectors/g1/run-{i:05d}.parquet" for i in range(len(parts))]
    half = len(keys) // 2
    rows: dict[str, tuple[float, int]] = {}
    took, won = _timed(lambda: [storage.commit_once(k, p) for k, p in zip(keys[:half], parts)])
    assert all(won)
    rows["commit, 1 thread"] = (took, half)
    with ThreadPoolExecutor(threads) as pool:
        took, won = _timed(lambda: list(pool.map(storage.commit_once, keys[half:], parts[half:])))
        assert all(won)
        rows[f"commit, {threads} threads"] = (took, len(keys) - half)
        took, won = _timed(lambda: list(pool.map(storage.commit_once, keys, parts)))
        assert not any(won)
        rows[f"duplicate commit, {threads} threads"] = (took, len(keys))
    took, seen = _timed(lambda: [storage.is_committed(k) for k in keys])
    assert all(seen)
    rows["is_committed, 1 thread"] = (took, len(keys))
    took, listed = _timed(lambda: storage.list("parts/vectors/g1", "*.parquet"))
    assert listed == keys
    rows["list all parts"] = (took, 1)
    return rows


def _moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto did not start")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", type=int, default=1000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--rows", type=int, default=10, help="vectors per part (1024 floats each)")
    args = p.parse_args(argv)
    parts = [_part(i, rows=args.rows) for i in range(args.parts)]
    print(f"{args.parts} parts of {len(parts[0]) / 1000:.1f} KB each")
    with tempfile.TemporaryDirectory() as tmp:
        results = {"local": _bench(open_storage(tmp), parts, args.threads)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _moto(port)
    try:
        import boto3

        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        )
        boto3.client("s3").create_bucket(Bucket="bench")
        results["moto"] = _bench(open_storage("s3://bench/out"), parts, args.threads)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{'':30}{'local s':>9}{'ms/op':>8}{'moto s':>9}{'ms/op':>8}{'ratio':>7}")
    for name, (local_s, n) in results["local"].items():
        moto_s = results["moto"][name][0]
        print(
            f"{name:30}{local_s:9.3f}{local_s / n * 1000:8.2f}{moto_s:9.3f}{moto_s / n * 1000:8.2f}"
            f"{moto_s / local_s:7.1f}"
        )


if __name__ == "__main__":
    main()
