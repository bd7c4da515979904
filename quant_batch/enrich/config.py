"""``EnrichConfig``: one batch chat run over the rows of a catalog table or query."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.config_files import _Strict, parse_config, read_yaml

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# columns every enrichment table has; a schema property may not reuse these names
RESERVED_COLUMNS = frozenset(
    {
        "key",
        "template_hash",
        "unit_key",
        "text",
        "raw",
        "truncated",
        "repaired",
        "finish_reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "attempts",
        "request_id",
        "model",
        "run_id",
        "created_at",
    }
)


class SqlSource(_Strict):
    """Rows of a read-only SELECT over the catalog, named by ``key_column``."""

    sql: str = Field(min_length=1, description="One read-only SELECT over the catalog's tables and views.")
    key_column: str = Field(
        min_length=1, description="The column that names a row; results and the ledger are keyed by it."
    )


class EnrichConfig(_Strict):
    """Everything one chat-enrichment run needs."""

    catalog: Path = Field(
        description="Output folder holding catalog.duckdb (e.g. data/index or data/renders); results land there."
    )
    source: Literal["documents", "chunks", "images"] | SqlSource = Field(
        description="Rows to enrich: documents, chunks (live chunks), images (rendered images) or {sql, key_column}."
    )
    template: str = Field(
        min_length=1,
        description="Jinja2 template (sandboxed) of the user message; the row's columns are its variables.",
    )
    name: str | None = Field(
        default=None,
        pattern=TABLE_NAME.pattern,
        description="Short name of this enrichment; the table is enrich_<name> (default: the source kind).",
    )
    out: str | None = Field(
        default=None, pattern=TABLE_NAME.pattern, description="DuckDB table for the results; default enrich_<name>."
    )
    system_prompt: str | None = Field(default=None, description="System prompt sent with every row; null sends none.")
    model: str = Field(default="amazon.nova-lite-v1:0", description="Chat model id.")
    temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature, 0-2; 0 is the most repeatable."
    )
    max_tokens: int = Field(
        default=512, ge=1, le=8192, description="Output tokens per answer, 1-8192; a longer answer is truncated."
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON schema of an object answer: its properties become typed columns; null stores text.",
    )
    image_column: str | None = Field(
        default=None,
        description="Column with an image (path relative to catalog, or bytes) sent before the text; images: path.",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Chat requests in flight at once, 1-64.")
    max_cost: float | None = Field(default=None, ge=0, description="Spend cap in USD for one run; null means no cap.")
    rate_limits: RateLimits = Field(
        default=RateLimits(), description="Account rate limits (requests and tokens per minute apply)."
    )
    api: ApiConfig = Field(default=ApiConfig(), description="Timeouts, retries and where the API key comes from.")
    pricing: Path | None = Field(
        default=None, description="YAML price table replacing the bundled one (quant_batch/data/pricing.yaml)."
    )

    @field_validator("catalog")
    @classmethod
    def _has_catalog(cls, value: Path) -> Path:
        if not (value / "catalog.duckdb").is_file():
            raise ValueError(f"no catalog.duckdb in {value}; run quant-batch embed or render there first")
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_schema(value)
        return value

    @property
    def source_kind(self) -> str:
        return self.source if isinstance(self.source, str) else "query"

    @property
    def table(self) -> str:
        return self.out or f"enrich_{self.name or self.source_kind}"

    @property
    def image_field(self) -> str | None:
        return self.image_column or ("path" if self.source == "images" else None)


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, dict) or not props:
        raise ValueError('must describe an object: {"type": "object", "properties": {...}}')
    for name in props:
        if not FIELD_NAME.match(name):
            raise ValueError(f"property {name!r}: use letters, digits and _ (it becomes a column name)")
        if name.lower() in RESERVED_COLUMNS:
            raise ValueError(f"property {name!r} clashes with a column every enrichment table has; rename it")


def load_enrich_config(path: Path, **overrides: Any) -> EnrichConfig:
    """Load an enrichment config; keyword overrides (CLI flags) win when not None."""
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(EnrichConfig, data, source=str(path))


def is_enrich_config(path: Path) -> bool:
    """A YAML mapping with a ``template`` key is an enrichment config."""
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = read_yaml(path)
    except Exception:  # noqa: BLE001 - the real loader reports YAML problems with file and line
        return False
    return "template" in data
