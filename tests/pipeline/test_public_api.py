"""The public Python API (``import quant_batch``) and the targets users try first: tables and single documents."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quant_batch
from tests.pipeline.conftest import REPO, api_calls

SAMPLE = REPO / "quant_batch" / "data" / "sample"
FAQ = SAMPLE / "corpus_table" / "faq.jsonl"


def test_all_names_import_and_are_documented():
    assert len(set(quant_batch.__all__)) == len(quant_batch.__all__)
    for name in quant_batch.__all__:
        value = getattr(quant_batch, name)
        if name == "__version__":
            assert value == __import__("importlib.metadata").metadata.version("quant-batch")
            continue
        assert inspect.getdoc(value), f"quant_batch.{name} has no docstring"
        ns: dict = {}
        exec(f"from quant_batch import {name}", ns)  # noqa: S102 - the import users write
        assert ns[name] is value
    # the stage packages do not shadow the functions of the same name
    from quant_batch.embed.run import run_corpus  # noqa: F401
    from quant_batch.render import manifest  # noqa: F401

    assert inspect.isfunction(quant_batch.embed) and inspect.isfunction(quant_batch.render)
    assert inspect.isfunction(quant_batch.enrich)
    assert issubclass(quant_batch.RateLimited, quant_batch.TransientError)
    assert inspect.signature(quant_batch.search).parameters["k"].kind is inspect.Parameter.KEYWORD_ONLY


def test_import_is_light():
    code = "import sys, quant_batch; quant_batch.__version__; print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'duckdb', 'pyarrow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def _table(tmp_path: Path, suffix: str, id_col: str = "id", text_col: str = "text") -> Path:
    rows = [json.loads(line) for line in FAQ.read_text().splitlines() if line.strip()][:6]
    table = pa.table({id_col: [r["id"] for r in rows], text_col: [r["text"] for r in rows]})
    path = tmp_path / f"faq{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_embed_a_table_in_process_and_search_it(tmp_path, api_env, suffix):
    table = _table(tmp_path, suffix)
    summary = quant_batch.embed(table, out=tmp_path / "index", prefect=False)
    assert isinstance(summary, quant_batch.RunSummary)
    assert summary.status == "completed", summary.reason
    assert summary.stats["runner"] == "in-process"
    assert summary.stats["documents"] == 6 and api_calls(api_env) == 1
    hits = quant_batch.search(tmp_path / "index", "how many books can I borrow", k=3)
    assert all(isinstance(h, quant_batch.Hit) for h in hits)
    assert hits[0].doc_id == f"faq{suffix}#faq-002"
    # the saved summary says how it ran too
    saved = json.loads((tmp_path / "index" / "runs" / f"{summary.run_id}.json").read_text())
    assert saved["stats"]["runner"] == "in-process"


def test_table_with_other_columns(tmp_path, api_env):
    table = _table(tmp_path, ".parquet", id_col="qid", text_col="body")
    with pytest.raises(quant_batch.InputError, match=r"column 'id' not found \(columns: 'qid', 'body'\)"):
        quant_batch.embed(table, out=tmp_path / "index", prefect=False)
    assert api_calls(api_env) == 0
    summary = quant_batch.embed(table, out=tmp_path / "index", prefect=False, id_column="qid", text_column="body")
    assert summary.status == "completed" and summary.stats["documents"] == 6


def test_single_document_file(tmp_path, api_env):
    doc = SAMPLE / "corpus" / "library" / "opening-hours.md"
    summary = quant_batch.embed(doc, out=tmp_path / "index", prefect=False, concurrency=2)
    assert summary.status == "completed" and summary.stats["documents"] == 1
    hits = quant_batch.search(tmp_path / "index", "sunday", k=1)
    assert hits[0].doc_id == "opening-hours.md"


def test_plan_routes_tables_by_content(tmp_path):
    for table in (FAQ, SAMPLE / "corpus_table" / "faq.csv", SAMPLE / "corpus_table" / "faq.parquet"):
        result = quant_batch.plan(table, out=tmp_path / "index")
        assert result["kind"] == "corpus", table
        assert result["documents"] > 0 and result["chunks_new"] > 0
    for manifest in (SAMPLE / "prompts.jsonl", SAMPLE / "prompts.csv"):
        result = quant_batch.plan(manifest, out=tmp_path / "renders")
        assert result["kind"] == "render" and result["rows_new"] > 0, manifest
    # a manifest that uses the prompt alias "text" together with an image field stays a manifest
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"id": "a", "text": "a red fox", "width": 512, "height": 512}) + "\n")
    assert quant_batch.plan(flat, out=tmp_path / "r")["kind"] == "render"


def test_overrides_reach_the_config(tmp_path, api_env):
    table = _table(tmp_path, ".jsonl")
    summary = quant_batch.embed(table, out=tmp_path / "index", prefect=False, dimensions=256, batch_size=2)
    assert summary.api_calls == 3  # 6 rows in batches of 2
    with pytest.raises(quant_batch.ConfigError, match="dimensions"):
        quant_batch.embed(table, out=tmp_path / "index", prefect=False, dimensions=7)


def test_render_in_process(tmp_path, api_env):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "fox", "prompt": "a red fox", "width": 320, "height": 320}) + "\n")
    summary = quant_batch.render(manifest, out=tmp_path / "renders", prefect=False)
    assert summary.status == "completed" and summary.stats["runner"] == "in-process"
    assert (tmp_path / "renders" / "fox_1.png").exists() or list((tmp_path / "renders").glob("fox_*.png"))


def test_env_is_not_changed(tmp_path, api_env):
    before = dict(os.environ)
    quant_batch.embed(_table(tmp_path, ".csv"), out=tmp_path / "index", prefect=False)
    assert dict(os.environ) == before


def test_a_run_records_its_target_and_the_web_page_gives_the_exact_replay_command(tmp_path, api_env, monkeypatch):
    from quant_batch.ui.routes import replay_command

    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "my docs"
    docs.mkdir()
    (docs / "a.txt").write_text("A note about the harbour lantern. __POISON__")
    (docs / "b.txt").write_text("A note about the quarry river.")
    summary = quant_batch.embed("my docs", out="index", prefect=False)
    assert summary.status == "errors" and summary.target == "my docs"
    saved = json.loads((tmp_path / "index" / "runs" / f"{summary.run_id}.json").read_text())
    assert saved["target"] == "my docs"
    err = {"stage": "embed", "run_id": summary.run_id}
    assert (
        replay_command("index", err, saved["target"])
        == f"quant-batch replay 'my docs' --out index --run {summary.run_id}"
    )
    # an absolute target shows only its name on the page: no machine paths
    assert str(tmp_path) not in replay_command("index", err, str(docs))
