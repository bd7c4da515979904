"""What a run says about the API: where credentials come from, timeouts, retries, rate limits."""

from __future__ import annotations

from pydantic import Field

from quant_batch.config_files import _Strict


class RateLimits(_Strict):
    """Account limits shared by every worker of a run (None = unlimited)."""

    requests_per_minute: float | None = Field(
        default=None, gt=0, description="Embedding and chat requests per minute; null means unlimited."
    )
    tokens_per_minute: float | None = Field(
        default=None, gt=0, description="Input tokens per minute for embeddings and chat; null means unlimited."
    )
    images_per_minute: float | None = Field(
        default=None, gt=0, description="Image-generation requests per minute; null means unlimited."
    )
    prefect_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global rate limit shared across processes; null uses only the in-process bucket.",
    )


class ApiConfig(_Strict):
    """Where credentials come from; never the credentials themselves."""

    secret_block: str | None = Field(
        default=None, description="Prefect Secret block holding the API key; null reads QUANT_API_KEY."
    )
    embeddings_timeout: float = Field(
        default=60.0, gt=0, description="Read timeout in seconds for one embeddings request."
    )
    image_timeout: float = Field(
        default=300.0, gt=0, description="Read timeout in seconds for one image request (the service allows 5 minutes)."
    )
    max_attempts: int = Field(default=8, ge=1, description="Attempts per request, first try included (1 = no retry).")
    max_retry_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Give up retrying once the next wait would end this many seconds after the first attempt.",
    )
