"""The corpus pipeline end to end: real emulator over loopback, real Parquet, real DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quant_batch.corpus.chunking import chunk_text
from quant_batch.corpus.readers import iter_folder
from quant_batch.embed.run import CorpusRun, run_corpus
from quant_batch.errors import LockError
from quant_batch.query.search import search
from quant_batch.store.catalog import Catalog
from quant_batch.store.layout import Layout
from tests.pipeline.conftest import REPO, api_calls, corpus_config, query

INSTRUMENTED_CLI = REPO / "tests" / "reliability" / "_instrumented_cli.py"


def _expected_chunks(corpus: Path, cfg) -> int:
    return sum(len(chunk_text(d.text, cfg.chunking)) for d in iter_folder(corpus) if hasattr(d, "text"))


def test_sample_corpus_end_to_end(corpus, tmp_path, client, emulator):
    out = tmp_path / "index"
    cfg = corpus_config(corpus, out)
    summary = run_corpus(cfg, client)

    expected = _expected_chunks(corpus, cfg)
    assert summary.status == "completed", summary.reason
    assert summary.stats["chunks_total"] == expected
    assert query(out, "SELECT count(*) FROM chunks")[0][0] == expected
    assert query(out, "SELECT count(DISTINCT chunk_id) FROM chunks")[0][0] == expected
    # vectors are FLOAT[1024] in DuckDB and fixed_size_list<float32>[1024] in Parquet
    assert query(out, "SELECT typeof(vector) FROM chunks LIMIT 1")[0][0] == "FLOAT[1024]"
    part = next((out / "parts" / "vectors").rglob("*.parquet"))
    schema = pq.read_schema(part)
    assert schema.field("vector").type == pa.list_(pa.float32(), 1024)
    assert schema.metadata[b"model"] == b"amazon.titan-embed-text-v2:0"
    # one request per 100 texts: the emulator saw exactly ceil(new / 100) embeddings calls
    assert api_calls(emulator) == -(-expected // 100) == summary.api_calls
    docs = query(out, "SELECT count(*), count(*) FILTER (status = 'ok') FROM documents")[0]
    assert docs[0] == docs[1] == summary.stats["documents"]
    runs = query(out, "SELECT status, api_calls FROM runs WHERE run_id = ?", [summary.run_id])
    assert runs == [("completed", summary.api_calls)]

    hits = search(out, "what time does the library open on sunday", client, k=3)
    assert hits[0].source_path == "corpus/library/opening-hours.md"
    assert hits[0].score >= hits[-1].score


def test_unchanged_rerun_sends_nothing(corpus, tmp_path, client, emulator):
    cfg = corpus_config(corpus, tmp_path / "index")
    first = run_corpus(cfg, client)
    before = api_calls(emulator)
    second = run_corpus(cfg, client)
    assert api_calls(emulator) == before
    assert second.api_calls == 0
    assert second.stats["chunks_unchanged"] == first.stats["chunks_total"]
    assert second.stats["chunks_new"] == second.stats["chunks_removed"] == 0
    assert query(cfg.out, "SELECT count(*) FROM chunks")[0][0] == first.stats["chunks_total"]


def test_edit_delete_add_moves_only_their_chunks(corpus, tmp_path, client, emulator):
    cfg = corpus_config(corpus, tmp_path / "index")
    run_corpus(cfg, client)
    total_before = query(cfg.out, "SELECT count(*) FROM chunks")[0][0]
    edited = corpus / "library" / "history.md"
    deleted = corpus / "recipes" / "soups.md"
    old_text = edited.read_text()
    new_text = old_text.replace("\n\n", "\n\nThe reading room was repainted in spring.\n\n", 1)
    edited.write_text(new_text)
    old_edit = {c.text for c in chunk_text(old_text, cfg.chunking)}
    new_edit = [c.text for c in chunk_text(new_text, cfg.chunking)]
    deleted_chunks = len(chunk_text(deleted.read_text(), cfg.chunking))
    deleted.unlink()
    added_text = "Bicycle parking: the Northgate branch now has twelve covered racks by the east door.\n"
    (corpus / "branches" / "parking.txt").write_text(added_text)

    before = api_calls(emulator)
    s = run_corpus(cfg, client)
    changed = sum(1 for t in new_edit if t not in old_edit)
    assert s.stats["chunks_new"] == changed + 1
    assert s.stats["embedded"] == changed + 1
    assert s.stats["documents_unchanged"] == s.stats["documents"] - 2  # edited + added were read afresh
    assert api_calls(emulator) - before == 1
    gone_from_edit = len(old_edit - set(new_edit))
    assert s.stats["chunks_removed"] == deleted_chunks + gone_from_edit
    after = query(cfg.out, "SELECT count(*) FROM chunks")[0][0]
    assert after == total_before - deleted_chunks - len(old_edit) + len(new_edit) + 1
    assert query(cfg.out, "SELECT count(*) FROM chunks WHERE doc_id = 'corpus/recipes/soups.md'")[0][0] == 0
    assert query(cfg.out, "SELECT count(*) FROM chunks WHERE doc_id = 'corpus/branches/parking.txt'")[0][0] == 1


def test_crash_between_part_write_and_ledger_mark(corpus, tmp_path, emulator, api_env):
    """A run killed right after writing its 2nd part: the rerun keeps one copy of every chunk."""
    out = tmp_path / "index"
    cfg_path = tmp_path / "corpus.yaml"
    cfg_path.write_text(
        f"sources: [{{path: '{corpus}'}}]\nout: '{out}'\nbatch_size: 10\nconcurrency: 1\n"
        "chunking: {max_chars: 600, overlap_chars: 80, min_chars: 150}\n"
    )
    # the real CLI under a test-side instrument that exits hard after the 2nd part is renamed
    env = {**os.environ, "RELIABILITY_CRASH_AFTER_PARTS": "2"}
    cmd = [sys.executable, str(INSTRUMENTED_CLI), "embed", str(cfg_path), "--no-prefect"]
    crashed = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    parts = list((out / "parts" / "vectors").rglob("*.parquet"))
    assert len(parts) == 2
    calls_before = api_calls(emulator)

    env.pop("RELIABILITY_CRASH_AFTER_PARTS")
    rerun = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    total = query(out, "SELECT count(*), count(DISTINCT chunk_id), count(DISTINCT key) FROM chunks")[0]
    expected = _expected_chunks(corpus, corpus_config(corpus, out))
    assert total[0] == total[1] == expected
    # the two batches already on disk were loaded, not re-sent
    batches = -(-total[2] // 10)
    assert api_calls(emulator) - calls_before == batches - 2
    assert not list(out.rglob(".tmp-*"))


def test_bad_inputs_become_error_rows(corpus, tmp_path, client):
    bad = corpus / "bad"
    bad.mkdir()
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 200)
    (bad / "empty.md").write_text("")
    (bad / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    (bad / "random.txt").write_bytes(bytes(range(256)) * 20)
    cfg = corpus_config(corpus, tmp_path / "index")
    s = run_corpus(cfg, client)
    assert s.status == "errors"
    errs = query(cfg.out, "SELECT source_path, stage FROM errors WHERE run_id = ?", [s.run_id])
    failed = {p for p, stage in errs if stage == "read"}
    assert {"corpus/bad/binary.txt", "corpus/bad/empty.md", "corpus/bad/corrupt.pdf", "corpus/bad/random.txt"} <= failed
    good = query(cfg.out, "SELECT count(DISTINCT doc_id) FROM chunks")[0][0]
    assert good == s.stats["documents"] - s.stats["documents_failed"]


def test_poison_text_is_isolated_by_bisection(tmp_path, client, emulator):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        body = f"Note {i} about item {i}." + (" __POISON__" if i in (7, 31) else "")
        (docs / f"n{i:02d}.txt").write_text(body)
    cfg = corpus_config(docs, tmp_path / "index")
    s = run_corpus(cfg, client)
    assert s.stats["embedded"] == 38
    errs = query(cfg.out, "SELECT doc_id, status, message FROM errors WHERE stage = 'embed' ORDER BY doc_id")
    assert [e[0] for e in errs] == ["docs/n07.txt", "docs/n31.txt"]
    assert all(e[1] == 400 and e[2] for e in errs)
    # bisection: far fewer calls than one per text
    assert api_calls(emulator) < 20
    # a rerun does not resend known-bad texts; --replay does, and they fail again
    before = api_calls(emulator)
    assert run_corpus(cfg, client).stats["chunks_skipped_dead"] == 2
    assert api_calls(emulator) == before
    replayed = run_corpus(cfg, client, replay=True)
    assert replayed.stats["chunks_new"] == 2 and replayed.stats["failed_chunks"] == 2


def test_quality_gate_rejects_bad_vectors(tmp_path, client):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("An ordinary sentence about gardens.")
    (docs / "nan.txt").write_text("This one comes back broken __NAN__")
    cfg = corpus_config(docs, tmp_path / "index")
    s = run_corpus(cfg, client)
    assert s.stats["embedded"] == 1
    rows = query(cfg.out, "SELECT doc_id, stage, message FROM errors")
    assert rows == [("docs/nan.txt", "quality", "vector has NaN or infinite values")]
    assert query(cfg.out, "SELECT doc_id FROM chunks") == [("docs/ok.txt",)]


def test_catalog_rebuild_from_parts(corpus, tmp_path, client):
    cfg = corpus_config(corpus, tmp_path / "index")
    run_corpus(cfg, client)
    before = query(cfg.out, "SELECT count(*), sum(position) FROM chunks")
    (cfg.out / "catalog.duckdb").unlink()
    with Catalog(Layout(cfg.out)) as cat:
        cat.sync()
        cat.sync()  # twice: loading is idempotent
    assert query(cfg.out, "SELECT count(*), sum(position) FROM chunks") == before


def test_second_run_on_same_output_is_refused(corpus, tmp_path, api_env):
    cfg = corpus_config(corpus, tmp_path / "index")
    with CorpusRun(cfg):
        with pytest.raises(LockError, match="in use by another run"):
            with CorpusRun(cfg):
                pass


def test_spend_cap_stops_and_resumes(tmp_path, client, emulator):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i:02d}.txt").write_text(" ".join(f"doc{i}word{j}" for j in range(300)))
    prices = tmp_path / "prices.yaml"
    prices.write_text("embeddings: {amazon.titan-embed-text-v2:0: 1000.0}\n")  # $0.001 per token
    cfg = corpus_config(docs, tmp_path / "index", batch_size=3, concurrency=1, pricing=str(prices), max_cost=3.0)
    s = run_corpus(cfg, client)
    assert s.status == "partial" and "spend cap" in s.reason, s.to_dict()
    assert s.cost_usd <= 3.0
    assert s.stats["batches_skipped"] > 0
    # stopped within one batch of the cap: the spend left is less than one more batch would cost
    per_batch = s.cost_usd / (s.stats["batches"] - s.stats["batches_skipped"])
    assert 3.0 - s.cost_usd < 2 * per_batch
    done_first = s.stats["embedded"]
    rest = run_corpus(corpus_config(docs, cfg.out, batch_size=3, concurrency=1, pricing=str(prices)), client)
    assert rest.status == "completed"
    assert rest.stats["embedded"] + done_first == s.stats["chunks_total"]
    n = query(cfg.out, "SELECT count(*), count(DISTINCT key) FROM chunks")[0]
    assert n[0] == n[1] == s.stats["chunks_total"]


def test_replay_command_resends_exactly_the_dead_letters(tmp_path, client, emulator, api_env):
    from typer.testing import CliRunner

    from quant_batch.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"n{i:02d}.txt").write_text(f"Note {i}." + (" __POISON__" if i == 5 else ""))
    cfg = corpus_config(docs, tmp_path / "index")
    cfg_file = tmp_path / "corpus.yaml"
    cfg_file.write_text(cfg.model_dump_json())  # JSON is YAML: the same settings for the CLI
    first = run_corpus(cfg, client)
    assert first.stats["failed_chunks"] == 1
    runner = CliRunner()
    base = ["replay", str(cfg_file), "--no-prefect"]

    before = api_calls(emulator)
    runs_before = sorted(p.name for p in (cfg.out / "runs").iterdir())
    res = runner.invoke(app, [*base, "--run", "embed-some-other-run"])
    assert res.exit_code == 2, res.output  # an unknown run id is a mistake, not an empty success
    assert "embed-some-other-run" in res.output and first.run_id in res.output  # names a real one
    assert api_calls(emulator) == before
    assert sorted(p.name for p in (cfg.out / "runs").iterdir()) == runs_before  # no run recorded

    res = runner.invoke(app, [*base, "--run", first.run_id])
    assert res.exit_code == 1  # the poison text fails again, and says so
    assert api_calls(emulator) == before + 1
    rows = query(cfg.out, "SELECT count(*) FROM errors WHERE doc_id = 'docs/n05.txt' AND stage = 'embed'")
    assert rows[0][0] == 2
    assert query(cfg.out, "SELECT count(*) FROM chunks")[0][0] == 11


def test_replay_never_starts_a_fresh_run(tmp_path, api_env, monkeypatch):
    from typer.testing import CliRunner

    from quant_batch.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Some text worth paying for.")
    monkeypatch.chdir(tmp_path)  # the default output folder, data/index, is relative
    runner = CliRunner()
    for argv in (
        ["replay", str(docs)],
        ["replay", str(docs), "--out", str(tmp_path / "empty")],
        ["replay", str(docs), "--run", "embed-20240101T000000-abcdef"],
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        res = runner.invoke(app, [*argv, "--no-prefect"])
        assert res.exit_code == 2, res.output
        assert "holds no embed output" in " ".join(res.output.split())
    assert api_calls(api_env) == 0
    assert not (tmp_path / "data").exists() and list((tmp_path / "empty").iterdir()) == []


def _docs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text(f"Contents of {name}, long enough to be a chunk of its own.")
    return folder


@pytest.mark.parametrize(
    "names, include, expected",
    [
        ([], None, "matched 0 documents; the folder holds no files"),
        (["a.xyz", "b.xyz", "c.bin"], None, "matched 0 documents; skipped 3 files: .xyz 2, .bin 1 (unsupported)"),
        (
            ["a.md", "b.md", "c.bin"],
            ["*.rst"],
            "matched 0 documents; skipped 3 files: .bin 1 (unsupported); .md 2 (not matched by include/exclude)",
        ),
    ],
    ids=["empty", "unsupported", "include-matches-nothing"],
)
def test_zero_matched_documents_is_exit_2_and_records_no_run(tmp_path, api_env, names, include, expected):
    from typer.testing import CliRunner

    from quant_batch.cli import app

    docs = _docs(tmp_path / "docs", names)
    out = tmp_path / "index"
    source = {"path": str(docs), **({"include": include} if include else {})}
    cfg_file = tmp_path / "corpus.yaml"
    cfg_file.write_text(corpus_config(docs, out, sources=[source]).model_dump_json())
    res = CliRunner().invoke(app, ["embed", str(cfg_file), "--no-prefect"])

    assert res.exit_code == 2, res.output
    message = " ".join(res.output.split())
    assert str(docs) in message and expected in message
    assert api_calls(api_env) == 0 and not out.exists()  # no run record, no catalog


def test_a_run_says_which_files_it_skipped(tmp_path, client, emulator):
    docs = _docs(tmp_path / "docs", ["a.md", "b.txt", "notes.xyz", "data.csv"])
    summary = run_corpus(corpus_config(docs, tmp_path / "index"), client)
    assert summary.status == "completed" and summary.stats["documents"] == 2
    assert summary.stats["files_skipped"] == ".csv 1, .xyz 1 (unsupported)"
    assert ("files skipped", ".csv 1, .xyz 1 (unsupported)") in summary.table()


def test_a_catalog_that_held_copies_becomes_views_over_the_files(corpus, tmp_path, client, emulator):
    """Catalogs written before the catalog stopped copying vectors and chunks migrate on the next run."""
    import duckdb

    cfg = corpus_config(corpus, tmp_path / "index")
    run_corpus(cfg, client)
    con = duckdb.connect(str(cfg.out / "catalog.duckdb"))
    try:
        (vectors,) = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'vectors_%'"
        ).fetchone()
        for name in ("live_chunks", "documents", vectors):  # what older releases stored
            con.execute(f"CREATE TABLE {name}_copy AS SELECT * FROM {name}")
            con.execute(f"DROP VIEW {name}")
            con.execute(f"ALTER TABLE {name}_copy RENAME TO {name}")
    finally:
        con.close()
    calls = api_calls(emulator)
    assert run_corpus(cfg, client).status == "completed" and api_calls(emulator) == calls
    kinds = dict(query(cfg.out, "SELECT table_name, table_type FROM information_schema.tables"))
    assert kinds["live_chunks"] == kinds["documents"] == kinds[vectors] == "VIEW"
    assert query(cfg.out, "SELECT count(*) FROM chunks")[0][0] > 0
