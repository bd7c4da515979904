"""kill -9 a CLI corpus run at random moments, rerun it, and compare with a clean run.

The killed runs use the real CLI wrapped by ``_instrumented_cli.py``: part writes pause between
temp file and rename, DuckDB loads pause inside their transaction, and a phase log says what was
running at the moment of the kill. The run that must finish is the plain
``python -m quant_batch.cli embed CONFIG --no-prefect``. After it: the tables equal the clean
run's, no chunk or key is duplicated, no ``.tmp-*`` file is left, and the catalog opens.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.reliability.conftest import (
    CLI,
    REPO,
    assert_no_duplicate_vectors,
    cli_env,
    query,
    table_config,
    vector_snapshot,
    write_text_table,
)

INSTRUMENTED = [sys.executable, str(Path(__file__).with_name("_instrumented_cli.py"))]
N_TEXTS = 600
SEEDS = (11, 22, 33, 44, 55, 66)
SLOW_IO = {"RELIABILITY_WRITE_PAUSE": "0.03", "RELIABILITY_LOAD_PAUSE": "0.03"}
KILLS: list[tuple[int, float, str]] = []  # (seed, delay, phases active), for the report


def _config(tmp_path: Path, table: Path, out: Path) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(table_config(table, out, batch_size=10, concurrency=3)))
    return path


def _active_phases(log: Path) -> str:
    """Phases entered and not left when the process died, e.g. 'duckdb-load+part-write'."""
    depth: Counter[str] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            sign, name = line.split()[1][0], line.split()[1][1:]
            depth[name] += 1 if sign == "+" else -1
    active = sorted(n for n, d in depth.items() if d > 0 and n != "cli")
    if not log.exists() or not depth:
        return "startup"
    return "+".join(active) or "api-calls"


def _killed_run(cfg: Path, env: dict, delay: float, log: Path) -> str | None:
    """Start an instrumented run and SIGKILL it after ``delay`` s; None if it finished first."""
    log.unlink(missing_ok=True)
    with open(log.with_suffix(".out"), "wb") as sink:
        proc = subprocess.Popen([*INSTRUMENTED, "embed", str(cfg), "--no-prefect"], cwd=REPO, stdout=sink,
                                stderr=subprocess.STDOUT, env={**env, **SLOW_IO, "RELIABILITY_PHASE_LOG": str(log)})
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            return _active_phases(log)
    assert proc.returncode == 0, log.with_suffix(".out").read_text()[-3000:]
    return None


def _finish(cfg: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, "embed", str(cfg), "--no-prefect"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def clean_reference(tmp_path_factory, emulator_server):
    """An uninterrupted instrumented run (slow emulator): the expected tables and the run time."""
    emulator_server.reset()
    emulator_server.set_faults(latency={"embeddings": 0.1})
    tmp = tmp_path_factory.mktemp("crash-clean")
    table = write_text_table(tmp / "src" / "texts.jsonl", N_TEXTS)
    cfg = _config(tmp, table, tmp / "clean")
    env = cli_env(emulator_server)
    started = time.monotonic()
    assert _killed_run(cfg, env, 300, tmp / "clean.log") is None
    duration = time.monotonic() - started
    emulator_server.reset()
    phases = (tmp / "clean.log").read_text()
    assert "+part-write" in phases and "+duckdb-load" in phases
    return table, vector_snapshot(tmp / "clean"), duration


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_at_random_moment_then_resume(seed, clean_reference, tmp_path, emulator):
    table, expected, duration = clean_reference
    emulator.set_faults(latency={"embeddings": 0.1})
    out = tmp_path / "index"
    cfg = _config(tmp_path, table, out)
    env = cli_env(emulator)
    rng = random.Random(seed)
    # one kill, or (every other seed) a second kill of the resuming run as well
    for attempt in range(1 + (seed % 2 == 0)):
        delay = rng.uniform(0.05 * duration, duration)
        phases = _killed_run(cfg, env, delay, tmp_path / f"kill{attempt}.log")
        KILLS.append((seed, round(delay, 2), phases or "finished before the kill"))
    emulator.set_faults()  # the finishing run need not be slow
    _finish(cfg, env)

    assert vector_snapshot(out) == expected
    assert_no_duplicate_vectors(out)
    assert query(out, "SELECT count(*) FROM documents WHERE status <> 'ok'") == [(0,)]
    assert query(out, "SELECT count(*) FROM errors") == [(0,)]
    left = [p.relative_to(out).as_posix() for p in out.rglob(".tmp-*")]
    assert not left, f"temp files left visible: {left}"
    stale_plans = [p.name for p in (out / "state").glob("plan-*.parquet")]
    assert not stale_plans, f"plans of killed runs left behind: {stale_plans}"
    con = duckdb.connect(str(out / "catalog.duckdb"))  # read-write: the file is not damaged
    try:
        assert con.execute("SELECT count(*) FROM _parts").fetchone()[0] > 0
    finally:
        con.close()
    # rebuilding from the parts alone gives the same tables (parts are the durable truth)
    rebuilt = subprocess.run([*CLI, "catalog", "rebuild", str(out)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert vector_snapshot(out) == expected
    print(f"\nkills so far: {KILLS}")
