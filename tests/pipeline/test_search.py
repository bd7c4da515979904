"""Search ranks the same whether DuckDB or the memory-mapped matrix does it."""

from __future__ import annotations

import pytest

from quant_batch.embed.run import run_corpus
from quant_batch.query.search import search
from tests.pipeline.conftest import corpus_config


@pytest.mark.parametrize("query", ["when is the library open on sunday", "how to fix a flat bicycle tyre"])
def test_matrix_search_equals_duckdb_search(corpus, tmp_path, client, query):
    cfg = corpus_config(corpus, tmp_path / "index")
    run_corpus(cfg, client)
    by_sql = search(cfg.out, query, client, k=8, matrix_min_rows=10**9)
    by_matrix = search(cfg.out, query, client, k=8, matrix_min_rows=1)
    assert [h.chunk_id for h in by_matrix] == [h.chunk_id for h in by_sql]
    assert [round(h.score, 4) for h in by_matrix] == [round(h.score, 4) for h in by_sql]
    assert len(list((cfg.out / "state").glob("search-*.f32"))) == 1

    # a run that changes the index makes the next search build a fresh matrix
    (corpus / "library" / "opening-hours.md").unlink()
    run_corpus(cfg, client)
    after = search(cfg.out, query, client, k=8, matrix_min_rows=1)
    assert all(h.source_path != "corpus/library/opening-hours.md" for h in after)
    assert [h.chunk_id for h in after] == [
        h.chunk_id for h in search(cfg.out, query, client, k=8, matrix_min_rows=10**9)
    ]
    assert len(list((cfg.out / "state").glob("search-*.f32"))) == 1


def test_search_on_a_render_folder_says_what_it_is(tmp_path, client):
    from quant_batch.config_files import parse_config
    from quant_batch.errors import ConfigError
    from quant_batch.render.config import RenderConfig
    from quant_batch.render.run import render_manifest

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "prompt": "a lighthouse", "width": 320, "height": 320, "seed": 1}\n')
    out = tmp_path / "renders"
    render_manifest(parse_config(RenderConfig, {"manifest": str(manifest), "out": str(out)}, source="t"), client)
    with pytest.raises(ConfigError, match="rendered images, not a search index"):
        search(out, "lighthouse", client)


def test_the_matrix_fills_each_live_chunk_once_from_parts_read_one_at_a_time(tmp_path):
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quant_batch.query.search import build_matrix
    from quant_batch.store.records import vector_array

    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    dim = 4
    live = pa.table({"chunk_id": ["c1", "c2", "c3"], "key": [key("same"), key("same"), key("other")]})
    vectors = {"same": [3.0, 4.0, 0, 0], "other": [0, 0, 0, 2.0], "gone": [1.0, 0, 0, 0]}
    parts = []
    for i, texts in enumerate([["same", "gone"], ["other"], ["same"]]):  # "same" committed twice
        path = tmp_path / f"part-{i}.parquet"
        matrix = np.array([vectors[t] for t in texts], dtype=np.float32)
        pq.write_table(pa.table({"key": [key(t) for t in texts], "vector": vector_array(matrix)}), path)
        parts.append(path)
    vec_path, ids_path = tmp_path / "m.f32", tmp_path / "m.ids.arrow"
    build_matrix(live, parts, vec_path, ids_path, dim)
    ids = pa.ipc.open_file(pa.memory_map(str(ids_path))).read_all().column("chunk_id").to_pylist()
    rows = np.fromfile(vec_path, dtype=np.float32).reshape(-1, dim)
    assert sorted(ids) == ["c1", "c2", "c3"] and len(rows) == 3
    by_id = dict(zip(ids, rows.tolist(), strict=True))
    assert np.allclose(by_id["c1"], [0.6, 0.8, 0, 0]) and np.allclose(by_id["c2"], by_id["c1"])
    assert np.allclose(by_id["c3"], [0, 0, 0, 1])
