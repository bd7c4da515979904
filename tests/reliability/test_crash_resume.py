"""kill -9 a CLI corpus run at random moments, rerun it, and compare with a clean run.

Half the random kills hit the plain ``python -m quant_batch.cli embed CONFIG --no-prefect``; the
other half, and the kills aimed at a phase, hit the same CLI wrapped by ``_instrumented_cli.py``:
part writes pause between temp file and rename, DuckDB loads pause inside their transaction, and
a phase log says what was running at the moment of the kill. The run that must finish is always
the plain command. After it: the tables equal the clean
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

from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from quant_batch.store.catalog import Catalog
from quant_batch.store.layout import Layout
from tests.reliability.conftest import (
    CLI,
    REPO,
    assert_no_duplicate_vectors,
    cli_env,
    fast_client,
    image_snapshot,
    png_files,
    query,
    table_config,
    vector_snapshot,
    write_prompt_manifest,
    write_text_table,
)

INSTRUMENTED = [sys.executable, str(Path(__file__).with_name("_instrumented_cli.py"))]
N_TEXTS = 400
SEEDS = (11, 22, 33, 44)  # 6 kills: even seeds also kill the resuming run
SLOW_IO = {"RELIABILITY_WRITE_PAUSE": "0.03", "RELIABILITY_LOAD_PAUSE": "0.03"}
KILLS: list[tuple[int, float, str]] = []  # (seed, delay, phases active), for the report


def _config(tmp_path: Path, table: Path, out: Path) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(table_config(table, out, batch_size=10, concurrency=3)))
    return path


def _depths(text: str) -> tuple[Counter[str], Counter[str]]:
    """(phases entered and not left, times each phase was entered) from a phase log."""
    depth: Counter[str] = Counter()
    entered: Counter[str] = Counter()
    for line in text.splitlines():
        event = line.split()[1]
        depth[event[1:]] += 1 if event[0] == "+" else -1
        entered[event[1:]] += event[0] == "+"
    return depth, entered


def _active_phases(log: Path) -> str:
    """What the process was doing when it died, e.g. "duckdb-load+part-write" or "api-calls"."""
    depth, entered = _depths(log.read_text() if log.exists() else "")
    active = sorted(n for n, d in depth.items() if d > 0 and n != "cli")
    if active:
        return "+".join(active)
    return "api-calls" if entered["plan"] else "startup"


def _killed_run(
    cfg: Path,
    env: dict,
    log: Path,
    *,
    delay: float | None = None,
    phase: str | None = None,
    nth: int = 1,
    plain: bool = False,
    args: tuple[str, ...] = ("embed",),
) -> str | None:
    """Start a run and SIGKILL it after ``delay`` s, or once it is inside its ``nth`` ``phase``.

    The run is instrumented (phase log, slow I/O) unless ``plain``: then it is exactly
    ``python -m quant_batch.cli ...``. Returns what was running at the kill ("?" for a plain
    run), or None if the run finished first.
    """
    log.unlink(missing_ok=True)
    started = time.monotonic()
    cmd = [*(CLI if plain else INSTRUMENTED), *args, str(cfg), "--no-prefect"]
    run_env = env if plain else {**env, **SLOW_IO, "RELIABILITY_PHASE_LOG": str(log)}
    with open(log.with_suffix(".out"), "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=run_env)
        while proc.poll() is None:
            if delay is not None:
                due = time.monotonic() - started >= delay
            else:
                depth, entered = _depths(log.read_text() if log.exists() else "")
                due = entered[phase] >= nth and depth[phase] > 0
            if due:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                if proc.returncode == 0:  # it exited between the poll and the kill
                    break
                assert proc.returncode == -signal.SIGKILL
                return "? (plain CLI)" if plain else _active_phases(log)
            time.sleep(0.002)
    assert proc.returncode == 0, log.with_suffix(".out").read_text()[-3000:]
    return None


def _finish(cfg: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*CLI, "embed", str(cfg), "--no-prefect"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _assert_same_as_clean(out: Path, expected: dict) -> None:
    assert vector_snapshot(out) == expected
    assert_no_duplicate_vectors(out)
    assert query(out, "SELECT count(*) FROM documents WHERE status <> 'ok'") == [(0,)]
    assert query(out, "SELECT count(*) FROM errors") == [(0,)]
    left = [p.relative_to(out).as_posix() for p in out.rglob(".tmp-*")]
    assert not left, f"temp files left visible: {left}"
    # the killed runs do not stay "running" forever in `quant-batch runs`
    assert query(out, "SELECT run_id FROM runs WHERE status = 'running'") == []
    stale_plans = [p.name for p in (out / "state").glob("plan-*.parquet")]
    assert not stale_plans, f"plans of killed runs left behind: {stale_plans}"
    con = duckdb.connect(str(out / "catalog.duckdb"))  # read-write: the file is not damaged
    try:
        assert con.execute("SELECT count(*) FROM _parts").fetchone()[0] > 0
    finally:
        con.close()
    # rebuilding from the parts alone gives the same tables (parts are the durable truth)
    (out / "catalog.duckdb").unlink()
    with Catalog(Layout(out)) as cat:
        cat.sync()
    assert vector_snapshot(out) == expected


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
    assert _killed_run(cfg, env, tmp / "clean.log", delay=300) is None
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
    # one kill, or (every other seed) a second kill of the resuming run as well; odd seeds run
    # the plain CLI, even seeds the instrumented one (slow I/O widens the write and load windows)
    for attempt in range(1 + (seed % 2 == 0)):
        delay = rng.uniform(0.05 * duration, duration)
        phases = _killed_run(cfg, env, tmp_path / f"kill{attempt}.log", delay=delay, plain=seed % 2 == 1)
        KILLS.append((seed, round(delay, 2), phases or "finished before the kill"))
    emulator.set_faults()  # the finishing run need not be slow
    _finish(cfg, env)

    _assert_same_as_clean(out, expected)
    print(f"\nkills so far: {KILLS}")


# (phase, which occurrence, kill the resuming run too while it loads the parts left behind)
TARGETED = [("part-write", 4, False), ("load-tx", 7, False), ("finish", 1, False), ("part-write", 9, True)]


@pytest.mark.parametrize(("phase", "nth", "then_in_sync"), TARGETED, ids=lambda v: str(v))
def test_kill_inside_phase_then_resume(phase, nth, then_in_sync, clean_reference, tmp_path, emulator):
    """Kills aimed at the narrow windows: a part half renamed, a load transaction open, the
    live index being published, and the resume's own sync of a crashed run's parts."""
    table, expected, _ = clean_reference
    emulator.set_faults(latency={"embeddings": 0.1})
    out = tmp_path / "index"
    cfg = _config(tmp_path, table, out)
    env = cli_env(emulator)
    active = _killed_run(cfg, env, tmp_path / "kill0.log", phase=phase, nth=nth)
    assert active is not None and phase in active, active
    KILLS.append((f"{phase}#{nth}", None, active))
    if then_in_sync:
        assert list((out / "parts").rglob("*.parquet")), "the first kill left no parts to resume from"
        # the resume's first load transaction is its startup sync of the parts the kill left
        active = _killed_run(cfg, env, tmp_path / "kill1.log", phase="load-tx", nth=1)
        assert active is not None and "sync" in active, active
        KILLS.append(("resume-sync", None, active))
    emulator.set_faults()
    _finish(cfg, env)
    _assert_same_as_clean(out, expected)
    print(f"\nkills so far: {KILLS}")


def test_kill_a_render_run_then_resume(tmp_path, emulator):
    """The same for images: killed twice mid-run, the rerun leaves every row rendered once."""
    manifest = write_prompt_manifest(tmp_path / "prompts.jsonl", 24)
    clean = tmp_path / "clean"
    with fast_client(emulator) as c:
        assert render_manifest(RenderConfig(manifest=manifest, out=clean), c).status == "completed"
    emulator.set_faults(latency={"image-generation": 0.25})
    out = tmp_path / "renders"
    env = cli_env(emulator)
    # a kill at a random moment (24 rows x 0.25 s / 4 threads: ~1.5 s of API calls after a ~1 s
    # startup), then one inside the resuming run's third row part write (its PNG already renamed)
    delay = random.Random(5).uniform(1.0, 2.5)
    active = _killed_run(manifest, env, tmp_path / "render0.log", delay=delay, args=("render", "--out", str(out)))
    KILLS.append(("render", round(delay, 2), active or "finished before the kill"))
    active = _killed_run(
        manifest, env, tmp_path / "render1.log", phase="part-write", nth=3, args=("render", "--out", str(out))
    )
    assert active is not None and "part-write" in active, active
    KILLS.append(("render part-write#3", None, active))
    emulator.set_faults()
    done = subprocess.run(
        [*CLI, "render", str(manifest), "--out", str(out), "--no-prefect"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert image_snapshot(out) == image_snapshot(clean)
    assert png_files(out) == png_files(clean)
    assert query(out, "SELECT count(*), count(DISTINCT (id, n)) FROM images") == [(24, 24)]
    assert not [p.name for p in out.rglob(".tmp-*")]
    print(f"\nkills so far: {KILLS}")
    assert query(out, "SELECT run_id FROM runs WHERE status = 'running'") == [], "killed render runs stay 'running'"
