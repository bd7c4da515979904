"""``python -m benchmarks [--quick] [--scenarios a,b] [--n N] ...``: run, then write docs/benchmarks.md.

Each scenario runs in a fresh Python process (``--child``), so CPU time, peak RSS and imports
(Prefect) stay per scenario. Scenarios: embed, micro, sdk, requests, prefect, memory, rerun,
images, search, peer, firstcall.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks.common import Outcome, Settings

SCENARIOS = {
    "embed": "benchmarks.embed_corpus:run",
    "firstcall": "benchmarks.first_call:run",
    "micro": "benchmarks.micro:run",
    "sdk": "benchmarks.baselines:run_sdk",
    "requests": "benchmarks.baselines:run_requests",
    "prefect": "benchmarks.prefect_overhead:run",
    "memory": "benchmarks.memory:run",
    "rerun": "benchmarks.rerun:run",
    "images": "benchmarks.render_images:run",
    "search": "benchmarks.search:run",
    "scale": "benchmarks.scale:run",
    "peer": "benchmarks.peer:run",
    "bucket": "benchmarks.bucket:run",
}
REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke test (< 2 min)")
    p.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(SCENARIOS))
    p.add_argument("--n", type=int, help="texts in the embedding corpus (default 20,000)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--embed-latency", type=float, help="seconds per embeddings call (default 0.15)")
    p.add_argument("--image-latency", type=float, help="seconds per image (default 2.0)")
    p.add_argument("--images", type=int, help="image rows (default 40)")
    p.add_argument("--memory-n", type=int, help="memory scenario runs N and 10 × N chunks (default 10,000)")
    p.add_argument("--rerun-n", type=int, help="chunks in the unchanged-rerun scenario (default 100,000)")
    p.add_argument("--search-n", type=int, help="vectors in the search scenario (default 1,000,000)")
    p.add_argument("--search-queries", type=int)
    p.add_argument("--sdk-n", type=int, help="texts the SDK loop embeds; 0 = the whole corpus (default 5,000)")
    p.add_argument("--workdir", help="scratch folder (default /tmp/quant-batch-bench)")
    p.add_argument("--keep", action="store_true", help="keep generated data (the search set is reused)")
    p.add_argument("--report", default=str(REPO / "docs" / "benchmarks.md"), help="markdown report path")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per scenario")
    p.add_argument("--child", nargs=3, metavar=("SCENARIO", "SETTINGS", "RESULT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    values = Settings.quick_defaults() if args.quick else {"sdk_n": 5_000}
    for f in fields(Settings):
        given = getattr(args, f.name, None)
        if given is not None and f.name != "quick":
            values[f.name] = given
    if values.get("sdk_n") == 0:
        values["sdk_n"] = None
    return Settings(**values), args


def run_child(name: str, settings_json: str, result_path: str) -> None:
    settings = Settings(**json.loads(settings_json))
    module, func = SCENARIOS[name].split(":")
    t0 = time.perf_counter()
    outcome: Outcome = getattr(importlib.import_module(module), func)(settings)
    outcome.wall_s = time.perf_counter() - t0
    Path(result_path).write_text(json.dumps(outcome.to_dict()))


def main(argv: list[str]) -> int:
    settings, args = parse_args(argv)
    if args.child:
        run_child(*args.child)
        return 0
    names = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    settings.root.mkdir(parents=True, exist_ok=True)
    outcomes, failures = [], {}
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    for name in names:
        result = settings.root / f"result-{name}.json"
        result.unlink(missing_ok=True)
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "benchmarks", "--child", name, json.dumps(asdict(settings)), str(result)]
        try:
            proc = subprocess.run(cmd, env=env, cwd=REPO, timeout=args.timeout, capture_output=True, text=True)
            err = "" if proc.returncode == 0 else (proc.stderr or f"exit status {proc.returncode}")
        except subprocess.TimeoutExpired:
            err = f"timed out after {args.timeout:.0f} s"
        if err or not result.exists():
            failures[name] = err or "no result written"
            print(f"[benchmarks] {name} FAILED:\n{failures[name][-2000:]}", file=sys.stderr)
            continue
        outcome = Outcome.from_dict(json.loads(result.read_text()))
        outcomes.append(outcome)
        for f in outcome.figures:
            mark = "" if f.ok is None else (" ok" if f.ok else " MISS")
            print(f"  {f.name}: {f.value:.4g} {f.unit} {f.target}{mark}", file=sys.stderr)
        print(f"[benchmarks] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    from benchmarks.report import render

    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render(settings, outcomes, failures, time.perf_counter() - start))
    print(f"[benchmarks] report written to {report}", file=sys.stderr)
    if not settings.keep:
        shutil.rmtree(settings.root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
