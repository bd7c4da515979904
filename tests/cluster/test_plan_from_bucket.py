"""A shard that may run on another machine reads its batches from the bucket (no harness needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.embed.run import CorpusRun
from quant_batch.embed.worker import embed_shard
from tests.pipeline.conftest import SAMPLE_CORPUS, corpus_config
from tests.s3 import BUCKET


def test_a_remote_shard_reads_its_plan_from_the_bucket_not_a_file_of_that_name(s3_env, api_env, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus = shutil.copytree(SAMPLE_CORPUS, tmp_path / "corpus")
    cfg = corpus_config(
        corpus, f"s3://{BUCKET}/index", batch_size=10, task_runner="dask", dask_address="tcp://127.0.0.1:9"
    )
    with build_client(ApiConfig(), RateLimits(), pool_size=2) as client, CorpusRun(cfg) as run:
        run.make_plan()
        task = run.shard_tasks()[0]
        assert task.plan_key is not None and task.output.copy_to is None
        # the planning machine's path means nothing on a worker: there it may hold anything
        Path(task.plan_path).write_bytes(b"another machine's file")
        result = embed_shard(task, client)
    assert result.embedded > 0 and result.failed == 0 and len(result.parts) == task.end_batch - task.first_batch
