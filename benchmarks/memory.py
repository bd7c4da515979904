"""Scenario 6: peak RSS of a library run at N and 10 × N chunks, each in a fresh process.

The pipeline is meant to stream (plan to Parquet row groups, one part per batch), so peak memory
should barely grow with corpus size. The child process reads ``ru_maxrss`` after the run; it
also reports RSS after imports, so the growth attributable to the run is visible. If the ratio
misses its target, the larger run is repeated under ``tracemalloc`` and the top allocation
sites at the peak are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

from benchmarks.common import (
    Outcome,
    Settings,
    corpus_config,
    emulator,
    library_client,
    measured,
    peak_rss_mb,
    write_corpus_table,
)

TITLE = "Peak memory at N and 10 × N chunks"


def child(table: str, out: str, concurrency: int, trace: bool, duckdb_limit: str | None = None) -> dict:
    import pyarrow as pa

    from quant_batch.embed.run import run_corpus

    if duckdb_limit:
        _cap_duckdb(duckdb_limit)

    cfg = corpus_config(Path(table), Path(out), concurrency)
    baseline = peak_rss_mb()
    watcher = _PeakWatcher() if trace else None
    with library_client(concurrency) as client, measured() as m:
        summary = run_corpus(cfg, client)
    if watcher:
        watcher.stop()
    result = {
        "rss_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "wall": m.wall,
        "status": summary.status,
        "embedded": summary.stats.get("embedded"),
        "arrow_max_mb": pa.default_memory_pool().max_memory() / 2**20,
        "arrow_pool": pa.default_memory_pool().backend_name,
    }
    if watcher:
        result["tracemalloc_peak_mb"] = watcher.peak / 2**20
        stats = watcher.snapshot.statistics("lineno")[:15] if watcher.snapshot else []
        result["tracemalloc_top"] = "\n".join(str(st) for st in stats)
    return result


def _cap_duckdb(limit: str) -> None:
    """Diagnostic only: give every DuckDB connection a memory limit (monkeypatched, not configured)."""
    import duckdb

    original = duckdb.connect

    def connect(*args, **kwargs):
        con = original(*args, **kwargs)
        con.execute(f"SET memory_limit = '{limit}'")
        return con

    duckdb.connect = connect


class _PeakWatcher:
    """Traces allocations and keeps a snapshot taken near the peak of traced memory."""

    def __init__(self, interval: float = 0.25):
        import threading

        tracemalloc.start(8)
        self.peak, self.snapshot, self.interval = 0, None, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            current, _ = tracemalloc.get_traced_memory()
            if current > self.peak * 1.05:
                self.peak, self.snapshot = current, tracemalloc.take_snapshot()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        tracemalloc.stop()


def spawn(table: Path, out: Path, concurrency: int, *, trace: bool = False, duckdb_limit: str = "") -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        str(table),
        str(out),
        str(concurrency),
        "1" if trace else "0",
        duckdb_limit,
    ]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def run(s: Settings) -> Outcome:
    out = Outcome("memory", TITLE)
    sizes = (s.memory_n, 10 * s.memory_n)
    results = {}
    with emulator(embed_latency=0.0):
        for n in sizes:
            table = write_corpus_table(s.root / f"corpus-{n}.parquet", n)
            results[n] = spawn(table, s.root / f"memory-out-{n}", s.concurrency)
            r = results[n]
            out.add(
                f"peak RSS at {n:,} chunks",
                r["rss_mb"],
                "MB",
                note=f"after imports {r['baseline_mb']:.0f} MB; Arrow pool ({r['arrow_pool']}) peak "
                f"{r['arrow_max_mb']:.0f} MB; run {r['wall']:.1f} s, {r['embedded']} embedded",
            )
        small, big = (results[n] for n in sizes)
        ratio = big["rss_mb"] / small["rss_mb"]
        out.add("peak RSS ratio (10 × N ÷ N)", ratio, "", at_most=1.2)
        growth = (big["rss_mb"] - big["baseline_mb"]) / max(small["rss_mb"] - small["baseline_mb"], 1e-9)
        out.add("growth over imports ratio (10 × N ÷ N)", growth, "")
        out.notes.append(
            "Runs use emulator latency 0 (memory does not depend on it; in-flight requests are "
            "bounded by concurrency either way)."
        )
        if ratio > 1.2 and not s.quick:
            for label, limit in (("DuckDB memory_limit 256MB (monkeypatched)", "256MB"),):
                capped = [
                    spawn(s.root / f"corpus-{n}.parquet", s.root / "memory-capped", s.concurrency, duckdb_limit=limit)
                    for n in sizes
                ]
                out.add(
                    f"diagnostic: peak RSS ratio with {label}",
                    capped[1]["rss_mb"] / capped[0]["rss_mb"],
                    "",
                    note=f"{capped[0]['rss_mb']:.0f} MB → {capped[1]['rss_mb']:.0f} MB",
                )
            traced = spawn(s.root / f"corpus-{sizes[1]}.parquet", s.root / "memory-trace", s.concurrency, trace=True)
            out.profiles[
                f"tracemalloc at {sizes[1]:,} chunks (peak traced "
                f"{traced['tracemalloc_peak_mb']:.0f} MB; top sites still allocated at the end)"
            ] = traced["tracemalloc_top"]
    return out


if __name__ == "__main__":
    table, out_dir, conc, trace, limit = sys.argv[1:6]
    print(json.dumps(child(table, out_dir, int(conc), trace == "1", limit or None)))
