"""Fault configuration, fault decisions and request statistics for the emulator.

``FaultConfig`` is settable from Python (``EmulatorServer(faults=...)``), CLI flags and at run
time over HTTP (``POST /_emulator/faults``; the body replaces the whole config). Every fault is
off by default.

Each request to an API endpoint draws one number from the seeded RNG and walks the cumulative
rates in this order: throttle, error_500, error_503, drop, hang. With a fixed ``seed`` and
sequential requests the sequence of faults is therefore reproducible.

The rate limit (``rate_limit_rps``) is a sliding one-second window: a request is admitted only
if fewer than ``rate_limit_rps`` requests were admitted in the preceding second, so no 1-second
window ever holds more than that many admitted requests. Rates below 1 use a window of
``1 / rps`` seconds holding one request.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENDPOINTS = ("embeddings", "image-generation", "chat", "chat-stream")
MAX_EVENTS = 200_000


class FaultConfig(BaseModel):
    """What the emulator should get wrong, and how often."""

    model_config = ConfigDict(extra="forbid")

    latency: dict[str, float] = Field(default_factory=dict, description="Seconds added per endpoint name.")
    jitter: float = Field(0.0, ge=0, description="Up to this many extra seconds, uniformly random.")
    rate_limit_rps: float | None = Field(None, gt=0, description="Admitted requests per second; 429 above.")
    retry_after: bool = Field(True, description="Send Retry-After on 429 (real Bedrock does not).")
    throttle_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered 429.")
    error_500_rate: float = Field(0.0, ge=0, le=1, description="Share answered 500 InternalServerException.")
    error_503_rate: float = Field(0.0, ge=0, le=1, description="Share answered 503 ServiceUnavailableException.")
    drop_rate: float = Field(0.0, ge=0, le=1, description="Share whose connection is cut mid-response.")
    hang_rate: float = Field(0.0, ge=0, le=1, description="Share that sleep hang_seconds before answering.")
    hang_seconds: float = Field(30.0, ge=0, description="How long a hanging request sleeps.")
    seed: int | None = Field(None, description="Seed of the fault RNG; None: a fresh random seed.")
    endpoints: list[str] | None = Field(None, description="Limit random faults and rate limit to these.")
    poison_marker: str = Field("__POISON__", description="An embeddings text containing it is rejected (400).")
    moderation_marker: str = Field("__BLOCKED__", description="An image prompt containing it is blocked (400).")
    partial_block_marker: str = Field("__PARTIAL_BLOCK__", description="Image prompt: 200 with fewer images.")
    bad_image_marker: str = Field("__BAD_IMAGE__", description="Image prompt: 200 whose images are cut-off PNGs.")
    bad_vector_marker: str = Field("__NAN__", description="That text's vector comes back all NaN.")
    invalid_json_rate: float = Field(0.0, ge=0, le=1, description="Chat JSON-mode answers that are not JSON.")
    length_rate: float = Field(0.0, ge=0, le=1, description="Chat answers cut short, finishReason 'length'.")

    @field_validator("latency")
    @classmethod
    def _known_latency_endpoints(cls, value: dict[str, float]) -> dict[str, float]:
        _check_endpoints(value)
        if any(v < 0 for v in value.values()):
            raise ValueError("latency must not be negative")
        return value

    @field_validator("endpoints")
    @classmethod
    def _known_endpoints(cls, value: list[str] | None) -> list[str] | None:
        _check_endpoints(value or [])
        return value


def _check_endpoints(names) -> None:
    unknown = sorted(set(names) - set(ENDPOINTS))
    if unknown:
        raise ValueError(f"unknown endpoint name(s) {unknown}; use {', '.join(ENDPOINTS)}")


@dataclass(frozen=True)
class Decision:
    """What to do with one request: ``fault`` is None, or a fault name."""

    fault: str | None = None
    retry_after: float | None = None


class _SlidingWindow:
    """Admits at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, rps: float):
        self.window = max(1.0, 1.0 / rps)
        self.limit = max(1, math.floor(rps * self.window + 1e-9))
        self.admitted: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """None if admitted, else the seconds until a slot frees up."""
        while self.admitted and self.admitted[0] <= now - self.window:
            self.admitted.popleft()
        if len(self.admitted) < self.limit:
            self.admitted.append(now)
            return None
        return self.admitted[0] + self.window - now


class FaultInjector:
    """Holds the current FaultConfig and makes the per-request decisions (thread-safe)."""

    def __init__(self, config: FaultConfig | None = None):
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**63)
            self._rng = random.Random(seed)
            self._jitter_rng = random.Random(seed + 1)
            self._chat_rng = random.Random(seed + 2)
            self._limiter = _SlidingWindow(config.rate_limit_rps) if config.rate_limit_rps else None

    def _applies(self, endpoint: str) -> bool:
        return self.config.endpoints is None or endpoint in self.config.endpoints

    def decide(self, endpoint: str, now: float | None = None) -> Decision:
        """Rate limit first, then one RNG draw against the cumulative fault rates."""
        with self._lock:
            cfg = self.config
            if not self._applies(endpoint):
                return Decision()
            if self._limiter is not None:
                wait = self._limiter.admit(time.monotonic() if now is None else now)
                if wait is not None:
                    return Decision("rate_limited", retry_after=wait)
            draw = self._rng.random()
        edge = 0.0
        for name, rate in (
            ("throttle", cfg.throttle_rate),
            ("error_500", cfg.error_500_rate),
            ("error_503", cfg.error_503_rate),
            ("drop", cfg.drop_rate),
            ("hang", cfg.hang_rate),
        ):
            edge += rate
            if draw < edge:
                return Decision(name, retry_after=1.0 if name == "throttle" else None)
        return Decision()

    def delay(self, endpoint: str) -> float:
        """Seconds of simulated latency for one request to ``endpoint``."""
        with self._lock:
            extra = self._jitter_rng.uniform(0, self.config.jitter) if self.config.jitter else 0.0
        return max(0.0, self.config.latency.get(endpoint, 0.0) + extra)

    def chat_fault(self) -> str | None:
        """'invalid_json', 'length' or None for one chat answer."""
        cfg = self.config
        if not (cfg.invalid_json_rate or cfg.length_rate):
            return None
        with self._lock:
            draw = self._chat_rng.random()
        if draw < cfg.invalid_json_rate:
            return "invalid_json"
        return "length" if draw < cfg.invalid_json_rate + cfg.length_rate else None


class Stats:
    """Request counters the tests read back through ``GET /_emulator/stats`` (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total_requests = 0
            self.texts_embedded = 0
            self.images_generated = 0
            self.by_endpoint: dict[str, dict[str, int]] = {}
            self.by_status: dict[str, int] = {}
            self.faults: dict[str, int] = {}
            self.events: deque[dict] = deque(maxlen=MAX_EVENTS)

    def record(
        self, endpoint: str, status: int, t: float, *, fault: str | None = None, texts: int = 0, images: int = 0
    ) -> None:
        """Count one finished request; ``t`` is its arrival time (unix seconds)."""
        key = str(status)
        with self._lock:
            self.total_requests += 1
            self.texts_embedded += texts
            self.images_generated += images
            per = self.by_endpoint.setdefault(endpoint, {})
            per[key] = per.get(key, 0) + 1
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1
            event = {"t": t, "endpoint": endpoint, "status": status}
            if fault:
                event["fault"] = fault
            self.events.append(event)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "texts_embedded": self.texts_embedded,
                "images_generated": self.images_generated,
                "by_endpoint": {k: dict(v) for k, v in self.by_endpoint.items()},
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "events": list(self.events),
            }
