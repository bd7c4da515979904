"""The Prefect flows and the CLI on a real (temporary) Prefect server against the emulator."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from quant_batch.cli import app
from quant_batch.flows.embed_corpus import embed_corpus
from quant_batch.flows.render_images import render_images
from tests.conftest import TEST_TOKEN
from tests.pipeline.conftest import REPO, SAMPLE_CORPUS, api_calls, query

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _config(tmp_path: Path, out: Path) -> Path:
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(
        f"sources:\n  - path: '{SAMPLE_CORPUS}'\n  - table: '{REPO / 'data/corpus_table/faq.jsonl'}'\n"
        f"out: '{out}'\nchunking: {{max_chars: 800, overlap_chars: 100, min_chars: 200}}\nconcurrency: 4\n"
    )
    return cfg


def test_embed_flow_indexes_and_reruns_for_free(tmp_path, api_env):
    out = tmp_path / "index"
    summary = embed_corpus(str(_config(tmp_path, out)))
    assert summary["status"] == "completed", summary["reason"]
    n = query(out, "SELECT count(*), count(DISTINCT chunk_id) FROM chunks")[0]
    assert n[0] == n[1] == summary["stats"]["chunks_total"] > 0
    assert query(out, "SELECT count(*) FROM chunks WHERE source_path LIKE '%faq.jsonl'")[0][0] > 0
    calls = api_calls(api_env)
    assert calls == summary["api_calls"] > 0

    again = embed_corpus(str(_config(tmp_path, out)))
    assert again["api_calls"] == 0 and api_calls(api_env) == calls


def test_render_flow_writes_pngs_matching_the_catalog(tmp_path, api_env):
    out = tmp_path / "renders"
    summary = render_images(str(REPO / "data" / "prompts.jsonl"), out=str(out))
    assert summary["status"] == "completed", summary["reason"]
    rows = query(out, "SELECT path, sha256, width, height FROM images")
    assert len(rows) == summary["stats"]["images"] > 0
    import hashlib

    for path, sha, w, h in rows:
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert Image.open(io.BytesIO(data)).size == (w, h)
    assert (out / "index.html").read_text().count("<figure>") == len(rows)
    before = api_calls(api_env, "image-generation")
    again = render_images(str(REPO / "data" / "prompts.jsonl"), out=str(out))
    assert again["stats"]["skipped_unchanged"] == summary["stats"]["rendered"]
    assert api_calls(api_env, "image-generation") == before


def test_cli_embed_search_runs_and_keeps_the_token_secret(tmp_path, api_env):
    out = tmp_path / "index"
    runner = CliRunner()
    res = runner.invoke(app, ["embed", str(_config(tmp_path, out)), "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(out), "how do I renew a library card", "-k", "3"])
    assert res.exit_code == 0, res.output
    assert "score" in res.output
    res = runner.invoke(app, ["runs", str(out)])
    assert res.exit_code == 0, res.output
    assert query(out, "SELECT status FROM runs") == [("completed",)]
    # a failing run too: bad credentials
    api_env.set_faults()  # no faults, but a wrong token below
    import os

    os.environ["QUANT_API_KEY"] = "wrong-" + TEST_TOKEN
    try:
        shutil.rmtree(out / "state")  # force re-planning so calls are made
        shutil.rmtree(out / "parts")
        (out / "catalog.duckdb").unlink()
        res = runner.invoke(app, ["embed", str(_config(tmp_path, out)), "--out", str(out), "--no-prefect"])
        assert res.exit_code != 0
    finally:
        os.environ["QUANT_API_KEY"] = TEST_TOKEN
    assert TEST_TOKEN not in res.output
    for f in out.rglob("*"):
        if f.is_file():
            assert TEST_TOKEN.encode() not in f.read_bytes(), f


def test_cli_chat_streams_the_answer(api_env):
    res = CliRunner().invoke(app, ["chat", "Summarise the opening hours of the library"])
    assert res.exit_code == 0, res.output
    assert "finish: stop" in res.output
    assert len(res.output.strip()) > 20
    assert api_calls(api_env, "chat-stream") == 1
