"""Scale-out: the corpus flow on a Dask LocalCluster of 2 worker processes equals a local run."""

from __future__ import annotations

import pytest

from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.flows.embed_corpus import flow_for
from tests.pipeline.conftest import SAMPLE_CORPUS, query

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_dask_run_equals_single_process_run(tmp_path, client, api_env):
    base = {
        "sources": [{"path": str(SAMPLE_CORPUS)}],
        "batch_size": 20,
        "concurrency": 2,
        "chunking": {"max_chars": 600, "overlap_chars": 80, "min_chars": 150},
    }
    local = parse_config(CorpusConfig, {**base, "out": str(tmp_path / "local")}, source="test")
    run_corpus(local, client)

    cfg_path = tmp_path / "dask.yaml"
    cfg_path.write_text(
        f"sources: [{{path: '{SAMPLE_CORPUS}'}}]\nout: '{tmp_path / 'dask'}'\nbatch_size: 20\nconcurrency: 2\n"
        "chunking: {max_chars: 600, overlap_chars: 80, min_chars: 150}\ntask_runner: dask\ndask_workers: 2\n"
    )
    cfg = parse_config(
        CorpusConfig, {**base, "out": str(tmp_path / "dask"), "task_runner": "dask", "dask_workers": 2}, source="t"
    )
    summary = flow_for(cfg)(str(cfg_path))
    assert summary["status"] == "completed", summary["reason"]
    sql = "SELECT chunk_id, key, doc_id, position, vector FROM chunks ORDER BY chunk_id"
    assert query(tmp_path / "dask", sql) == query(tmp_path / "local", sql)
    # parts were written by the worker processes, loaded by the flow's single writer
    assert (
        query(tmp_path / "dask", "SELECT count(*) FROM _parts WHERE kind = 'vectors'")[0][0]
        == summary["stats"]["batches"]
    )
