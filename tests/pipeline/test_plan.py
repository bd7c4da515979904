"""`plan` predicts exactly what the next run does, and sends nothing."""

from __future__ import annotations

from quant_batch.embed.run import run_corpus
from quant_batch.query.estimate import plan_corpus_dry
from tests.pipeline.conftest import api_calls, corpus_config


def test_plan_matches_the_run_and_sends_nothing(corpus, tmp_path, client, emulator):
    cfg = corpus_config(corpus, tmp_path / "index", batch_size=25)
    fresh = plan_corpus_dry(cfg)
    assert api_calls(emulator) == 0
    assert not (tmp_path / "index").exists() or not any((tmp_path / "index").rglob("*.parquet"))
    first = run_corpus(cfg, client)
    assert fresh["chunks_new"] == first.stats["chunks_new"] == first.stats["embedded"]
    assert fresh["requests"] == first.api_calls == api_calls(emulator)
    assert fresh["estimated_cost_usd"] > 0

    (corpus / "recipes" / "soups.md").unlink()
    (corpus / "library" / "new-service.txt").write_text("Laptop loans start in June at every branch.")
    calls = api_calls(emulator)
    after_edit = plan_corpus_dry(cfg)
    assert api_calls(emulator) == calls
    second = run_corpus(cfg, client)
    for key in ("chunks_new", "chunks_unchanged", "chunks_removed", "chunks_total"):
        assert after_edit[key] == second.stats[key], key
    assert after_edit["requests"] == second.api_calls == 1
