"""Client for the QuantCDN AI Inference API (embeddings, images, chat).

``QuantClient`` owns one ``requests.Session``; every call retries transient failures in exactly
one layer (tenacity, built from ``RetryPolicy``), paces itself through an optional
``RateLimiter``, and raises only the errors of ``quant_batch.errors``.
"""

from ._client import QuantClient
from ._retry import RetryPolicy, build_retrying, parse_retry_after
from ._types import (
    CallInfo,
    ChatResult,
    EmbeddingResult,
    ImageResult,
    StreamEvent,
    Timeouts,
    Usage,
)

__all__ = [
    "CallInfo",
    "ChatResult",
    "EmbeddingResult",
    "ImageResult",
    "QuantClient",
    "RetryPolicy",
    "StreamEvent",
    "Timeouts",
    "Usage",
    "build_retrying",
    "parse_retry_after",
]
