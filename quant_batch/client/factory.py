"""Build an API client from a run config: timeouts, retry budget, pool size, shared rate limit."""

from __future__ import annotations

from quant_batch.client import QuantClient, RetryPolicy, Timeouts
from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.ratelimit import AdaptiveRateLimiter
from quant_batch.client.settings import ApiSettings

# one limiter per (rpm, tpm) setting per process: every client of every run in this process
# draws from the same bucket, which is what the account's limit is
_LIMITERS: dict[tuple[float | None, float | None], AdaptiveRateLimiter] = {}


def shared_limiter(requests_per_minute: float | None, tokens_per_minute: float | None) -> AdaptiveRateLimiter | None:
    if requests_per_minute is None and tokens_per_minute is None:
        return None
    key = (requests_per_minute, tokens_per_minute)
    if key not in _LIMITERS:
        # burst of one request: pacing, so no 1-second window ever sees more than the rate
        # and a slow additive recovery, so after a 429 the rate stays under the real limit for long
        _LIMITERS[key] = AdaptiveRateLimiter(requests_per_minute, tokens_per_minute, burst=1, increase_per_success=0.005)
    return _LIMITERS[key]


def build_client(api: ApiConfig, limits: RateLimits, *, pool_size: int, images: bool = False) -> QuantClient:
    """A client sized for ``pool_size`` concurrent calls, honouring the configured limits."""
    settings = ApiSettings.from_env(secret_block=api.secret_block)
    rpm = limits.images_per_minute if images else limits.requests_per_minute
    tpm = None if images else limits.tokens_per_minute
    return QuantClient(
        settings,
        timeouts=Timeouts(embeddings=api.embeddings_timeout, image_generation=api.image_timeout),
        retry=RetryPolicy(max_attempts=api.max_attempts, max_elapsed=api.max_retry_seconds),
        pool_size=pool_size,
        rate_limiter=shared_limiter(rpm, tpm),
    )
