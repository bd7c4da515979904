"""The one token estimate: budgets, rate limits, plans and the emulator all count the same way.

Titan Text Embeddings v2 averages about 4.7 characters per token on English (AWS's figure, on
https://docs.aws.amazon.com/bedrock/latest/userguide/titan-embedding-models.html); the service's own count, when an answer reports it, always
wins over this estimate.
"""

from __future__ import annotations

from collections.abc import Iterable

CHARS_PER_TOKEN = 4.7


def estimate_tokens(chars: int) -> int:
    """Tokens for ``chars`` characters of text: at least 1."""
    return max(1, round(chars / CHARS_PER_TOKEN))


def estimate_text_tokens(texts: Iterable[str]) -> int:
    """Tokens for a batch of texts."""
    return estimate_tokens(sum(len(t) for t in texts))
