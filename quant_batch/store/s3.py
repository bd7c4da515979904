"""S3 settings resolved once for both clients: pyarrow reads and lists, boto3 does conditional PUTs.

The endpoint, region and keys are worked out here from the ``storage:`` block and the standard AWS
chain and handed to both, so they can never talk to different servers or as different users.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from pydantic import SecretStr

from quant_batch.errors import ConfigError
from quant_batch.store.storage_config import StorageConfig, redact

CREDENTIALS_HINT = "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE or the storage: block"
_BOTO_AUTH_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "NoCredentialsError")


def boto_message(exc: Exception, operation: str, where: str, config: StorageConfig) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = error.get("Code") or type(exc).__name__
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    hint = CREDENTIALS_HINT if code in _BOTO_AUTH_CODES or status == 403 else ""
    detail = f"{code} ({status})" if status else code
    if not error:  # connection errors carry the endpoint in their text, no credentials
        detail = f"{code}: {exc}"
    return redact(f"cannot {operation} {where}: {detail}{hint}", config)


def endpoint(config: StorageConfig) -> str | None:
    return config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _boto3_session(config: StorageConfig) -> Any:
    import boto3

    def reveal(s: SecretStr | None) -> str | None:
        return s.get_secret_value() if s else None

    return boto3.session.Session(
        profile_name=config.profile,
        aws_access_key_id=reveal(config.access_key_id),
        aws_secret_access_key=reveal(config.secret_access_key),
        aws_session_token=reveal(config.session_token),
        region_name=config.region,
    )


def boto3_client(config: StorageConfig, region: str | None) -> Any:
    """The client for conditional PUTs, in the ``region`` pyarrow resolved for the bucket."""
    from botocore.config import Config

    url = endpoint(config)
    # path-style with a custom endpoint, as pyarrow does: http://minio:9000/bucket, not bucket.minio
    s3_options = {"addressing_style": "path"} if url else {}
    retries = {"mode": "standard", "max_attempts": config.request_attempts}
    return _boto3_session(config).client(
        "s3", endpoint_url=url, region_name=region, config=Config(s3=s3_options, retries=retries)
    )


def _region(config: StorageConfig, bucket: str | None) -> str | None:
    region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    if config.profile:
        region = _boto3_session(config).region_name
    if region or endpoint(config):
        return region or "us-east-1"  # S3-compatible servers accept any region; SigV4 needs one
    return pafs.resolve_s3_region(bucket) if bucket else None


def s3_filesystem(config: StorageConfig, bucket: str) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {"region": _region(config, bucket)}
    url = endpoint(config)
    if url:
        # set explicitly: pyarrow's own AWS_ENDPOINT_URL support depends on its version
        parts = urlsplit(url if "://" in url else f"https://{url}")
        kwargs.update(endpoint_override=parts.netloc + parts.path.rstrip("/"), scheme=parts.scheme)
    if config.profile or config.access_key_id:
        # pyarrow has no profile option: resolve the profile once with botocore and hand the keys over
        creds = _boto3_session(config).get_credentials()
        if creds is None:
            raise ConfigError(f"no AWS credentials found for profile {config.profile!r} (storage.profile)")
        frozen = creds.get_frozen_credentials()
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    return pafs.S3FileSystem(**kwargs)
