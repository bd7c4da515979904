"""Scenario 8: rendering M image rows at a fixed 2 s per image with concurrency 8.

The ideal wall is ``ceil(M / concurrency) × latency``; the ratio shows what planning, PNG
writes, Parquet parts, the catalog and the contact sheet add. Run in the library (thread pool)
and, for comparison, through the Prefect flow.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from benchmarks.common import Outcome, Settings, ThreadProfiler, emulator, endpoint_calls, measured, peak_rss_mb

TITLE = "Image rendering at a fixed latency"


def write_manifest(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(
                json.dumps(
                    {
                        "id": f"img-{i:04d}",
                        "prompt": f"A lighthouse on a rocky coast, study {i}",
                        "width": 512,
                        "height": 512,
                        "seed": i,
                    }
                )
                + "\n"
            )
    return path


def render_once(s: Settings, manifest: Path, out_dir: Path, profiler: ThreadProfiler | None = None):
    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.client.factory import build_client
    from quant_batch.config_files import parse_config
    from quant_batch.render import run as render_mod
    from quant_batch.render.config import RenderConfig

    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = parse_config(
        RenderConfig, {"manifest": str(manifest), "out": str(out_dir), "concurrency": s.concurrency}, source="bench"
    )
    original = render_mod.render_rows
    if profiler:
        render_mod.render_rows = profiler.wrap(original)
    try:
        with build_client(ApiConfig(), RateLimits(), pool_size=s.concurrency, images=True) as client, measured() as m:
            if profiler:
                summary = profiler.main.runcall(render_mod.render_manifest, cfg, client)
            else:
                summary = render_mod.render_manifest(cfg, client)
    finally:
        render_mod.render_rows = original
    return m, summary


def run(s: Settings) -> Outcome:
    out = Outcome("images", TITLE)
    manifest = write_manifest(s.root / "images" / "manifest.jsonl", s.images)
    ideal = math.ceil(s.images / s.concurrency) * s.image_latency
    with emulator(image_latency=s.image_latency) as emu:
        m, summary = render_once(s, manifest, s.root / "images" / "out")
        calls = endpoint_calls(emu, "image-generation")
        rss = peak_rss_mb()
        out.add(
            f"{s.images} rows: wall",
            m.wall,
            "s",
            note=f"{summary.stats['rendered']} rendered, {calls} calls, status {summary.status}, CPU {m.cpu:.2f} s",
        )
        out.add(
            "wall ÷ ideal (ceil(M ÷ concurrency) × latency)",
            m.wall / ideal,
            "",
            at_most=1.05,
            note=f"ideal {ideal:.1f} s at {s.image_latency} s per image",
        )
        out.add("peak RSS (library run)", rss, "MB")
        if m.wall / ideal > 1.05 and not s.quick:
            prof = ThreadProfiler()
            render_once(s, manifest, s.root / "images" / "out-prof", prof)
            out.profiles["render run (cProfile wall clock, cumulative, all threads)"] = prof.report(25, "cumulative")
        import logging

        from prefect import flow

        from quant_batch.flows.render_images import render_images

        logging.getLogger("prefect").setLevel(logging.WARNING)
        flow(name="bench-noop")(lambda: None)()  # start the temporary server outside the timing
        with measured() as fm:
            res = render_images(target=str(manifest), out=str(s.root / "images" / "flow"), concurrency=s.concurrency)
        out.add(
            "Prefect flow (server warm): wall ÷ ideal",
            fm.wall / ideal,
            "",
            note=f"{fm.wall:.2f} s, status {res['status']}",
        )
    shutil.rmtree(s.root / "images", ignore_errors=True)
    return out
