"""AdaptiveRateLimiter: token buckets on a fake clock, AIMD adaptation, and real threads."""

from __future__ import annotations

import threading
import time

import pytest

from quant_batch.client.ratelimit import AdaptiveRateLimiter, NullRateLimiter, RateLimiter


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, **kw) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock, sleep=clock.sleep, **kw)


def test_both_limiters_satisfy_the_protocol():
    assert isinstance(NullRateLimiter(), RateLimiter)
    assert isinstance(AdaptiveRateLimiter(60), RateLimiter)


def test_burst_then_steady_rate():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=120, burst=3)  # 2 per second
    for _ in range(3):
        rl.acquire()
    assert clock.sleeps == []  # the burst leaves at once
    start = clock.now
    for _ in range(4):
        rl.acquire()
    assert clock.now - start == pytest.approx(2.0)  # then one every 0.5 s


def test_idle_time_refills_up_to_burst_only():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=60, burst=2)
    rl.acquire(), rl.acquire()
    clock.now += 3600  # an hour idle buys 2 requests, not 3600
    rl.acquire(), rl.acquire()
    assert clock.sleeps == []
    rl.acquire()
    assert sum(clock.sleeps) == pytest.approx(1.0)


def test_token_bucket_paces_by_estimated_tokens():
    clock = FakeClock()
    rl = limiter(clock, tokens_per_minute=6000)  # 100 tokens/s, bucket of 100
    rl.acquire(tokens=100)
    start = clock.now
    rl.acquire(tokens=50)
    assert clock.now - start == pytest.approx(0.5)


def test_cost_above_capacity_waits_for_a_full_bucket_then_owes():
    clock = FakeClock()
    rl = limiter(clock, tokens_per_minute=6000)  # bucket of 100
    rl.acquire(tokens=1000)  # bucket was full: goes at once, 900 in debt
    assert clock.sleeps == []
    start = clock.now
    rl.acquire(tokens=10)
    assert clock.now - start == pytest.approx(9.1)  # repay 900, then 10 more


def test_both_dimensions_must_fit():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=6000, tokens_per_minute=600, burst=100)
    rl.acquire(tokens=10)  # token bucket holds 10/s
    start = clock.now
    rl.acquire(tokens=10)
    assert clock.now - start == pytest.approx(1.0)  # tokens are the binding limit


def test_unlimited_dimensions_never_wait():
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(1000):
        rl.acquire(tokens=10**6)
    assert clock.sleeps == [] and rl.effective_rpm == float("inf")


def test_throttle_halves_once_per_window_and_respects_floor():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=600, min_fraction=0.1)
    for _ in range(5):  # a burst of 429s from concurrent calls counts once
        rl.on_throttle()
    assert rl.effective_rpm == pytest.approx(300)
    for _ in range(10):
        clock.now += 1.0
        rl.on_throttle()
    assert rl.effective_rpm == pytest.approx(60)  # floor: 10% of 600


def test_success_recovers_additively_up_to_configured():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=600, increase_per_success=0.1)
    rl.on_throttle()
    assert rl.effective_rpm == pytest.approx(300)
    for _ in range(3):
        rl.on_success()
    assert rl.effective_rpm == pytest.approx(480)
    for _ in range(100):
        rl.on_success()
    assert rl.effective_rpm == pytest.approx(600)


def test_throttled_rate_slows_acquire():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=120, burst=1)
    rl.acquire()
    rl.on_throttle()  # 2/s -> 1/s
    start = clock.now
    rl.acquire()
    assert clock.now - start == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(requests_per_minute=0), dict(tokens_per_minute=-1), dict(decrease=1.0)])
def test_rejects_nonsense(kw):
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(**kw)


def test_threads_share_one_rate():
    rl = AdaptiveRateLimiter(requests_per_minute=1200, burst=1)  # 20/s, real clock
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            rl.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(stamps) == 24
    # 24 requests at 20/s with a burst of 1 need at least 23/20 s
    assert max(stamps) - start >= 23 / 20 * 0.95
    stamps.sort()
    # no 1-second window holds more than burst + 20 requests
    assert all(sum(1 for s in stamps if a <= s < a + 1.0) <= 21 for a in stamps)


def test_concurrent_throttles_count_once():
    rl = AdaptiveRateLimiter(requests_per_minute=600)
    barrier = threading.Barrier(16)

    def hit():
        barrier.wait()
        rl.on_throttle()

    threads = [threading.Thread(target=hit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert rl.effective_rpm == pytest.approx(300)


# --- the process-wide registry build_client draws from ----------------------------------------


def _build(images: bool = False, **limits):
    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.client.factory import build_client

    return build_client(ApiConfig(), RateLimits(**limits), pool_size=1, images=images)


def test_image_and_request_quotas_get_their_own_buckets(api_env):
    limits = dict(requests_per_minute=60, images_per_minute=60)
    with _build(**limits) as embed_a, _build(**limits) as embed_b, _build(images=True, **limits) as image:
        assert embed_a.rate_limiter is embed_b.rate_limiter  # one account, one request quota
        assert image.rate_limiter is not embed_a.rate_limiter
        image.rate_limiter.on_throttle()
        assert embed_a.rate_limiter.effective_rpm == 60  # a throttled image quota slows no embedding


def test_accounts_get_their_own_buckets(api_env, monkeypatch):
    with _build(requests_per_minute=60) as first:
        monkeypatch.setenv("QUANT_ORGANIZATION", "another-org")
        with _build(requests_per_minute=60) as other_org:
            assert other_org.rate_limiter is not first.rate_limiter
        monkeypatch.setenv("QUANT_BASE_URL", "http://127.0.0.1:9")
        with _build(requests_per_minute=60) as other_url:
            assert other_url.rate_limiter not in (first.rate_limiter, other_org.rate_limiter)


def test_new_numbers_for_a_quota_replace_its_bucket(api_env):
    with _build(requests_per_minute=60) as old, _build(requests_per_minute=600) as new:
        assert new.rate_limiter is not old.rate_limiter and new.rate_limiter.requests_per_minute == 600


def test_reset_forgets_adapted_buckets(api_env):
    from quant_batch.client.factory import reset_shared_limiters

    with _build(requests_per_minute=600) as before:
        before.rate_limiter.on_throttle()
        assert before.rate_limiter.effective_rpm == 300
    reset_shared_limiters()
    with _build(requests_per_minute=600) as after:
        assert after.rate_limiter is not before.rate_limiter and after.rate_limiter.effective_rpm == 600
