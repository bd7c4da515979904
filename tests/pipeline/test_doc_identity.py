"""A document's identity is unique across the sources of a config (issue 12, item 1)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quant_batch.embed.run import run_corpus
from quant_batch.errors import ConfigError
from quant_batch.query.search import search
from quant_batch.store.layout import Layout

from .conftest import api_calls, corpus_config, query

ALPHA = "Alpha opening hours: the observatory opens at nine on Saturdays for telescope viewing.\n"
ALPHA_EDITED = "Alpha moved: the observatory now opens at noon on Sundays for solar viewing only.\n"
BETA = "Beta borrowing rules: members may borrow twelve books for three weeks each.\n"


def two_readmes(tmp_path):
    (tmp_path / "dupA").mkdir()
    (tmp_path / "dupB").mkdir()
    (tmp_path / "dupA" / "README.md").write_text(ALPHA)
    (tmp_path / "dupB" / "README.md").write_text(BETA)
    return corpus_config(
        tmp_path / "dupA",
        tmp_path / "out",
        sources=[{"path": str(tmp_path / "dupA")}, {"path": str(tmp_path / "dupB")}],
    )


def test_same_file_name_in_two_sources_stays_two_documents(tmp_path, client, emulator):
    cfg = two_readmes(tmp_path)
    assert run_corpus(cfg, client).status == "completed"
    (tmp_path / "dupA" / "README.md").write_text(ALPHA_EDITED)
    assert run_corpus(cfg, client).status == "completed"

    live = query(cfg.out, "SELECT doc_id, source_path, text FROM live_chunks ORDER BY doc_id")
    assert [(d, s) for d, s, _ in live] == [("dupA/README.md", "dupA/README.md"), ("dupB/README.md", "dupB/README.md")]
    texts = [h.text for h in search(cfg.out, "when does the observatory open", client, k=5)]
    assert ALPHA_EDITED.strip() in texts and ALPHA.strip() not in texts
    assert texts.count(BETA.strip()) == 1


def test_index_with_old_unqualified_ids_migrates_without_embedding(tmp_path, client, emulator):
    cfg = two_readmes(tmp_path)
    (tmp_path / "dupB" / "README.md").unlink()
    cfg = corpus_config(tmp_path / "dupA", tmp_path / "out")
    assert run_corpus(cfg, client).status == "completed"
    # rewrite the published state as releases before source-qualified ids wrote it
    lay = Layout(cfg.out)
    gen = lay.active_generation()["generation"]
    for path in (lay.live(gen), lay.documents(gen)):
        t = pq.read_table(path)
        for col in ("doc_id", "source_path"):
            old = [v.removeprefix("dupA/") for v in t.column(col).to_pylist()]
            t = t.set_column(t.schema.get_field_index(col), col, pa.array(old, pa.string()))
        pq.write_table(t, path)
    emulator.reset()

    again = run_corpus(cfg, client)
    assert again.status == "completed"
    assert api_calls(emulator) == 0  # vectors are keyed by content: new ids cost nothing
    assert again.stats["chunks_unchanged"] == again.stats["chunks_total"] > 0
    assert query(cfg.out, "SELECT DISTINCT doc_id FROM chunks") == [("dupA/README.md",)]


@pytest.mark.parametrize("inner", ["sub", "."])
def test_overlapping_folder_sources_are_refused(tmp_path, inner):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside source folder"):
        corpus_config(
            tmp_path / "docs",
            tmp_path / "out",
            sources=[{"path": str(tmp_path / "docs")}, {"path": str(tmp_path / "docs" / inner), "name": "x"}],
        )


def test_two_sources_with_one_label_need_a_name(tmp_path):
    (tmp_path / "a" / "docs").mkdir(parents=True)
    (tmp_path / "b" / "docs").mkdir(parents=True)
    sources = [{"path": str(tmp_path / "a" / "docs")}, {"path": str(tmp_path / "b" / "docs")}]
    with pytest.raises(ConfigError, match="distinct `name:`"):
        corpus_config(tmp_path, tmp_path / "out", sources=sources)
    sources[1]["name"] = "docs-b"
    cfg = corpus_config(tmp_path, tmp_path / "out", sources=sources)
    assert [s.label for s in cfg.sources] == ["docs", "docs-b"]
