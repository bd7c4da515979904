"""``python -m benchmarks.cli_rerun [--prefect] [--repeat N]``: wall time of an unchanged rerun from the shell.

What a user waits for when nothing changed: ``quant-batch embed`` of the sample corpus (the demo's
config: folder + FAQ table) a second time, measured around the whole command (interpreter start,
imports, planning, loading, summary) with no Prefect API configured. The emulator runs in its
own process. ``--prefect`` forces the flow path (a temporary Prefect server per command) for the
comparison. Prints one JSON line per measurement and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quant_batch.cli import _demo_config
from quant_batch.emulator import EmulatorServer

SAMPLE = Path(__file__).resolve().parent.parent / "quant_batch" / "data" / "sample"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cli_rerun", description=__doc__.splitlines()[0])
    p.add_argument("--prefect", action="store_true", help="force the Prefect flow path (--prefect)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qb-rerun-") as tmp, EmulatorServer(token="bench", mode="process") as emu:
        out = Path(tmp) / "index"
        cfg = Path(tmp) / "corpus.yaml"
        cfg.write_text(_demo_config(SAMPLE, out))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            QUANT_API_KEY="bench",
            QUANT_ORGANIZATION="bench",
            QUANT_BASE_URL=emu.base_url,
            PREFECT_HOME=str(Path(tmp) / "prefect-home"),
        )
        cmd = [sys.executable, "-m", "quant_batch.cli", "embed", str(cfg), "--json"]
        cmd += ["--prefect"] if args.prefect else []
        first = _run(cmd, env)
        times = []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), _child_cpu()
            summary = _run(cmd, env)
            wall = time.perf_counter() - t0
            times.append(wall)
            # CPU of the command: on a busy 2-core machine the wall time mostly measures the neighbours
            print(
                json.dumps(
                    {
                        "wall_s": round(wall, 2),
                        "cpu_s": round(_child_cpu() - c0, 2),
                        "api_calls": summary["api_calls"],
                        "runner": summary["stats"]["runner"],
                        "chunks": summary["stats"]["chunks_total"],
                    }
                )
            )
        print(
            json.dumps(
                {"first_run_api_calls": first["api_calls"], "median_rerun_s": round(statistics.median(times), 2)}
            )
        )


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> dict:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode not in (0, 1):
        raise SystemExit(res.stderr)
    return json.loads(res.stdout)


if __name__ == "__main__":
    main()
