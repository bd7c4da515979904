"""Outputs in a bucket (moto over loopback): runs, reruns, readers on a clean machine, the lease, exactly-once parts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import quant_batch
from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.embed.run import CorpusRun
from quant_batch.embed.worker import embed_shard
from quant_batch.errors import ConfigError, LockError
from quant_batch.store.lease import KEY as LEASE_KEY
from quant_batch.store.storage import open_storage
from tests.s3 import BUCKET, SECRET_KEY, all_keys, boto_client

from .conftest import REPO, api_calls, corpus_config

URI = f"s3://{BUCKET}/index"


@pytest.fixture
def bucket(s3_env, api_env, tmp_path, monkeypatch):
    """A bucket output on moto with the emulator; each test's working copies under its own cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    return s3_env


def _keys(endpoint: str, prefix: str = "index/") -> list[str]:
    return [k for k in all_keys(endpoint) if k.startswith(prefix)]


def test_a_bucket_index_reruns_free_and_follows_edits(bucket, corpus, api_env, tmp_path, monkeypatch):
    first = quant_batch.embed(corpus, out=URI, prefect=False)
    assert first.status == "completed" and first.api_calls > 0
    chunks = first.stats["chunks_total"]
    keys = _keys(bucket)
    assert any(k.startswith("index/parts/vectors/") for k in keys)
    assert "index/state/generation.json" in keys and any(k.startswith("index/state/index-") for k in keys)
    # the catalog, temp files and the lease stay off the bucket
    assert not [k for k in keys if "catalog.duckdb" in k or "/.tmp-" in k or k.endswith(LEASE_KEY)]

    calls = api_calls(api_env)
    again = quant_batch.embed(corpus, out=URI, prefect=False)
    assert again.status == "completed" and api_calls(api_env) == calls and again.stats["chunks_unchanged"] == chunks

    # from a second, clean working copy (another machine): an edit costs only its own chunks
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    doc = next(p for p in sorted(corpus.rglob("*.md")))
    gone = next(p for p in sorted(corpus.rglob("*.md")) if p != doc)
    doc.write_text(doc.read_text() + "\n\nA new closing paragraph about tandem bicycles and their long frames.\n")
    gone.unlink()
    edited = quant_batch.embed(corpus, out=URI, prefect=False)
    assert edited.status == "completed"
    assert 0 < edited.stats["chunks_new"] < chunks and edited.stats["chunks_removed"] > 0
    assert edited.stats["documents_unchanged"] == first.stats["documents"] - 2


def test_search_runs_and_errors_work_from_a_clean_folder_with_only_the_uri(bucket, corpus, tmp_path):
    quant_batch.embed(corpus, out=URI, prefect=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in __import__("os").environ.items()}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache-clean")
    cli = [sys.executable, "-m", "quant_batch.cli"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)

    hits = run("search", URI, "how do I fix a puncture", "-k", "3", "--json")
    assert hits.returncode == 0, hits.stderr
    found = json.loads(hits.stdout)
    assert len(found) == 3 and all(h["doc_id"].startswith("corpus/") for h in found)
    runs = run("runs", URI, "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout)[0]["status"] == "completed"
    errors = run("errors", URI, "--json")
    assert errors.returncode == 0 and json.loads(errors.stdout) == []
    assert not list(elsewhere.iterdir()), "a reader wrote into the folder it was run from"
    missing = run("runs", f"s3://{BUCKET}/no-such-index")
    assert missing.returncode == 2 and f"s3://{BUCKET}/no-such-index" in missing.stderr


def test_a_second_run_waits_for_the_lease_and_a_dead_runs_lease_lapses(bucket, corpus):
    storage = open_storage(URI)
    held = {"run_id": "embed-other", "host": "elsewhere", "pid": 1, "token": "x", "expires_at": time.time() + 60}
    storage.replace(LEASE_KEY, json.dumps(held).encode())
    with pytest.raises(LockError, match="in use by run embed-other on elsewhere"):
        quant_batch.embed(corpus, out=URI, prefect=False)
    assert not _keys(bucket, "index/runs/"), "a refused run recorded something"

    held["expires_at"] = time.time() - 1  # its run was killed and stopped renewing
    storage.replace(LEASE_KEY, json.dumps(held).encode())
    assert quant_batch.embed(corpus, out=URI, prefect=False).status == "completed"
    assert not storage.exists(LEASE_KEY)


def test_a_shard_run_twice_commits_each_batch_once_and_pays_once(bucket, corpus, api_env):
    """What Dask does when a worker dies: the same task runs again elsewhere."""
    cfg = corpus_config(corpus, URI, batch_size=10)
    with build_client(ApiConfig(), RateLimits(), pool_size=2) as client, CorpusRun(cfg) as run:
        run.make_plan()
        tasks = run.shard_tasks()
        first = [embed_shard(t, client) for t in tasks]
        calls = api_calls(api_env)
        second = [embed_shard(t, client) for t in tasks]
        assert api_calls(api_env) == calls, "a re-run shard paid for batches already committed"
        batches = sum(t.end_batch - t.first_batch for t in tasks)
        assert sum(r.duplicates_avoided for r in second) == batches
        assert sum(r.embedded for r in first) == run.plan.stats.chunks_pending
        for r in first + second:
            run.absorb(r)
        summary = run.finish()
    assert summary.stats["duplicates_avoided"] == batches
    assert summary.stats["embedded"] == summary.stats["chunks_new"], "chunks of the lost attempt went uncounted"
    parts = _keys(bucket, "index/parts/vectors/")
    assert len(parts) == len(set(parts)) == batches


def test_a_relative_output_is_refused_for_a_remote_dask_cluster(corpus):
    with pytest.raises(ConfigError, match="relative"):
        quant_batch.embed(corpus, out="rel/index", prefect=True, task_runner="dask", dask_address="tcp://10.0.0.1:8786")


def test_a_render_into_a_bucket_writes_images_parts_and_sheet(bucket, api_env):
    manifest = REPO / "data" / "prompts.jsonl"
    out = f"s3://{BUCKET}/renders"
    first = quant_batch.render(manifest, out=out, prefect=False)
    assert first.status == "completed" and first.api_calls > 0
    keys = _keys(bucket, "renders/")
    pngs = [k for k in keys if k.endswith(".png")]
    assert len(pngs) == first.stats["images"] and "renders/index.html" in keys
    assert any(k.startswith("renders/parts/images/") for k in keys)
    sheet = boto_client(bucket).get_object(Bucket=BUCKET, Key="renders/index.html")["Body"].read().decode()
    assert all(f'src="{p.split("/", 1)[1]}"' in sheet or p.split("/", 1)[1] in sheet for p in pngs)
    calls = api_calls(api_env, "image-generation")
    assert quant_batch.render(manifest, out=out, prefect=False).api_calls == 0
    assert api_calls(api_env, "image-generation") == calls


def test_no_credential_reaches_the_bucket_or_the_working_copy(bucket, corpus, tmp_path):
    quant_batch.embed(corpus, out=URI, prefect=False)
    client = boto_client(bucket)
    for key in _keys(bucket):
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert SECRET_KEY.encode() not in body, key
    for path in (tmp_path / "cache-a").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".parquet", ".html"):
            assert SECRET_KEY.encode() not in path.read_bytes(), path


def test_the_web_page_serves_a_bucket_output_from_a_clean_machine(bucket, api_env, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from quant_batch.ui import app as ui_app

    out = f"s3://{BUCKET}/renders"
    quant_batch.render(REPO / "data" / "prompts.jsonl", out=out, prefect=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-web"))  # no working copy yet
    png = next(k for k in _keys(bucket, "renders/") if k.endswith(".png")).split("/", 1)[1]
    with TestClient(ui_app([out])) as web:
        gallery = web.get("/o/renders/images")
        assert gallery.status_code == 200 and png.rsplit("_", 1)[0] in gallery.text
        image = web.get(f"/o/renders/img/{png}")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert web.get("/o/renders/img/index.html").status_code == 404


def test_the_storage_block_alone_points_a_run_at_the_server(bucket, corpus, monkeypatch):
    """No AWS_ENDPOINT_URL: the run config's storage: block names the server, for the sources too."""
    client = boto_client(bucket)
    for path in sorted(corpus.rglob("*.md"))[:3]:
        client.put_object(Bucket=BUCKET, Key=f"docs/{path.name}", Body=path.read_bytes())
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    summary = quant_batch.embed(
        f"s3://{BUCKET}/docs/", out=URI, prefect=False, storage={"endpoint_url": bucket, "region": "us-east-1"}
    )
    assert summary.status == "completed" and summary.stats["documents"] == 3
    assert any(k.startswith("index/state/index-") for k in _keys(bucket))


def test_a_run_whose_lease_was_taken_over_refuses_to_publish(bucket):
    from quant_batch.store.lease import BucketLease

    storage = open_storage(URI)
    lease = BucketLease(storage, "embed-mine", ttl=0.4)
    lease.acquire()
    try:
        lease.check()  # freshly renewed: still ours
        other = {"run_id": "embed-other", "host": "h", "pid": 2, "token": "theirs", "expires_at": time.time() + 60}
        storage.replace(LEASE_KEY, json.dumps(other).encode())  # ours lapsed and another run took it
        deadline = time.monotonic() + 5
        while lease._lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockError, match="another run took the output over"):
            lease.check()
    finally:
        lease.release()
    assert json.loads(storage.read_bytes(LEASE_KEY))["token"] == "theirs", "the new holder's lease was touched"
