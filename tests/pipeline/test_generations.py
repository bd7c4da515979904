"""Changing the vector space builds a new generation beside the old one; search switches only when complete."""

from __future__ import annotations

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.embed.run import run_corpus
from quant_batch.query.search import search
from tests.pipeline.conftest import corpus_config, query


def test_dimension_change_switches_only_when_complete(corpus, tmp_path, client, emulator):
    out = tmp_path / "index"
    first = run_corpus(corpus_config(corpus, out), client)
    assert query(out, "SELECT typeof(vector) FROM chunks LIMIT 1")[0][0] == "FLOAT[1024]"
    n_chunks = first.stats["chunks_total"]

    # a migration to 512 dims whose API calls all fail: the old index stays live and whole
    emulator.set_faults(error_503_rate=1.0, endpoints=["embeddings"])
    with build_client(ApiConfig(max_attempts=2, max_retry_seconds=5), RateLimits(), pool_size=4) as flaky:
        broken = run_corpus(corpus_config(corpus, out, dimensions=512), flaky)
    assert broken.status == "errors" and broken.stats["embedded"] == 0
    assert broken.stats["generation_active"] is False
    assert query(out, "SELECT typeof(vector), count(*) FROM chunks GROUP BY 1") == [("FLOAT[1024]", n_chunks)]
    emulator.set_faults()
    hit = search(out, "opening hours", client, k=1)[0]
    assert hit.source_path == "corpus/library/opening-hours.md"

    # the retry completes the new generation, and search moves to it
    done = run_corpus(corpus_config(corpus, out, dimensions=512), client)
    assert done.status == "completed" and done.stats["generation_active"] is True
    assert query(out, "SELECT typeof(vector), count(*) FROM chunks GROUP BY 1") == [("FLOAT[512]", n_chunks)]
    # both generations' vectors are still on disk and in the catalog
    tables = {
        r[0] for r in query(out, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'vectors_%'")
    }
    assert len(tables) == 2
    assert search(out, "opening hours", client, k=1)[0].source_path == "corpus/library/opening-hours.md"
