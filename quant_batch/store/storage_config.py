"""The optional ``storage:`` block of a run config, and the one rule that keeps credentials out of text."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from quant_batch.config_files import _Strict

_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


class StorageConfig(_Strict):
    """The optional ``storage:`` block of a run config; every field overrides the AWS chain."""

    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000; default AWS_ENDPOINT_URL."
    )
    region: str | None = Field(
        default=None, description="Bucket region; default AWS_REGION, the profile's, or asked from the bucket."
    )
    profile: str | None = Field(default=None, description="Named profile in the shared AWS files; default AWS_PROFILE.")
    access_key_id: SecretStr | None = Field(
        default=None, description="Python API only; committed configs hold no secrets (use the environment)."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="Python API only, with access_key_id.")
    session_token: SecretStr | None = Field(
        default=None, description="Temporary credentials' token, with the two keys above (Python API only)."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Local folder for a bucket output's working copy and catalog; default $XDG_CACHE_HOME/quant-batch.",
    )
    request_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts per storage request (boto3 standard retries), 1-20."
    )

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> StorageConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("storage.access_key_id and storage.secret_access_key go together")
        return self


def redact(text: str, config: StorageConfig) -> str:
    """Defence in depth: no message we build may carry a credential, even one a server echoed."""
    secrets = [os.environ.get(v, "") for v in _SECRET_VARS]
    secrets += [
        s.get_secret_value() for s in (config.access_key_id, config.secret_access_key, config.session_token) if s
    ]
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
