"""Scenario 3: the same corpus through the library and through the Prefect flow (threads).

Without ``PREFECT_API_URL`` Prefect starts a temporary server the first time a flow runs in a
process (a fixed cost, seconds). We time a trivial flow first, which pays for that, then
alternate library runs and flow runs on fresh output folders and compare medians:
flow wall (warm server) ÷ library wall, and the same with the server start added (a cold CLI
call). Prefect is imported before any timing starts.
"""

from __future__ import annotations

import shutil
import statistics
from typing import Any

from benchmarks.common import Outcome, Settings, corpus_yaml, emulator, endpoint_calls, measured
from benchmarks.embed_corpus import corpus_table, library_run

TITLE = "Prefect flow overhead vs the library"


def run(s: Settings) -> Outcome:
    out = Outcome("prefect", TITLE)
    import logging

    from prefect import flow

    from quant_batch.flows.embed_corpus import embed_corpus

    logging.getLogger("prefect").setLevel(logging.WARNING)

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    repeats = 1 if s.quick else 2
    table = corpus_table(s)
    lib_walls, flow_walls, flow_inside = [], [], []
    with emulator(embed_latency=s.embed_latency) as emu:
        with measured() as cold:
            noop()
        with measured() as warm_noop:
            noop()
        for _ in range(repeats):
            lib_walls.append(library_run(s, emu, s.root / "prefect-lib")["wall"])
            target = corpus_yaml(table, s.root / "prefect-flow", s.concurrency, s.root / "prefect-flow.yaml")
            shutil.rmtree(s.root / "prefect-flow", ignore_errors=True)
            emu.reset()
            with measured() as m:
                summary: dict[str, Any] = embed_corpus(target=str(target))
            assert summary["status"] == "completed", summary
            assert endpoint_calls(emu, "embeddings") == -(-s.n // 100)
            flow_walls.append(m.wall)
            flow_inside.append(summary["wall_s"])
    lib, fl, inside = (statistics.median(x) for x in (lib_walls, flow_walls, flow_inside))
    out.add("library wall (median)", lib, "s", note=", ".join(f"{w:.2f}" for w in lib_walls))
    out.add("flow call wall, server warm (median)", fl, "s", note=", ".join(f"{w:.2f}" for w in flow_walls))
    out.add("flow's own run summary wall (median)", inside, "s", note="CorpusRun start to finish inside the flow")
    out.add("ephemeral server start + first flow", cold.wall, "s", note=f"a second empty flow: {warm_noop.wall:.2f} s")
    out.add("flow wall ÷ library wall (server warm)", fl / lib, "", at_most=1.05)
    out.add(
        "flow wall ÷ library wall (incl. server start)",
        (fl + cold.wall - warm_noop.wall) / lib,
        "",
        note="a cold `quant-batch embed` without PREFECT_API_URL; fixed cost, shrinks with corpus size",
    )
    for d in ("prefect-lib", "prefect-flow"):
        shutil.rmtree(s.root / d, ignore_errors=True)
    return out
