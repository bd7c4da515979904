"""Scenario bucket: the same corpus into a local folder and into an S3 bucket (moto), and the
unchanged rerun of the bucket index from a warm and from a clean working copy.

The S3 server is ``python -m moto.server`` in its own process on this same 2-core machine; its
request log gives the storage requests each command made (list / get / head / put / delete).
The embedding API is the neutral server at zero latency, so the storage is what differs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import Outcome, Settings, corpus_yaml
from benchmarks.peer import _env, measure_process, neutral_server, quant_batch_cli
from benchmarks.scale import write_short_jsonl

TITLE = "Bucket output: local folder vs S3 (moto), and the unchanged rerun's storage requests"
CONCURRENCY = 16
BUCKET = "qb-bench"
_REQUEST = re.compile(r'"(GET|PUT|HEAD|DELETE|POST) (\S+) HTTP')


def _requests(log: Path, start: int) -> tuple[Counter, int]:
    """Storage requests logged after byte ``start`` of the moto log, by kind."""
    with log.open("rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    kinds: Counter = Counter()
    for method, path in _REQUEST.findall(text):
        kinds["list" if method == "GET" and "list-type" in path else method.lower()] += 1
    return kinds, log.stat().st_size


def run(s: Settings) -> Outcome:
    out = Outcome("bucket", TITLE)
    n = 20_000 if s.quick else 100_000
    work = s.root / "bucket"
    shutil.rmtree(work / "local-out", ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    table = write_short_jsonl(work.parent / "scale" / f"short-{n}.jsonl", n)
    log = work / "moto.log"
    port = _free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait(endpoint)
        import boto3

        storage_env = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        os.environ.update(storage_env)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        with neutral_server(0.0) as url:
            env = {**_env(url), **storage_env, "XDG_CACHE_HOME": str(work / "cache")}
            label = f"{n:,} chunks"
            local_cfg = corpus_yaml(table, work / "local-out", CONCURRENCY, work / "local.yaml")
            local = measure_process(
                quant_batch_cli() + ["embed", str(local_cfg), "--no-prefect"], env, work / "local.log"
            )
            bucket_cfg = corpus_yaml(table, f"s3://{BUCKET}/index", CONCURRENCY, work / "bucket.yaml")
            mark = log.stat().st_size
            first = measure_process(
                quant_batch_cli() + ["embed", str(bucket_cfg), "--no-prefect"], env, work / "b1.log"
            )
            kinds, mark = _requests(log, mark)
            out.add(f"{label}: local folder, embed wall", local["wall"], "s")
            out.add(f"{label}: bucket, embed wall", first["wall"], "s", note=_show(kinds))
            out.add(f"{label}: bucket wall ÷ local wall", first["wall"] / local["wall"], "×", at_most=1.2)
            out.add(f"{label}: bucket, peak RSS", first["rss_mb"], "MB", note=f"local {local['rss_mb']:.0f} MB")

            warm = measure_process(
                quant_batch_cli() + ["embed", str(bucket_cfg), "--no-prefect", "--json"], env, work / "b2.log"
            )
            kinds, mark = _requests(log, mark)
            out.add(f"{label}: bucket unchanged rerun, warm working copy, wall", warm["wall"], "s", note=_show(kinds))
            out.add(f"{label}: bucket unchanged rerun, storage requests", sum(kinds.values()), "requests")
            out.add(f"{label}: bucket unchanged rerun, API calls", _api_calls(work / "b2.log"), "calls", at_most=0)

            clean = {**env, "XDG_CACHE_HOME": str(work / "cache-clean")}
            shutil.rmtree(work / "cache-clean", ignore_errors=True)
            cold = measure_process(
                quant_batch_cli() + ["embed", str(bucket_cfg), "--no-prefect"], clean, work / "b3.log"
            )
            kinds, mark = _requests(log, mark)
            out.add(f"{label}: bucket unchanged rerun from a clean machine, wall", cold["wall"], "s", note=_show(kinds))
            out.add(
                f"{label}: local unchanged rerun, wall",
                measure_process(
                    quant_batch_cli() + ["embed", str(local_cfg), "--no-prefect"], env, work / "local2.log"
                )["wall"],
                "s",
            )
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{moto.pid}/stat").read_text().rsplit(")", 1)[1].split()
        moto_cpu = (int(fields[11]) + int(fields[12])) / ticks
        out.add("S3 server (moto) CPU over the scenario, on the same 2 cores", moto_cpu, "CPU-s")
    finally:
        moto.terminate()
        moto.wait(10)
    return out


def _api_calls(log: Path) -> int:
    """``api_calls`` of the run summary the command printed with ``--json``."""
    import json

    for line in log.read_text().splitlines():
        if line.startswith('{"run_id"'):
            return int(json.loads(line)["api_calls"])
    return -1


def _show(kinds: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "no requests"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(endpoint: str) -> None:
    import urllib.request

    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")
