"""Timeouts and the typed results the client returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Timeouts:
    """Seconds; every request is sent with ``(connect, <endpoint>)`` as its (connect, read) timeout."""

    connect: float = 10.0
    """TCP connect (and TLS handshake) limit."""
    embeddings: float = 60.0
    """Read timeout for embeddings."""
    image_generation: float = 300.0
    """Read timeout for images: "Image generation can take up to 5 minutes" (AIInferenceApi.md)."""
    chat: float = 120.0
    """Read timeout for chat; for streams it bounds the gap between two chunks."""


@dataclass(frozen=True)
class Usage:
    """Token counts the service reported."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_body(cls, body: Any) -> Usage:
        """Read ``{"inputTokens", "outputTokens", "totalTokens"}``; missing or odd values count 0."""
        if not isinstance(body, dict):
            return cls()
        ins, outs = _int(body.get("inputTokens")), _int(body.get("outputTokens"))
        total = _int(body.get("totalTokens")) or ins + outs
        return cls(ins, outs, total)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class CallInfo:
    """How one client call went, retries included."""

    attempts: int
    latency_s: float
    throttled: int
    """429 answers seen during this call."""
    request_id: str | None


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a batch of texts, in input order."""

    vectors: np.ndarray = field(repr=False)
    """float32, shape (n, dimension), C-contiguous."""
    model: str
    dimension: int
    usage: Usage
    info: CallInfo


@dataclass(frozen=True)
class ImageResult:
    """Decoded images; fewer than requested when moderation blocked some."""

    images: list[bytes] = field(repr=False)
    error: str | None
    """The service's partial-moderation message, if any."""
    mask_image: bytes | None = field(repr=False)
    info: CallInfo


@dataclass(frozen=True)
class ChatResult:
    """A buffered chat answer."""

    text: str
    finish_reason: str | None
    model: str | None
    request_id: str | None
    usage: Usage
    tool_use: Any
    info: CallInfo


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed chat: a text delta, or the final event."""

    kind: Literal["delta", "done"]
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
