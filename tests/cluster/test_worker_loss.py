"""One embed run on a Dask cluster of two "machines", one of which dies mid-run (issue 15).

The run is started the way a user starts it, ``quant-batch embed CONFIG --json`` in a process of
its own with ``PREFECT_API_URL`` set, into a bucket; the harness (``conftest.py``) has a Prefect
server, moto, a Dask scheduler and two workers in empty folders of their own. Once a third of the
API batches have been sent, one worker's whole process group (nanny and worker) gets SIGKILL, like
a machine losing power. Dask then runs again, on the other worker, the tasks that were running
there and those whose results it held but the flow had not collected yet.

The result must equal a single-machine run's: the same live chunks, each key committed once, and
no batch paid for twice except those in flight on the dead machine (at most one per thread).
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from quant_batch.hashing import embedding_generation
from tests.cluster.conftest import BIN, WORKER_THREADS, Cluster
from tests.s3 import BUCKET, boto_client

DOCS = 240
PARAGRAPHS = 10
CHUNKING = {"max_chars": 600, "overlap_chars": 80, "min_chars": 150}
BATCH_SIZE = 20
LATENCY = 0.1  # seconds per embedding call: the run must still be sending when a third of it is done
RUN_TIMEOUT = 240

pytestmark = pytest.mark.slow

WORDS = (
    "vector index batch worker cluster shard commit bucket region latency token budget corpus chunk "
    "document search machine scheduler retry durable parquet catalog publish ledger generation"
).split()


def write_corpus(folder: Path) -> Path:
    """``DOCS`` markdown files of ``PARAGRAPHS`` paragraphs each: about ten chunks a document."""
    rng = random.Random(15)
    folder.mkdir()
    for d in range(DOCS):
        paras = [" ".join(rng.choice(WORDS) for _ in range(40)) + "." for _ in range(PARAGRAPHS)]
        (folder / f"doc-{d:04d}.md").write_text(f"# Document {d}\n\n" + "\n\n".join(paras) + "\n")
    return folder


def write_config(path: Path, corpus: Path, out: str, **extra: object) -> Path:
    cfg = {
        "sources": [{"path": str(corpus)}],
        "out": out,
        "chunking": CHUNKING,
        "batch_size": BATCH_SIZE,
        "concurrency": 8,
        "dimensions": 256,
        **extra,
    }
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def start_embed(config: Path, *flags: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """The installed command, as a user on the driver machine runs it."""
    return subprocess.Popen(
        [str(BIN / "quant-batch"), "embed", str(config), "--json", *flags],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    summary = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    return proc.returncode, summary, err.decode(errors="replace")


def embedding_calls(emulator) -> int:
    return sum(emulator.stats()["by_endpoint"].get("embeddings", {}).values())


class Output:
    """An output's files read straight from the folder or the bucket, not through quant_batch."""

    def __init__(self, root: Path | None = None, *, endpoint: str = "", prefix: str = ""):
        self.root, self.endpoint, self.prefix = root, endpoint, prefix

    def read(self, key: str) -> bytes:
        if self.root is not None:
            return (self.root / key).read_bytes()
        return boto_client(self.endpoint).get_object(Bucket=BUCKET, Key=self.prefix + key)["Body"].read()

    def parts(self, folder: str) -> list[str]:
        if self.root is not None:
            return sorted(p.relative_to(self.root).as_posix() for p in (self.root / folder).glob("*.parquet"))
        pages = boto_client(self.endpoint).get_paginator("list_objects_v2")
        keys = [
            o["Key"]
            for page in pages.paginate(Bucket=BUCKET, Prefix=f"{self.prefix}{folder}/")
            for o in page.get("Contents", [])
        ]
        return sorted(k[len(self.prefix) :] for k in keys if k.endswith(".parquet") and "/." not in k)

    def live_chunks(self, generation: str) -> list[tuple[str, str]]:
        pointer = json.loads(self.read(f"state/index-{generation}.json"))
        live = pq.read_table(io.BytesIO(self.read(f"state/{pointer['live']}")), columns=["chunk_id", "key"])
        return sorted(zip(live["chunk_id"].to_pylist(), live["key"].to_pylist()))

    def committed_keys(self, generation: str) -> list[str]:
        keys: list[str] = []
        for name in self.parts(f"parts/vectors/{generation}"):
            keys += pq.read_table(io.BytesIO(self.read(name)), columns=["key"])["key"].to_pylist()
        return keys


def test_a_dead_worker_changes_nothing_in_the_index(cluster: Cluster, emulator, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    gen = embedding_generation("amazon.titan-embed-text-v2:0", 256, True)

    # the reference: one machine, no Prefect, no Dask, a local folder
    single_cfg = write_config(tmp_path / "single.yaml", corpus, str(tmp_path / "single"))
    code, single, err = finish(start_embed(single_cfg, "--no-prefect", env=cluster.node_env(tmp_path), cwd=tmp_path))
    assert code == 0, err
    batches = single["stats"]["batches"]
    assert single["stats"]["chunks_new"] >= 2000 and batches == embedding_calls(emulator)

    emulator.reset()
    emulator.set_faults(latency={"embeddings": LATENCY})
    driver = tmp_path / "driver"  # the machine that runs the flow: the only one that publishes
    driver.mkdir()
    prefix = f"{tmp_path.name}/index"
    cfg = write_config(
        driver / "run.yaml", corpus, f"s3://{BUCKET}/{prefix}", task_runner="dask", dask_address=cluster.scheduler
    )
    run = start_embed(cfg, env=cluster.node_env(tmp_path / "driver-private"), cwd=driver)

    victim = cluster.workers[0]
    deadline = time.monotonic() + RUN_TIMEOUT
    while embedding_calls(emulator) < batches // 3:
        assert run.poll() is None, f"the run ended before a third of its batches:\n{run.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the run sent no batches"
        time.sleep(0.05)
    victim.kill_group()
    code, summary, err = finish(run)
    calls = embedding_calls(emulator)
    print(f"batches={batches} calls={calls} stats={summary.get('stats')}", file=sys.stderr)

    assert code == 0, f"{err[-4000:]}\n{cluster.logs()}"
    assert summary["status"] == "completed" and summary["stats"]["runner"] == "prefect"
    assert not victim.alive() and cluster.live_workers() == 1, "one machine must have died mid-run"

    ref, got = Output(tmp_path / "single"), Output(endpoint=cluster.s3_endpoint, prefix=f"{prefix}/")
    assert got.live_chunks(gen) == ref.live_chunks(gen)
    keys = got.committed_keys(gen)
    assert len(keys) == len(set(keys)), "a key was committed twice"
    assert sorted(keys) == sorted(ref.committed_keys(gen))
    # a batch is paid for once, except those in flight on the dead machine: a re-run task skips
    # the batches its first attempt committed, and counts them
    assert batches <= calls <= batches + WORKER_THREADS
    assert summary["stats"]["duplicates_avoided"] >= 0
    # the dead worker's results are lost with it, its committed parts are not: the summary counts those
    assert summary["stats"]["embedded"] == len(keys)
