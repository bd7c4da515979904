"""With a Prefect server, the rate limit is a Prefect global limit every process shares."""

from __future__ import annotations

import pytest

from quant_batch.flows.embed_corpus import embed_corpus
from tests.pipeline.test_rate_limits import _docs, _max_per_window

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_flow_paces_requests_through_a_prefect_global_rate_limit(tmp_path, api_env):
    docs = _docs(tmp_path / "c", 16, "p")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"sources: [{{path: '{docs}'}}]\nout: '{tmp_path / 'out'}'\nbatch_size: 1\nconcurrency: 4\n"
        "rate_limits: {requests_per_minute: 180, prefect_limit: quant-batch-test-embeddings}\n"
    )
    summary = embed_corpus(str(cfg))
    assert summary["status"] == "completed", summary["reason"]
    events = api_env.stats()["events"]
    assert len(events) == 16
    assert _max_per_window(events) <= 3 + 1

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("quant-batch-test-embeddings")
    assert limit.slot_decay_per_second == pytest.approx(3.0)
