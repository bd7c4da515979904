"""One rate limit for every worker of every run in a process, and AIMD under throttling."""

from __future__ import annotations

import threading
from collections import Counter

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.embed.run import run_corpus
from tests.pipeline.conftest import corpus_config


def _docs(folder, n, tag):
    folder.mkdir()
    for i in range(n):
        (folder / f"{tag}{i:03d}.txt").write_text(f"{tag} note number {i} about topic {i * 7 % 13}")
    return folder


def _max_per_window(events, endpoint="embeddings") -> int:
    times = sorted(e["t"] for e in events if e["endpoint"] == endpoint)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_two_runs_share_one_limit(tmp_path, api_env):
    rps = 4
    limits = {"rate_limits": {"requests_per_minute": rps * 60}}
    cfgs = [
        corpus_config(
            _docs(tmp_path / f"c{k}", 24, f"run{k}"), tmp_path / f"out{k}", batch_size=2, concurrency=4, **limits
        )
        for k in range(2)
    ]
    results = []

    def work(cfg):
        with build_client(cfg.api, cfg.rate_limits, pool_size=4) as client:
            results.append(run_corpus(cfg, client))

    threads = [threading.Thread(target=work, args=(c,)) for c in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status for r in results] == ["completed", "completed"]
    events = api_env.stats()["events"]
    assert len([e for e in events if e["endpoint"] == "embeddings"]) == 24
    assert _max_per_window(events) <= rps + 1  # the bucket's one-second burst may add one


def test_adaptive_backoff_converges_below_the_service_limit(tmp_path, api_env):
    api_env.set_faults(rate_limit_rps=5, retry_after=False)  # like Bedrock: no Retry-After
    cfg = corpus_config(
        _docs(tmp_path / "c", 80, "x"),
        tmp_path / "out",
        batch_size=1,
        concurrency=6,
        rate_limits={"requests_per_minute": 600},
    )
    with build_client(ApiConfig(max_attempts=10), RateLimits(requests_per_minute=600), pool_size=6) as client:
        summary = run_corpus(cfg, client)
        limiter = client.rate_limiter
    assert summary.status == "completed", summary.reason
    events = api_env.stats()["events"]
    statuses = Counter(e["status"] for e in events)
    assert statuses[200] == 80
    start = min(e["t"] for e in events)
    late_429 = sum(1 for e in events if e["status"] == 429 and e["t"] > start + 5)
    early_429 = sum(1 for e in events if e["status"] == 429 and e["t"] <= start + 5)
    assert early_429 > 0  # it did hit the limit at first
    assert late_429 <= max(3, early_429 // 2)  # and then mostly stayed under it
    assert limiter.effective_rpm < 600
