"""Scenario scale: one user's run at 100,000 and 1,000,000 chunks, as the CLI runs it.

Each size is a JSONL table of short texts (one chunk each) embedded with ``quant-batch embed
CONFIG --no-prefect`` against the neutral server at zero latency (``benchmarks.neutral_server``:
cached answers, almost no CPU), so the figures are quant-batch's own: wall, whole-process CPU per
1,000 vectors, peak RSS, disk bytes per stored vector (against the raw float32 bytes), the
unchanged rerun, and search latency (the first search builds the matrix, the next ones scan it).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import DIMS, Outcome, Settings, corpus_yaml
from benchmarks.peer import _env, measure_process, neutral_server, quant_batch_cli

TITLE = "Scale: 100,000 and 1,000,000 chunks (neutral server, zero latency)"
CONCURRENCY = 16


def write_short_jsonl(path: Path, n: int) -> Path:
    """``n`` distinct ~100-character texts, one chunk each (reused when already there)."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    words = (
        "amber brisk calm dusty eager faint gentle hollow icy jolly keen lucid misty noble opal harbour "
        "lantern meadow orchard quarry river saddle tunnel valley willow beacon canyon"
    ).split()
    with path.open("w") as f:
        for i in range(n):
            text = " ".join(words[(i * 7 + j * 13 + i // 97) % len(words)] for j in range(12))
            f.write(json.dumps({"id": f"r{i:07d}", "text": f"{text} item {i} code {i * 7919 % 100003}."}) + "\n")
    return path


def disk_bytes(root: Path, *, matrix: bool) -> int:
    """Bytes of everything a run keeps (parts, state, catalog), with or without the search matrix."""
    total = 0
    for p in root.rglob("*"):
        if p.is_file() and (matrix or not p.name.startswith("search-")):
            total += p.stat().st_size
    return total


def run(s: Settings) -> Outcome:
    out = Outcome("scale", TITLE)
    sizes = [2_000, 20_000] if s.quick else [100_000, 1_000_000]
    with neutral_server(0.0) as url:
        env = _env(url)
        for n in sizes:
            _one_size(s, out, env, n)
    return out


def _one_size(s: Settings, out: Outcome, env: dict[str, str], n: int) -> None:
    work = s.root / "scale"
    target = work / f"out-{n}"
    if target.exists():
        import shutil

        shutil.rmtree(target)
    table = write_short_jsonl(work / f"short-{n}.jsonl", n)
    config = corpus_yaml(table, target, CONCURRENCY, work / f"scale-{n}.yaml")
    label = f"{n:,} chunks"
    first = measure_process(quant_batch_cli() + ["embed", str(config), "--no-prefect"], env, work / f"embed-{n}.log")
    k = n / 1000
    out.add(f"{label}: embed wall", first["wall"], "s", note=f"{n / first['wall']:,.0f} chunks/s")
    out.add(f"{label}: CPU per 1,000 vectors (whole process)", first["cpu"] / k, "CPU-s", at_most=0.15)
    out.add(f"{label}: peak RSS", first["rss_mb"], "MB", at_most=350)
    raw = n * DIMS * 4
    before = disk_bytes(target, matrix=False)
    out.add(
        f"{label}: disk per vector, without the search matrix",
        before / raw,
        "× raw float32",
        at_most=1.5,
        note=f"{before / 2**20:,.0f} MiB for {raw / 2**20:,.0f} MiB of float32",
    )
    again = measure_process(quant_batch_cli() + ["embed", str(config), "--no-prefect"], env, work / f"rerun-{n}.log")
    out.add(f"{label}: unchanged rerun wall", again["wall"], "s", note=f"CPU {again['cpu']:.1f} s")
    times = measure_process(
        [sys.executable, "-m", "benchmarks.scale", "search", str(target)], env, work / f"search-{n}.log"
    )
    out.add(f"{label}: first search (builds the matrix from 100k chunks on)", times["first"], "s")
    out.add(f"{label}: search latency (median of 5, in-process)", times["median"], "s", at_most=0.5)
    after = disk_bytes(target, matrix=True)
    out.add(f"{label}: disk per vector, with the search matrix", after / raw, "× raw float32", at_most=1.5)


def search_child(target: str) -> None:
    from quant_batch.client import QuantClient
    from quant_batch.query.search import search

    with QuantClient() as client:
        t0 = time.perf_counter()
        search(Path(target), "harbour lantern meadow", client, k=10)
        first = time.perf_counter() - t0
        laps = []
        for q in ("quarry river", "valley willow beacon", "amber brisk calm", "icy jolly keen", "noble opal"):
            t0 = time.perf_counter()
            search(Path(target), q, client, k=10)
            laps.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps({"first": first, "median": statistics.median(laps)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "search":
        search_child(sys.argv[2])
