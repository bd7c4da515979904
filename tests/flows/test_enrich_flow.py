"""The enrich flow on a real (temporary) Prefect server against the emulator."""

from __future__ import annotations

import pytest

from quant_batch.embed.run import run_corpus
from quant_batch.flows.enrich import enrich
from tests.pipeline.conftest import SAMPLE_CORPUS, api_calls, corpus_config, query

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_enrich_flow_fills_the_table_and_reruns_for_free(tmp_path, client, api_env):
    index = tmp_path / "index"
    assert run_corpus(corpus_config(SAMPLE_CORPUS, index), client).status == "completed"
    cfg = tmp_path / "enrich.yaml"
    cfg.write_text(
        f"catalog: '{index}'\nsource: chunks\ntemplate: 'Keywords of: {{{{ text }}}}'\n"
        "json_schema: {type: object, properties: {keywords: {type: array, items: {type: string}}}}\n"
    )
    api_env.reset()
    summary = enrich(str(cfg))
    n = query(index, "SELECT count(*) FROM live_chunks")[0][0]
    assert summary["status"] == "completed", summary["reason"]
    assert api_calls(api_env, "chat") == n == summary["stats"]["enriched"]
    assert query(index, "SELECT count(*) FROM enrich_chunks")[0][0] == n
    again = enrich(str(cfg))
    assert again["api_calls"] == 0 and api_calls(api_env, "chat") == n
