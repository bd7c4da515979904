"""The retry policy: the one and only retry layer of quant-batch.

``build_retrying`` turns a ``RetryPolicy`` into a tenacity ``Retrying`` made of small parts:
retry on ``TransientError`` (decided by type, never by parsing text), stop after N attempts or
before the next sleep would overrun the per-call budget, and wait what the server asked for in
``Retry-After`` or else exponential backoff with full jitter. The HTTP adapter underneath runs
with ``max_retries=0`` so requests/urllib3 never retry on their own.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity.wait import wait_base

from quant_batch.errors import RateLimited, TransientError

log = logging.getLogger("quant_batch.client")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one API call is retried."""

    max_attempts: int = 8
    """Attempts per call, the first one included."""
    max_elapsed: float = 900.0
    """Seconds per call: no retry starts if its wait would end past this budget."""
    backoff_initial: float = 0.5
    """First backoff in seconds; doubles on each retry."""
    backoff_max: float = 60.0
    """Upper bound of one backoff wait."""
    jitter: float = 1.0
    """Fraction of the backoff drawn at random: 1.0 is full jitter, 0.0 none."""
    respect_retry_after: bool = True
    """Wait exactly what a 429's ``Retry-After`` says, when it says anything."""
    retry_after_cap: float = 120.0
    """Never wait longer than this on a server's say-so."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")


class wait_retry_after_or_backoff(wait_base):
    """Wait ``Retry-After`` (capped) when the error carries one, else backoff with jitter."""

    def __init__(self, policy: RetryPolicy, rand: Callable[[], float] = random.random):
        self.policy = policy
        self.rand = rand

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = getattr(exc, "retry_after", None) if isinstance(exc, RateLimited) else None
        if self.policy.respect_retry_after and hinted is not None:
            return max(0.0, min(float(hinted), self.policy.retry_after_cap))
        return self.backoff(retry_state.attempt_number)

    def backoff(self, attempt_number: int) -> float:
        p = self.policy
        try:
            base = min(p.backoff_max, p.backoff_initial * 2.0 ** (attempt_number - 1))
        except OverflowError:
            base = p.backoff_max
        return base * (1.0 - p.jitter * self.rand())


def _log_before_sleep(retry_state: RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    log.debug(
        "%s: attempt %d failed (%s, status %s), retrying in %.2fs",
        getattr(exc, "endpoint", None) or "call",
        retry_state.attempt_number,
        type(exc).__name__,
        getattr(exc, "status", None),
        retry_state.upcoming_sleep,
    )


def build_retrying(policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """The ``Retrying`` object every client call runs under.

    Args:
        policy: limits and backoff shape.
        sleep: how to wait; tests pass ``list.append`` to record waits without waiting.
    """
    return Retrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_elapsed),
        retry=retry_if_exception_type(TransientError),
        wait=wait_retry_after_or_backoff(policy),
        sleep=sleep,
        before_sleep=_log_before_sleep,
        reraise=True,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:  # no zone: not a valid HTTP-date
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
