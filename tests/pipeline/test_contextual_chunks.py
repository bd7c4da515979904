"""Contextual chunks: a per-document context from the chat API prepended to each chunk before embedding."""

from __future__ import annotations

from pathlib import Path

from quant_batch.embed.run import run_corpus
from tests.pipeline.conftest import api_calls, corpus_config, query


def _chunks(out: Path) -> dict[str, tuple]:
    """chunk_id → (doc_id, live text, context, key, embedded text, vector).

    Parts store a key's vector, not its text: the embedded text is the live chunk's context and text.
    """
    ((table,),) = query(out, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'vectors_%'")
    rows = query(
        out,
        "SELECT l.chunk_id, l.doc_id, l.text, l.context, l.key, "
        "coalesce(l.context || chr(10) || chr(10), '') || l.text, v.vector FROM live_chunks l "
        f"JOIN {table} v USING (key)",
    )
    return {r[0]: r[1:] for r in rows}


def test_enabling_contextual_chunks_changes_exactly_the_affected_chunks(corpus, tmp_path, client, emulator):
    out = tmp_path / "index"
    assert run_corpus(corpus_config(corpus, out), client).status == "completed"
    plain = _chunks(out)
    docs = query(out, "SELECT count(*) FROM documents")[0][0]

    emulator.reset()
    ctx_cfg = corpus_config(corpus, out, contextual_chunks={"enabled": True, "max_tokens": 80})
    on = run_corpus(ctx_cfg, client)
    assert on.status == "completed", on.reason
    assert api_calls(emulator, "chat") == docs == on.stats["context_calls"]  # one call per changed document
    contextual = _chunks(out)
    assert contextual.keys() == plain.keys()
    assert emulator.stats()["texts_embedded"] == len(plain)
    for cid, (_doc, text, context, key, embedded, vector) in contextual.items():
        assert text == plain[cid][1] and plain[cid][2] is None  # the chunk's own text is unchanged
        assert context and embedded == f"{context}\n\n{text}" and key != plain[cid][3]
        assert vector != plain[cid][5]

    emulator.reset()
    assert run_corpus(ctx_cfg, client).api_calls == 0 and emulator.stats()["total_requests"] == 0

    # an edited document: one context call, and only its chunks whose embedded text changed re-embed
    doc_path = next(p for p in sorted(corpus.rglob("*.md")))
    doc_path.write_text("Updated notice: the reading room closes early on Fridays.\n\n" + doc_path.read_text())
    emulator.reset()
    edited = run_corpus(ctx_cfg, client)
    after = _chunks(out)
    assert api_calls(emulator, "chat") == 1
    edited_doc = {v[0] for k, v in after.items() if k not in contextual}
    assert len(edited_doc) == 1
    new_keys = {v[3] for v in after.values()} - {v[3] for v in contextual.values()}
    assert new_keys and emulator.stats()["texts_embedded"] == len(new_keys) == edited.stats["embedded"]
    for cid, row in after.items():
        if row[0] not in edited_doc:
            assert row == contextual[cid]  # other documents: same text, context, key and vector

    # turning it off finds the plain vectors in the ledger: only the edited document embeds again
    emulator.reset()
    off = run_corpus(corpus_config(corpus, out), client)
    assert api_calls(emulator, "chat") == 0
    assert (
        off.stats["embedded"]
        == emulator.stats()["texts_embedded"]
        <= sum(1 for v in after.values() if v[0] in edited_doc)
    )
    assert query(out, "SELECT count(*) FROM live_chunks WHERE context IS NOT NULL")[0][0] == 0
