"""Scenarios 4 and 5: the library embedding a synthetic corpus at a fixed API latency.

Figures: wall time, chunks/s, achieved requests/s against the ceiling ``concurrency / latency``,
and this process's CPU time per 1,000 vectors (the emulator runs in another process, so its
work is not counted). When a target is missed, one more run is profiled with a per-thread CPU
clock (``time.thread_time``) so the entries show where our CPU went, not where threads waited.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Outcome,
    Settings,
    ThreadProfiler,
    corpus_config,
    emulator,
    endpoint_calls,
    library_client,
    measured,
    peak_rss_mb,
    write_corpus_table,
)

TITLE = "Embedding a corpus with the library (throughput, client CPU)"
RESULT_FILE = "library-run.json"


def corpus_table(s: Settings) -> Path:
    return write_corpus_table(s.root / f"corpus-{s.n}.parquet", s.n)


def library_run(s: Settings, emu: Any, out: Path, *, profiler: ThreadProfiler | None = None) -> dict[str, Any]:
    """One fresh run of ``run_corpus`` over the corpus; wall, CPU, calls, summary."""
    from quant_batch.embed import run as run_mod

    shutil.rmtree(out, ignore_errors=True)
    emu.reset()
    cfg = corpus_config(corpus_table(s), out, s.concurrency)
    original = run_mod.embed_shard
    if profiler is not None:
        run_mod.embed_shard = profiler.wrap(original)
    try:
        with library_client(s.concurrency) as client, measured() as m:
            if profiler is not None:
                summary = profiler.main.runcall(run_mod.run_corpus, cfg, client)
            else:
                summary = run_mod.run_corpus(cfg, client)
    finally:
        run_mod.embed_shard = original
    events = [e for e in emu.stats()["events"] if e["endpoint"] == "embeddings"]
    span = (max(e["t"] for e in events) - min(e["t"] for e in events)) if len(events) > 1 else 0.0
    return {
        "wall": m.wall,
        "cpu": m.cpu,
        "calls": endpoint_calls(emu, "embeddings"),
        "status": summary.status,
        "embedded": summary.stats.get("embedded", 0),
        "summary_wall": summary.wall_s,
        "request_span": span,
    }


def median_runs(s: Settings, emu: Any, repeats: int) -> dict[str, Any]:
    runs = [library_run(s, emu, s.root / "embed-out") for _ in range(repeats)]
    walls = [r["wall"] for r in runs]
    best = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    return {**best, "walls": walls, "cpus": [r["cpu"] for r in runs]}


def run(s: Settings) -> Outcome:
    out = Outcome("embed", TITLE)
    repeats = 1 if s.quick else 3
    with emulator(embed_latency=s.embed_latency) as emu:
        import psutil

        emu_proc = psutil.Process(emu._proc.pid) if getattr(emu, "_proc", None) else None
        emu_cpu0 = sum(emu_proc.cpu_times()[:2]) if emu_proc else 0.0
        res = median_runs(s, emu, repeats)
        emu_cpu = (sum(emu_proc.cpu_times()[:2]) - emu_cpu0) / repeats if emu_proc else float("nan")
        (s.root / RESULT_FILE).write_text(
            json.dumps({**res, "n": s.n, "latency": s.embed_latency, "concurrency": s.concurrency})
        )
        ceiling = s.concurrency / s.embed_latency
        rps = res["calls"] / res["wall"]
        cpu_per_k = statistics.median(res["cpus"]) / (res["embedded"] / 1000)
        out.add("texts embedded", res["embedded"], "chunks", note=f"{res['calls']} API calls, status {res['status']}")
        out.add(
            f"wall (median of {repeats})", res["wall"], "s", note="runs: " + ", ".join(f"{w:.2f}" for w in res["walls"])
        )
        out.add("chunks/s", res["embedded"] / res["wall"], "chunks/s")
        out.add(
            "achieved req/s ÷ (concurrency ÷ latency)",
            rps / ceiling,
            "",
            at_least=0.95,
            note=f"{rps:.1f} req/s over the whole call vs ceiling {ceiling:.1f}; "
            f"{res['calls'] / max(res['request_span'], 1e-9):.1f} req/s between first and last request",
        )
        out.add(
            "client CPU per 1,000 vectors",
            cpu_per_k,
            "CPU-s",
            at_most=0.1,
            note=f"process CPU {statistics.median(res['cpus']):.2f} s for {res['embedded']} vectors "
            f"(emulator process: {emu_cpu:.2f} CPU-s per run)",
        )
        out.add("peak RSS of this process", peak_rss_mb(), "MB")
        out.notes.append(
            f"Ideal wall (calls ÷ concurrency × latency): {res['calls'] / ceiling:.2f} s; measured {res['wall']:.2f} s."
        )
        if any(f.ok is False for f in out.figures) and not s.quick:
            prof = ThreadProfiler(timer=time.thread_time)
            library_run(s, emu, s.root / "embed-out-prof", profiler=prof)
            out.profiles["embed run, CPU time per thread (cProfile, tottime)"] = prof.report(25, "tottime")
            out.profiles["embed run, CPU time per thread (cProfile, cumulative)"] = prof.report(25, "cumulative")
            shutil.rmtree(s.root / "embed-out-prof", ignore_errors=True)
    return out
