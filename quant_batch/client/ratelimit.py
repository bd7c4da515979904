"""Client-side pacing of API calls, in one process.

The client calls ``acquire(tokens)`` before every attempt (retries included), ``on_throttle()``
after each 429 and ``on_success()`` after each 2xx. ``AdaptiveRateLimiter`` keeps one token
bucket per dimension (requests, tokens) and adapts the rate AIMD-style, like TCP: halve on a
throttle, creep back up on success. It paces threads of one process only; limits shared across
workers belong to the flows (Prefect global concurrency limits).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    def acquire(self, tokens: int = 0) -> None:
        """Block until one request costing ``tokens`` (estimated) may be sent."""

    def on_throttle(self) -> None:
        """The service answered 429."""

    def on_success(self) -> None:
        """The service answered 2xx."""


class NullRateLimiter:
    """Never waits, never adapts."""

    def acquire(self, tokens: int = 0) -> None:
        pass

    def on_throttle(self) -> None:
        pass

    def on_success(self) -> None:
        pass

    def __repr__(self) -> str:
        return "NullRateLimiter()"


class _Bucket:
    """A token bucket; not locked itself (the limiter holds the lock)."""

    def __init__(self, per_minute: float, capacity: float, now: float):
        self.per_minute = per_minute
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, now: float, fraction: float) -> None:
        rate = self.per_minute * fraction / 60.0
        self.level = min(self.capacity, self.level + max(0.0, now - self.stamp) * rate)
        self.stamp = now

    def wait_for(self, cost: float, fraction: float) -> float:
        """Seconds until ``cost`` may be taken; a cost above capacity waits for a full bucket."""
        need = min(cost, self.capacity)
        if self.level >= need - 1e-9:  # tolerance: float refills land a hair short
            return 0.0
        return (need - self.level) / (self.per_minute * fraction / 60.0)


class AdaptiveRateLimiter:
    """Thread-safe token buckets for requests/min and tokens/min with AIMD adaptation.

    Args:
        requests_per_minute: configured request rate; None for no request limit.
        tokens_per_minute: configured token rate; None for no token limit.
        burst: requests that may leave back-to-back after an idle spell (default: one
            second's worth, at least 1). The token bucket holds one second of tokens; a request
            costing more than that waits for a full bucket and then runs it into debt, so the
            long-run rate still holds.
        min_fraction: the adapted rate never drops below this fraction of the configured one.
        decrease: multiply the rate by this on a throttle (once per ``throttle_window`` seconds,
            so a burst of 429s from concurrent calls counts once).
        increase_per_success: fraction of the configured rate added back per success.
        clock, sleep: injectable for tests.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst: float | None = None,
        min_fraction: float = 0.05,
        decrease: float = 0.5,
        increase_per_success: float = 0.02,
        throttle_window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        for name, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None")
        if not 0 < min_fraction <= 1 or not 0 < decrease < 1:
            raise ValueError("min_fraction must be in (0, 1] and decrease in (0, 1)")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.min_fraction = min_fraction
        self.decrease = decrease
        self.increase_per_success = increase_per_success
        self.throttle_window = throttle_window
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._fraction = 1.0
        self._last_decrease = -math.inf
        now = clock()
        self._requests = None
        if requests_per_minute is not None:
            cap = burst if burst is not None else max(1.0, requests_per_minute / 60.0)
            self._requests = _Bucket(requests_per_minute, cap, now)
        self._tokens = None
        if tokens_per_minute is not None:
            self._tokens = _Bucket(tokens_per_minute, max(1.0, tokens_per_minute / 60.0), now)

    @property
    def effective_rpm(self) -> float:
        """The current adapted request rate (``inf`` when requests are not limited)."""
        return math.inf if self.requests_per_minute is None else self.requests_per_minute * self._fraction

    @property
    def effective_tpm(self) -> float:
        """The current adapted token rate (``inf`` when tokens are not limited)."""
        return math.inf if self.tokens_per_minute is None else self.tokens_per_minute * self._fraction

    def acquire(self, tokens: int = 0) -> None:
        """Block until a request costing ``tokens`` fits both buckets, then take it."""
        while True:
            with self._lock:
                wait = self._try_take(max(0, tokens))
            if wait <= 0:
                return
            # sleep outside the lock; a woken thread re-checks, since others may have taken first
            self._sleep(wait)

    def _try_take(self, tokens: int) -> float:
        now, f = self._clock(), self._fraction
        wanted = [(b, c) for b, c in ((self._requests, 1), (self._tokens, tokens)) if b is not None]
        for bucket, _ in wanted:
            bucket.refill(now, f)
        wait = max((b.wait_for(c, f) for b, c in wanted), default=0.0)
        if wait <= 0:
            for bucket, cost in wanted:
                bucket.level -= cost
        return wait

    def on_throttle(self) -> None:
        """Multiply the rate by ``decrease``, at most once per window, not below the floor."""
        with self._lock:
            now = self._clock()
            if now - self._last_decrease < self.throttle_window:
                return
            self._settle(now)
            self._last_decrease = now
            self._fraction = max(self.min_fraction, self._fraction * self.decrease)

    def on_success(self) -> None:
        """Add ``increase_per_success`` of the configured rate back, up to the configured rate."""
        with self._lock:
            if self._fraction < 1.0:
                self._settle(self._clock())
                self._fraction = min(1.0, self._fraction + self.increase_per_success)

    def _settle(self, now: float) -> None:
        # credit the time so far at the old rate before the rate changes
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.refill(now, self._fraction)

    def __repr__(self) -> str:
        return (
            f"AdaptiveRateLimiter(requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute}, effective_rpm={self.effective_rpm:.1f})"
        )
