"""`plan` predicts exactly what the next run does, and sends nothing."""

from __future__ import annotations

import numpy as np

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


def test_compact_map_finds_every_key_before_and_after_folding_into_the_sorted_arrays():
    import hashlib

    from quant_batch.compact import U64Map, hex_prefix

    keys = [hex_prefix(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(11)]
    seen = U64Map(merge_every=4)
    for i, k in enumerate(keys[:10]):
        assert k not in seen
        assert seen.setdefault(k, i) == i and seen.setdefault(k, 99) == i
        assert all(seen.get(old) == j for j, old in enumerate(keys[: i + 1]))
    assert len(seen) == 10 and keys[10] not in seen
    # ten keys, folded every four: only the last two are still Python ints
    assert len(seen._recent) == 2 and seen._keys.dtype == np.uint64 and len(seen._keys) == 8


def test_previous_documents_answer_like_the_file_they_come_from(tmp_path):
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from quant_batch.embed.previous import PreviousDocuments

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    path = tmp_path / "documents.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": ["a/1.md", "a/2.md", "b/1.md"],
                "content_hash": [h("one"), h("two"), None],
                "chunker": ["c1", "c1", "c2"],
                "status": ["ok", "incomplete", "ok"],
                "chunks": [3, 2, 1],
            }
        ),
        path,
    )
    prev = PreviousDocuments(path)
    one, two = prev.find("a/1.md"), prev.find("a/2.md")
    assert prev.find("c/new.md") is None and len(prev) == 3
    assert prev.unchanged(one, h("one"), "c1") and prev.chunks(one) == 3
    assert not prev.unchanged(one, h("one, edited"), "c1") and not prev.unchanged(one, h("one"), "c2")
    assert not prev.unchanged(two, h("two"), "c1"), "an incomplete document is embedded again"
    assert not prev.unchanged(prev.find("b/1.md"), h(""), "c2")
    prev.carry(two)
    prev.carry(one)
    assert prev.carried_ids().to_pylist() == ["a/1.md", "a/2.md"] and prev.carried_count == 2
    assert PreviousDocuments(tmp_path / "missing.parquet").carried_ids().to_pylist() == []
