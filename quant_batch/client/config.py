"""What a run says about the API: where credentials come from, timeouts, retries, rate limits."""

from __future__ import annotations

from pydantic import Field

from quant_batch.config_files import _Strict


class RateLimits(_Strict):
    """Account limits shared by every worker of a run (None = unlimited)."""

    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    images_per_minute: float | None = Field(default=None, gt=0)
    prefect_limit: str | None = None
    """Name of a Prefect global rate limit to use when a Prefect server is present."""


class ApiConfig(_Strict):
    """Where credentials come from; never the credentials themselves."""

    secret_block: str | None = None
    """Prefect Secret block holding the API key (else QUANT_API_KEY)."""
    embeddings_timeout: float = Field(default=60.0, gt=0)
    image_timeout: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    max_retry_seconds: float = Field(default=900.0, gt=0)
