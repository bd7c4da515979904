"""Credentials and endpoint for the QuantCDN AI Inference API.

Values come from explicit arguments first, then a Prefect ``Secret`` block (key only), then the
environment (``QUANT_API_KEY``, ``QUANT_ORGANIZATION``, ``QUANT_BASE_URL``). The key is held as a
``SecretStr`` so ``repr``/``str`` of the settings never show it.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from quant_batch.errors import ConfigError

DEFAULT_BASE_URL = "https://dashboard.quantcdn.io"

# field name -> (environment variable, what to set it to) for "is not set" messages: they name
# what a CLI user can set (the CLI has no flags for credentials)
_SOURCES = {
    "api_key": (
        "QUANT_API_KEY",
        "export QUANT_API_KEY=<your API token>, or name a Prefect Secret block "
        "holding it in the run config's api.secret_block",
    ),
    "organization": ("QUANT_ORGANIZATION", "export QUANT_ORGANIZATION=<your organisation id>"),
    "base_url": ("QUANT_BASE_URL", "export QUANT_BASE_URL=https://dashboard.quantcdn.io"),
}


class ApiSettings(BaseSettings):
    """Where and as whom the client talks to the API."""

    model_config = SettingsConfigDict(env_prefix="QUANT_", frozen=True, extra="ignore")

    api_key: SecretStr
    """Bearer token for the API (``QUANT_API_KEY``)."""
    organization: str
    """Organisation id used in every endpoint path (``QUANT_ORGANIZATION``)."""
    base_url: str = DEFAULT_BASE_URL
    """Scheme and host of the API (``QUANT_BASE_URL``)."""

    @field_validator("api_key", "organization")
    @classmethod
    def _not_blank(cls, value: str | SecretStr) -> str | SecretStr:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not raw.strip():
            raise ValueError("is empty")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def from_env(
        cls,
        *,
        api_key: str | SecretStr | None = None,
        organization: str | None = None,
        base_url: str | None = None,
        secret_block: str | None = None,
    ) -> ApiSettings:
        """Build settings; explicit arguments win over the Secret block, which wins over env vars.

        Args:
            api_key: the token itself.
            organization: organisation id.
            base_url: API root, e.g. an emulator's ``http://127.0.0.1:8765``.
            secret_block: name of a Prefect ``Secret`` block holding the token.

        Raises:
            ConfigError: a value is missing or invalid; the message names the variable.
        """
        if api_key is None and secret_block is not None:
            api_key = _load_secret_block(secret_block)
        given: dict[str, Any] = {"api_key": api_key, "organization": organization, "base_url": base_url}
        try:
            return cls(**{k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            raise _config_error(exc) from None  # pydantic's text may echo the input value


def _config_error(exc: ValidationError) -> ConfigError:
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        env, fix = _SOURCES.get(field, (field.upper(), f"export {field.upper()}"))
        if err["type"] == "missing":
            problems.append(f"{env} is not set: {fix}")
        else:
            # err["msg"] only, never err["input"]: it may be the key
            problems.append(f"{env} is invalid: {err['msg']}")
    return ConfigError("; ".join(problems))


def _load_secret_block(name: str) -> str:
    try:
        from prefect.blocks.system import Secret  # only flows need prefect
    except ImportError as exc:
        raise ConfigError(f"secret_block={name!r} needs prefect installed") from exc
    try:
        # get() json-parses strings ("123" -> 123), so coerce back to text
        return str(Secret.load(name).get())
    except Exception as exc:
        raise ConfigError(
            f"Prefect Secret block {name!r} could not be loaded ({type(exc).__name__}: "
            f"{str(exc)[:200]}): create it with Secret(value=...).save(name), or export QUANT_API_KEY instead"
        ) from None
