"""Scenario 7: rerunning an unchanged 100,000-chunk corpus costs no API calls and little time.

The first run populates the index with the emulator at latency 0 (only to save time); then
latency goes back to the configured value and the rerun is timed. Every chunk's key is already
in the ledger, so the rerun must send nothing.
"""

from __future__ import annotations

import shutil

from benchmarks.common import (
    Outcome,
    Settings,
    ThreadProfiler,
    corpus_config,
    emulator,
    endpoint_calls,
    library_client,
    measured,
    set_latency,
    write_corpus_table,
)

TITLE = "Unchanged rerun"


def run(s: Settings) -> Outcome:
    from quant_batch.embed.run import run_corpus

    out = Outcome("rerun", TITLE)
    n = s.rerun_n
    table = write_corpus_table(s.root / f"short-{n}.parquet", n, min_words=15, max_words=40, seed=3)
    target = s.root / "rerun-out"
    shutil.rmtree(target, ignore_errors=True)
    cfg = corpus_config(table, target, s.concurrency)
    with emulator(embed_latency=0.0) as emu, library_client(s.concurrency) as client:
        with measured() as first:
            summary = run_corpus(cfg, client)
        out.add(
            "first run (populate, latency 0)",
            first.wall,
            "s",
            note=f"{summary.stats['embedded']:,} embedded in {summary.api_calls} calls",
        )
        set_latency(emu, embed_latency=s.embed_latency)
        emu.reset()
        set_latency(emu, embed_latency=s.embed_latency)
        with measured() as again:
            summary = run_corpus(cfg, client)
        calls = endpoint_calls(emu, "embeddings")
        out.add(
            f"rerun of {n:,} unchanged chunks: wall",
            again.wall,
            "s",
            at_most=10,
            note=f"CPU {again.cpu:.2f} s; unchanged {summary.stats['chunks_unchanged']:,}, "
            f"documents unchanged {summary.stats['documents_unchanged']:,}",
        )
        out.add("rerun: API calls", calls, "calls", at_most=0)
        if again.wall > 10 and not s.quick:
            prof = ThreadProfiler()
            prof.main.runcall(run_corpus, cfg, client)
            out.profiles["rerun (cProfile, cumulative)"] = prof.report(30, "cumulative")
    shutil.rmtree(target, ignore_errors=True)
    return out
