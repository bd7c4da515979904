"""Build an API client from a run config: timeouts, retry budget, pool size, shared rate limit.

Rate limits are the account's, so every client of every run in one process draws from one
bucket per quota: the registry below keys buckets by (base URL, organisation, quota kind), where
the kind is ``"requests"`` (embeddings and chat: requests/min and tokens/min) or ``"images"``
(images/min). ``reset_shared_limiters()`` empties it; tests call it before each test.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal, NamedTuple

from quant_batch.client import QuantClient, RetryPolicy, Timeouts
from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.ratelimit import AdaptiveRateLimiter
from quant_batch.client.settings import ApiSettings

log = logging.getLogger("quant_batch.client")

QuotaKind = Literal["requests", "images"]


class BucketKey(NamedTuple):
    """Whose quota a bucket paces: one account (URL + organisation) and one kind of quota."""

    base_url: str
    organization: str
    kind: QuotaKind


_LIMITERS: dict[BucketKey, AdaptiveRateLimiter] = {}
_LOCK = threading.Lock()


def shared_limiter(
    key: BucketKey, requests_per_minute: float | None, tokens_per_minute: float | None
) -> AdaptiveRateLimiter | None:
    """The process-wide limiter for ``key`` (None when nothing is limited).

    A config that names other numbers for the same quota replaces the bucket: the newest
    configuration of an account's limit is the one that holds.
    """
    if requests_per_minute is None and tokens_per_minute is None:
        return None
    with _LOCK:
        found = _LIMITERS.get(key)
        if found is not None and (found.requests_per_minute, found.tokens_per_minute) == (
            requests_per_minute,
            tokens_per_minute,
        ):
            return found
        if found is not None:
            log.info("rate limit for %s quota changed: a new bucket replaces the old one", key.kind)
        # burst of one request: pacing, so no 1-second window ever sees more than the rate
        # and a slow additive recovery, so after a 429 the rate stays under the real limit for long
        _LIMITERS[key] = AdaptiveRateLimiter(
            requests_per_minute, tokens_per_minute, burst=1, increase_per_success=0.005
        )
        return _LIMITERS[key]


def reset_shared_limiters() -> None:
    """Forget every process-wide bucket: the next client starts at its configured rate.

    For tests and long-lived hosts that reload their configs; clients built before keep (and
    keep sharing) the buckets they hold.
    """
    with _LOCK:
        _LIMITERS.clear()


def build_client(api: ApiConfig, limits: RateLimits, *, pool_size: int, images: bool = False) -> QuantClient:
    """A client sized for ``pool_size`` concurrent calls, honouring the configured limits."""
    settings = ApiSettings.from_env(secret_block=api.secret_block)
    rpm = limits.images_per_minute if images else limits.requests_per_minute
    tpm = None if images else limits.tokens_per_minute
    key = BucketKey(settings.base_url, settings.organization, "images" if images else "requests")
    return QuantClient(
        settings,
        timeouts=Timeouts(embeddings=api.embeddings_timeout, image_generation=api.image_timeout),
        retry=RetryPolicy(max_attempts=api.max_attempts, max_elapsed=api.max_retry_seconds),
        pool_size=pool_size,
        rate_limiter=shared_limiter(key, rpm, tpm),
    )
