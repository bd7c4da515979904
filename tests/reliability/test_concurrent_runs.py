"""Two runs, or a run and a reader, on one output folder at the same time.

The second run fails fast with "in use by another run" (exit 2) or, when asked to, waits; a
command that reads the catalog while a run writes it gets a clear "in use" message (or waits),
never a DuckDB traceback; and a run that starts while a reader holds the catalog waits for it.
Afterwards the ledger and DuckDB hold exactly what a clean run holds.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from tests.reliability.conftest import (
    CLI,
    REPO,
    assert_no_duplicate_vectors,
    cli_env,
    fast_client,
    part_rows,
    query,
    table_config,
    vector_snapshot,
    write_prompt_manifest,
    write_text_table,
)

N_TEXTS = 300


@pytest.fixture
def setup(tmp_path, faulty):
    """Inputs, a config file, the expected tables of a clean run, and a slowed-down emulator."""
    table = write_text_table(tmp_path / "src" / "texts.jsonl", N_TEXTS)
    data = table_config(table, tmp_path / "index", batch_size=10, concurrency=2)
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(yaml.safe_dump(data))
    clean = tmp_path / "clean"
    with fast_client(faulty) as c:
        run_corpus(parse_config(CorpusConfig, {**data, "out": str(clean)}, source="test"), c)
    # slow until the test has overlapped what it wants, then _speed_up: a request's latency is
    # fixed when it arrives, so the first run is still going whatever the machine's load
    faulty.set_faults(latency={"embeddings": 0.5})
    return cfg, data, tmp_path / "index", vector_snapshot(clean), cli_env(faulty)


@pytest.fixture
def speed_up_later(faulty):
    """Schedule _speed_up in a few seconds; never lets the timer outlive the test."""
    timers: list[threading.Timer] = []

    def schedule(delay: float) -> None:
        timers.append(threading.Timer(delay, _speed_up, [faulty]))
        timers[-1].start()

    yield schedule
    for t in timers:
        t.cancel()
        t.join()


_STARTED: list[subprocess.Popen] = []


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as sink:  # the child keeps its own handle
        proc = subprocess.Popen([*CLI, *args], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_orphans():
    """A failed test must not leave its first run writing into the next test's emulator."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _wait_for_lock_holder(out: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Until ``proc`` holds the output lock (it writes its pid into ``.lock``) and has planned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = (out / ".lock").read_text() if (out / ".lock").exists() else ""
        if holder == f"pid {proc.pid}" and list((out / "state").glob("plan-*.parquet")):
            return
        assert proc.poll() is None, "the first run ended before it could be overlapped"
        time.sleep(0.01)
    raise AssertionError("the first run never took the lock")


def _speed_up(emulator) -> None:
    emulator.set_faults()


def _assert_consistent(out: Path, expected: dict) -> None:
    assert vector_snapshot(out) == expected
    assert_no_duplicate_vectors(out)
    assert part_rows(out) == (N_TEXTS, N_TEXTS)
    assert query(out, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]


def test_second_run_fails_fast_then_its_rerun_has_nothing_left(setup, tmp_path, faulty):
    cfg, _, out, expected, env = setup
    first = _start(["embed", str(cfg), "--no-prefect"], env, tmp_path / "first.log")
    _wait_for_lock_holder(out, first)
    started = time.monotonic()
    second = subprocess.run(
        [*CLI, "embed", str(cfg), "--no-prefect"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    refused_in = time.monotonic() - started
    assert second.returncode == 2, second.stdout + second.stderr
    message = " ".join(second.stderr.split())
    assert "in use by another run" in message and f"pid {first.pid}" in message, message
    assert first.poll() is None, "the refusal should come while the first run is still going"
    assert refused_in < 10
    _speed_up(faulty)
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-2000:]

    calls = faulty.stats()["total_requests"]
    rerun = subprocess.run(
        [*CLI, "embed", str(cfg), "--no-prefect"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert faulty.stats()["total_requests"] == calls, "the rerun resent chunks the first run had done"
    _assert_consistent(out, expected)


def test_render_into_a_folder_an_embed_run_holds_is_refused(setup, tmp_path, faulty):
    cfg, _, out, expected, env = setup
    manifest = write_prompt_manifest(tmp_path / "prompts.jsonl", 2)
    first = _start(["embed", str(cfg), "--no-prefect"], env, tmp_path / "first.log")
    _wait_for_lock_holder(out, first)
    render = subprocess.run(
        [*CLI, "render", str(manifest), "--out", str(out), "--no-prefect"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert render.returncode == 2 and "in use by another run" in " ".join(render.stderr.split()), render.stderr
    _speed_up(faulty)
    assert first.wait(timeout=120) == 0
    _assert_consistent(out, expected)


def test_second_run_with_lock_wait_waits_then_finds_nothing_to_do(setup, tmp_path, faulty, speed_up_later):
    cfg, data, out, expected, env = setup
    first = _start(["embed", str(cfg), "--no-prefect"], env, tmp_path / "first.log")
    _wait_for_lock_holder(out, first)
    speed_up_later(1.0)  # by then this run is waiting on the lock
    with fast_client(faulty) as c:
        summary = run_corpus(parse_config(CorpusConfig, data, source="test"), c, lock_wait=120)
    assert first.wait(timeout=60) == 0
    # it planned only once the first run had loaded everything: it waited rather than overlapped
    assert summary.status == "completed" and summary.api_calls == 0, summary.to_dict()
    assert summary.stats["chunks_unchanged"] == N_TEXTS
    _assert_consistent(out, expected)


@pytest.mark.parametrize("command", ["runs", "search"])
def test_reading_the_catalog_during_a_run_says_so_clearly(command, setup, tmp_path, faulty, speed_up_later):
    cfg, _, out, expected, env = setup
    first = _start(["embed", str(cfg), "--no-prefect"], env, tmp_path / "first.log")
    _wait_for_lock_holder(out, first)
    args = [command, str(out)] + (["harbour"] if command == "search" else [])
    reader = subprocess.run([*CLI, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
    text = " ".join((reader.stdout + reader.stderr).split())
    assert "Traceback" not in text and "IOException" not in text, text[-1500:]
    if command == "runs":  # reads the run summaries, not the database: it shows the run in progress
        assert reader.returncode == 0 and "running" in text, text[-1500:]
    else:  # search reads the published files, never the writer's catalog: no "in use" refusal
        assert reader.returncode in (0, 2), text[-1500:]
        if reader.returncode == 2:  # the first run has not published an index yet
            assert "no search index here yet" in text and "in use" not in text, text[-1500:]
    _speed_up(faulty)
    assert first.wait(timeout=120) == 0


def test_a_run_waits_for_a_reader_that_holds_the_catalog(setup, tmp_path, faulty):
    """`search` keeps the catalog open across an API call; a run starting then must not crash."""
    cfg, data, out, expected, env = setup
    faulty.set_faults()
    with fast_client(faulty) as c:
        run_corpus(parse_config(CorpusConfig, data, source="test"), c)
    hold = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(1.5)"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", hold, str(out / "catalog.duckdb")], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "open"
    with fast_client(faulty) as c:
        summary = run_corpus(parse_config(CorpusConfig, data, source="test"), c)
    reader.wait(timeout=30)
    reader.stdout.close()
    assert summary.status == "completed" and summary.api_calls == 0
    _assert_consistent(out, expected)
