"""How a run ends: prices it cannot compute, dead letters that must stay visible, refused tokens
(issue 12, items 3, 4 and 7)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from quant_batch.cli import app
from quant_batch.config_files import parse_config
from quant_batch.embed.run import run_corpus
from quant_batch.errors import ConfigError
from quant_batch.pricing import load_prices
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest

from .conftest import api_calls, corpus_config, query


def test_default_price_table_ships_in_the_package():
    prices = load_prices()
    assert prices.embedding_cost("amazon.titan-embed-text-v2:0", 1_000_000) > 0
    assert prices.image_cost("amazon.nova-canvas-v1:0", 1024, 1024, "standard") > 0


def test_a_run_with_prices_costs_more_than_zero(corpus, tmp_path, client):
    s = run_corpus(corpus_config(corpus, tmp_path / "out"), client)
    assert s.status == "completed" and s.cost_usd > 0 and not s.warnings


def test_unpriced_model_warns_and_refuses_a_cap(corpus, tmp_path, client, emulator):
    table = tmp_path / "prices.yaml"
    table.write_text("embeddings: {}\nimages: {}\nchat: {}\n")
    s = run_corpus(corpus_config(corpus, tmp_path / "out", pricing=str(table)), client)
    assert s.status == "completed"
    assert any("no price for embeddings model 'amazon.titan-embed-text-v2:0'" in w for w in s.warnings)
    calls = api_calls(emulator)
    (corpus / "new.md").write_text("A new note about the harbour lantern festival in early spring.\n")
    with pytest.raises(ConfigError, match="spend cap .* cannot be enforced"):
        run_corpus(corpus_config(corpus, tmp_path / "out", pricing=str(table), max_cost=0.05), client)
    assert api_calls(emulator) == calls  # refused before anything was sent


def _poison_corpus(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"n{i}.txt").write_text(f"Note {i} about the lantern." + (" __POISON__" if i == 2 else ""))
    return docs


def test_dead_letters_keep_every_run_non_zero_until_fixed(tmp_path, client, api_env):
    docs = _poison_corpus(tmp_path)
    cfg = corpus_config(docs, tmp_path / "out")
    first = run_corpus(cfg, client)
    assert (first.status, first.exit_code) == ("errors", 1)
    second = run_corpus(cfg, client)  # the poison text is skipped, not hidden
    assert (second.status, second.exit_code) == ("dead_letters", 3)
    assert "replay" in second.reason and second.stats["chunks_skipped_dead"] == 1

    cfg_file = tmp_path / "corpus.yaml"
    cfg_file.write_text(cfg.model_dump_json())
    res = CliRunner().invoke(app, ["embed", str(cfg_file), "--no-prefect"])
    assert res.exit_code == 3, res.output

    (docs / "n2.txt").write_text("Note 2 about the lantern, fixed.")
    fixed = run_corpus(cfg, client)
    assert (fixed.status, fixed.exit_code) == ("completed", 0)


def test_blocked_render_row_stays_visible_on_the_next_run(tmp_path, client):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"id": "ok", "prompt": "a lighthouse", "width": 320, "height": 320, "seed": 1}\n'
        '{"id": "bad", "prompt": "a lighthouse __BLOCKED__", "width": 320, "height": 320, "seed": 2}\n'
    )
    cfg = parse_config(RenderConfig, {"manifest": str(manifest), "out": str(tmp_path / "r")}, source="test")
    assert render_manifest(cfg, client).status == "errors"
    again = render_manifest(cfg, client)
    assert (again.status, again.exit_code) == ("dead_letters", 3)


def test_refused_token_stops_at_the_first_call(corpus, tmp_path, api_env, monkeypatch):
    monkeypatch.setenv("QUANT_API_KEY", "wrong-token")
    cfg = corpus_config(corpus, tmp_path / "out", concurrency=2)
    cfg_file = tmp_path / "corpus.yaml"
    cfg_file.write_text(cfg.model_dump_json())
    res = CliRunner().invoke(app, ["embed", str(cfg_file), "--no-prefect"])
    assert res.exit_code == 2, res.output
    assert "refused the credentials" in res.output and "Traceback" not in res.output
    sent = sum(api_env.stats()["by_endpoint"]["embeddings"].values())
    assert 1 <= sent <= 2  # one call per worker at most, never the whole corpus
    runs = query(cfg.out, "SELECT status, api_calls FROM runs")
    assert runs == [("failed", sent)]
    assert query(cfg.out, "SELECT count(*) FROM errors") == [(0,)]  # not the records' fault


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("base_url", ["closed-port", "http://nonexistent.invalid"])
def test_unreachable_service_stops_the_run_quickly_and_keeps_work_pending(
    corpus, tmp_path, api_env, monkeypatch, base_url
):
    url = f"http://127.0.0.1:{_closed_port()}" if base_url == "closed-port" else base_url
    monkeypatch.setenv("QUANT_BASE_URL", url)
    cfg = corpus_config(corpus, tmp_path / "out")
    cfg_file = tmp_path / "corpus.yaml"
    cfg_file.write_text(cfg.model_dump_json())
    res = CliRunner().invoke(app, ["embed", str(cfg_file), "--no-prefect"])
    assert res.exit_code == 2, res.output
    assert url.split("//")[1].split(":")[0] in res.output and "Traceback" not in res.output
    assert query(cfg.out, "SELECT count(*) FROM errors") == [(0,)]  # an outage is not a dead letter
    assert query(cfg.out, "SELECT status FROM runs") == [("failed",)]
    monkeypatch.setenv("QUANT_BASE_URL", api_env.base_url)
    again = CliRunner().invoke(app, ["embed", str(cfg_file), "--no-prefect"])
    assert again.exit_code == 0, again.output  # everything that was not sent is sent now
