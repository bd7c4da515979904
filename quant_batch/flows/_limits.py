"""A rate limit shared by every process that talks to one Prefect server.

The in-process token bucket (``quant_batch.ratelimit``) already paces every thread of a
process; with several processes (Dask workers, Prefect workers, concurrent runs) they must also
draw from one account-wide budget. A Prefect global rate limit (a concurrency limit with slot
decay) is that budget; the local bucket stays in front of it for smooth pacing and AIMD.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from quant_batch.client import QuantClient
from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.client.ratelimit import NullRateLimiter, RateLimiter


class PrefectRateLimit:
    """Acquire one slot of the named Prefect rate limit per API attempt, then the local limiter."""

    def __init__(self, name: str, inner: RateLimiter | None = None):
        self.name = name
        self.inner = inner or NullRateLimiter()

    def acquire(self, tokens: int = 0) -> None:
        from prefect.concurrency.sync import rate_limit

        # strict: a missing limit must fail loudly, not silently skip the budget
        rate_limit(self.name, occupy=1, strict=True)
        self.inner.acquire(tokens)

    def on_throttle(self) -> None:
        self.inner.on_throttle()

    def on_success(self) -> None:
        self.inner.on_success()


def ensure_rate_limit(name: str, requests_per_minute: float) -> None:
    """Create or update the Prefect global rate limit ``name`` (idempotent)."""
    from prefect.client.orchestration import get_client

    per_second = requests_per_minute / 60.0
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(
            name, limit=max(1, math.ceil(per_second)), slot_decay_per_second=per_second
        )


def share_limit(client: QuantClient, name: str | None) -> QuantClient:
    """Put ``client`` behind the Prefect rate limit ``name`` (no-op when ``name`` is None)."""
    if name:
        client.rate_limiter = PrefectRateLimit(name, client.rate_limiter)
    return client


@contextmanager
def flow_client(api: ApiConfig, limits: RateLimits, *, pool_size: int, images: bool = False) -> Iterator[QuantClient]:
    """A client for a flow: the process-wide bucket, plus the Prefect limit when one is named."""
    rate = limits.images_per_minute if images else limits.requests_per_minute
    if limits.prefect_limit and rate:
        ensure_rate_limit(limits.prefect_limit, rate)
    with build_client(api, limits, pool_size=pool_size, images=images) as client:
        yield share_limit(client, limits.prefect_limit)


def submit_shards(task: Any, run: Any, absorb: Callable[[Any], None], *, images: bool = False) -> None:
    """Send a render or enrich run's shards as tasks, with one flow client, the run's context,
    prices and budget; a halted budget (refused token, unreachable service) stops submitting."""
    from quant_batch.flows._common import submit_windowed

    cfg = run.config
    with flow_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency, images=images) as client:
        submit_windowed(
            task,
            run.shards(),
            cfg.concurrency,
            absorb,
            may_submit=lambda _: not run.budget.halted,
            client=client,
            ctx=run.context,
            prices=run.prices,
            budget=run.budget,
        )
