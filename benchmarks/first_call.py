"""Scenario firstcall: time from a user's command to its first API request, on one big text file.

``quant-batch embed BIG.txt --out DIR --no-prefect`` on a single 60 MB text file (one document,
so the whole file is read, decoded and hashed before its first chunk is cut), against a server in
this process that notes when the first POST arrives; the command is stopped right then. Reported:
the median of three starts, and what bounds it: the CLI's own start (``quant-batch --version``) and
the imports an embed run needs, each timed in a fresh interpreter.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from benchmarks.common import Outcome, Settings
from benchmarks.neutral_server import handler
from benchmarks.peer import REPO, _env, quant_batch_cli

TITLE = "First call: one 60 MB text file, start to first API request"
SIZE = 60_000_000
EMBED_IMPORTS = "import quant_batch.cli, quant_batch.api, quant_batch.embed.run, quant_batch.client.factory"


def write_big_text(path: Path, size: int = SIZE) -> Path:
    """Paragraphs of plain words up to ``size`` bytes (reused when already there)."""
    if path.exists() and path.stat().st_size >= size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(0)
    words = "amber brisk calm dusty eager faint gentle hollow icy jolly keen lucid misty noble opal harbour".split()
    with path.open("w") as f:
        written = 0
        while written < size:
            para = " ".join(rnd.choice(words) for _ in range(120)) + ".\n\n"
            written += f.write(para)
    return path


class _FirstPost:
    """A neutral server on a thread that records when its first POST arrives."""

    def __init__(self) -> None:
        seen = self.seen = threading.Event()
        base = handler(0.0, 1024)

        class Handler(base):  # type: ignore[misc,valid-type]
            def do_POST(self) -> None:
                seen.set()
                super().do_POST()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def first_call_after(self, cmd: list[str], env: dict[str, str], timeout: float = 60) -> float:
        self.seen.clear()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not self.seen.wait(timeout):
                raise RuntimeError(f"no API call within {timeout:.0f} s")
            return time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t0


def run(s: Settings) -> Outcome:
    out = Outcome("firstcall", TITLE)
    work = s.root / "firstcall"
    big = write_big_text(work / "big60.txt")
    server = _FirstPost()
    env = _env(server.url)
    laps = []
    for i in range(3):
        target = work / f"out-{i}"
        shutil.rmtree(target, ignore_errors=True)
        laps.append(
            server.first_call_after(quant_batch_cli() + ["embed", str(big), "--out", str(target), "--no-prefect"], env)
        )
    server.server.shutdown()
    note = "runs: " + ", ".join(f"{x:.2f}" for x in laps)
    out.add("start to first API call (median of 3)", statistics.median(laps), "s", at_most=1.0, note=note)
    start = statistics.median(_wall(quant_batch_cli() + ["--version"], env) for _ in range(3))
    out.add("CLI start alone (quant-batch --version, median of 3)", start, "s")
    imports = statistics.median(_wall([sys.executable, "-c", EMBED_IMPORTS], env) for _ in range(3))
    out.add("interpreter + an embed run's imports (median of 3)", imports, "s", note=EMBED_IMPORTS)
    return out
