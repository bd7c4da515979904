"""Readers answer from the last published index while a run writes (issue 12, item 2)."""

from __future__ import annotations

import json
import threading
import time

from quant_batch.embed.run import run_corpus
from quant_batch.query.estimate import plan_corpus_dry
from quant_batch.query.search import search
from quant_batch.query.snapshot import Snapshot

from .conftest import corpus_config

ZEBRA = "Zebra crossings: the striped pedestrian crossing outside the zoo gets new zebra paint in May.\n"


def _running(out) -> bool:
    for f in (out / "runs").glob("*.json"):
        try:
            if json.loads(f.read_text()).get("status") == "running":
                return True
        except ValueError:
            pass
    return False


def test_search_plan_and_errors_answer_while_a_run_writes(corpus, tmp_path, client, emulator):
    cfg = corpus_config(corpus, tmp_path / "out", concurrency=1, batch_size=2)
    assert run_corpus(cfg, client).status == "completed"
    before = search(cfg.out, "zebra crossing paint", client, k=1)[0]

    for i in range(30):  # enough new batches that the run is still sending when we read
        (corpus / f"zebra-{i:02d}.md").write_text(ZEBRA * (i + 1) + f"variant {i}\n")
    emulator.set_faults(latency={"embeddings": 0.3})
    result = {}
    worker = threading.Thread(target=lambda: result.update(summary=run_corpus(cfg, client)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not _running(cfg.out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(cfg.out)
        during = search(cfg.out, "zebra crossing paint", client, k=1)[0]  # does not wait for the lock
        assert _running(cfg.out), "the run finished before we read: make it slower"
        assert during.chunk_id == before.chunk_id and "zebra" not in during.doc_id
        assert plan_corpus_dry(cfg)["chunks_new"] > 0
        with Snapshot(cfg.out) as snap:
            assert snap.count("SELECT count(*) FROM errors") == 0
            assert snap.count("SELECT count(*) FROM runs WHERE status = 'running'") == 1
    finally:
        worker.join(60)
    emulator.set_faults(latency={})
    assert result["summary"].status == "completed"
    after = search(cfg.out, "zebra crossing paint", client, k=1)[0]
    assert after.doc_id.startswith("corpus/zebra-")
