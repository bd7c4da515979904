"""Scenario peer: quant-batch side by side with what a user would write, on a neutral server.

The server is ``benchmarks.neutral_server`` in its own process (a plain ``http.server`` that
returns fixed 1024-dim vectors after 150 ms), not our emulator. The corpus is a JSONL table of
20,000 texts; concurrency is 16. Each contender runs as its own process, started and reaped
here, so wall time, CPU (user + sys of that whole process: interpreter, imports, writing
results) and peak RSS are the process's own:

* ``sdk``: the official ``quantcdn`` SDK in a sequential loop, as its README shows, on the first
  ``sdk_n`` texts; its full-corpus wall is projected linearly from the loop's own time.
* ``requests``: a hand-written ``requests.Session`` + ``ThreadPoolExecutor(16)``, batches of 100,
  ``resp.json()``, one Parquet file at the end (no retries, no ledger, no durability).
* ``quant-batch``: ``quant-batch embed CONFIG --no-prefect`` on the JSONL table source: the
  whole pipeline (plan, ledger, Parquet parts, DuckDB catalog, publish).
* ``client``: ``QuantClient.embed`` alone in 16 threads over the same batches, vectors dropped:
  the client's own CPU per 1,000 vectors (send, read, decode to float32).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import ORG, TOKEN, Outcome, Settings, corpus_yaml, synthetic_texts

TITLE = "Side by side on a neutral server: official SDK, hand-written requests, quant-batch"
CONCURRENCY = 16
REPO = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, n: int) -> Path:
    """``n`` distinct prose-like texts as ``{"id", "text"}`` lines (reused when already there)."""
    if path.exists() and sum(1 for _ in path.open()) == n:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, text in enumerate(synthetic_texts(n, min_words=60, max_words=140)):
            f.write(json.dumps({"id": f"doc-{i:07d}", "text": text}) + "\n")
    return path


def read_jsonl_texts(path: Path) -> list[str]:
    with path.open() as f:
        return [json.loads(line)["text"] for line in f]


@contextmanager
def neutral_server(latency: float) -> Iterator[str]:
    """The neutral server in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.neutral_server", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"neutral server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(10)


def measure_process(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> dict[str, Any]:
    """Run ``cmd`` to its end; its wall, user+sys CPU and peak RSS (from ``wait4``), and its JSON
    result line when it prints one (``RESULT {...}``)."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{text[-3000:]}")
    result = next((json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")), {})
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, **result}


def _env(base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "QUANT_API_KEY": TOKEN,
        "QUANT_ORGANIZATION": ORG,
        "QUANT_BASE_URL": base_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def quant_batch_cli() -> list[str]:
    script = Path(sys.executable).parent / "quant-batch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "quant_batch.cli"]


def run(s: Settings) -> Outcome:
    out = Outcome("peer", TITLE)
    load_before = os.getloadavg()[0]
    work = s.root / "peer"
    shutil.rmtree(work / "qb-out", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    corpus = write_jsonl(work / f"corpus-{s.n}.jsonl", s.n)
    config = corpus_yaml(corpus, work / "qb-out", CONCURRENCY, work / "peer.yaml")
    sdk_n = min(s.sdk_n or s.n, s.n)
    me = [sys.executable, "-m", "benchmarks.peer"]
    with neutral_server(s.embed_latency) as url:
        env = _env(url)
        ours = measure_process(quant_batch_cli() + ["embed", str(config), "--no-prefect"], env, work / "qb.log")
        hand = measure_process(
            me + ["requests", url, str(corpus), str(work / "requests.parquet")], env, work / "requests.log"
        )
        client = measure_process(me + ["client", url, str(corpus)], env, work / "client.log")
        sdk = measure_process(
            me + ["sdk", url, str(corpus), str(work / "sdk.parquet"), str(sdk_n)], env, work / "sdk.log"
        )
    k = s.n / 1000
    sdk_wall = sdk["wall"] + sdk["loop_wall"] * (s.n / sdk_n - 1)
    out.add("quant-batch CLI: wall", ours["wall"], "s", note=f"whole process, {s.n} texts, concurrency {CONCURRENCY}")
    out.add(
        "quant-batch CLI: CPU per 1,000 vectors (user+sys)",
        ours["cpu"] / k,
        "CPU-s",
        at_most=0.15,
        note=f"{ours['cpu']:.2f} CPU-s for the whole process",
    )
    out.add("quant-batch CLI: peak RSS", ours["rss_mb"], "MB", at_most=350)
    out.add("hand-written requests + ThreadPool(16): wall", hand["wall"], "s")
    out.add("hand-written: CPU per 1,000 vectors", hand["cpu"] / k, "CPU-s", note=f"peak RSS {hand['rss_mb']:.0f} MB")
    out.add(
        "SDK sequential loop: wall for the corpus",
        sdk_wall,
        "s",
        note=("measured" if sdk_n == s.n else f"projected from {sdk_n} texts in {sdk['loop_wall']:.1f} s")
        + f"; CPU {sdk['cpu'] / (sdk_n / 1000):.2f} CPU-s/1k; peak RSS {sdk['rss_mb']:.0f} MB",
    )
    out.add("hand-written wall ÷ quant-batch wall", hand["wall"] / ours["wall"], "", at_least=1.1)
    out.add("SDK wall ÷ quant-batch wall", sdk_wall / ours["wall"], "", at_least=13)
    out.add(
        "QuantClient alone: CPU per 1,000 vectors",
        client["loop_cpu"] / k,
        "CPU-s",
        note=f"16 threads, vectors dropped; {client['loop_wall']:.2f} s wall in the loop",
    )
    out.notes.append(
        f"Ideal wall at concurrency {CONCURRENCY}: {s.n / 100 / CONCURRENCY * s.embed_latency:.2f} s "
        f"({s.n // 100} calls of 100 texts at {s.embed_latency} s). Load (1-min average) "
        f"{load_before:.2f} before the contenders ran, {os.getloadavg()[0]:.2f} after: "
        "this box has 2 cores, so a load above 2 inflates every wall here."
    )
    return out


# --- the contenders' own processes ------------------------------------------------------------


def _client_loop(url: str, corpus: Path) -> dict[str, float]:
    from benchmarks.baselines import batched
    from quant_batch.client import QuantClient
    from quant_batch.client.settings import ApiSettings

    texts = read_jsonl_texts(corpus)
    settings = ApiSettings.from_env(api_key=TOKEN, organization=ORG, base_url=url)
    with QuantClient(settings, pool_size=CONCURRENCY) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in pool.map(lambda b: client.embed(b).vectors.shape, batched(texts)):
            pass
        return {"loop_wall": time.perf_counter() - w0, "loop_cpu": time.process_time() - c0}


def child(argv: list[str]) -> None:
    from benchmarks.baselines import requests_pool, sdk_loop

    kind, url, corpus = argv[0], argv[1], Path(argv[2])
    result: dict[str, float] = {}
    if kind == "requests":
        requests_pool(url, read_jsonl_texts(corpus), Path(argv[3]), CONCURRENCY)
    elif kind == "sdk":
        texts = read_jsonl_texts(corpus)[: int(argv[4])]
        t0 = time.perf_counter()
        sdk_loop(url, texts, Path(argv[3]))
        result["loop_wall"] = time.perf_counter() - t0
    elif kind == "client":
        result = _client_loop(url, corpus)
    else:
        raise SystemExit(f"unknown contender {kind!r}")
    result["self_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    child(sys.argv[1:])
