"""The image-rendering run config: manifest, defaults for its rows, concurrency, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.config_files import _Strict, load_yaml, parse_config, read_yaml
from quant_batch.render.fields import RenderDefaults
from quant_batch.store.location import Location, is_uri
from quant_batch.store.storage_config import StorageConfig


class RenderConfig(_Strict):
    """Everything one image-rendering run needs."""

    manifest: Location = Field(
        description="Prompt manifest: .jsonl, .csv or .yaml rows, one image request each; a path or s3://bucket/key."
    )
    out: Location = Field(
        default=Path("data/renders"),
        description="Output folder or bucket URI (s3://bucket/prefix): PNGs, Parquet parts, index.html.",
    )
    storage: StorageConfig | None = Field(
        default=None, description="Bucket endpoint/region/profile and catalog cache folder; default: the AWS_* chain."
    )
    defaults: RenderDefaults = Field(
        default=RenderDefaults(),
        description="Values for every row that the row (or the manifest's own defaults) does not give.",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Image requests in flight at once, 1-64.")
    skip_invalid: bool = Field(
        default=False,
        description="Render the valid rows of a manifest with problems (invalid rows go to errors); off: send nothing.",
    )
    embed_images: bool = Field(
        default=False, description="Also store the PNG bytes in the Parquet parts; off: parts hold paths and hashes."
    )
    max_cost: float | None = Field(default=None, ge=0, description="Spend cap in USD for one run; null means no cap.")
    rate_limits: RateLimits = Field(
        default=RateLimits(), description="Account rate limits (images_per_minute applies)."
    )
    api: ApiConfig = Field(default=ApiConfig(), description="Timeouts, retries and where the API key comes from.")
    pricing: Path | None = Field(
        default=None, description="YAML price table replacing the bundled one (quant_batch/data/pricing.yaml)."
    )


def load_render_config(path: Path | None, **overrides: Any) -> RenderConfig:
    """Load a render config from YAML (or only from ``overrides`` when ``path`` is None)."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(RenderConfig, data, source=str(path or "command line"))


def resolve_render_config(target: str | Path, **overrides: Any) -> RenderConfig:
    """A YAML run config (with ``manifest:``), or a manifest file (.jsonl / .csv / .yaml rows).

    A bucket URI is always a manifest: run configs are local files.
    """
    if is_uri(target):
        return load_render_config(None, manifest=str(target), **overrides)
    target = Path(target)
    if target.suffix.lower() in (".yaml", ".yml") and target.is_file():
        data = load_yaml(target)  # a bare list of rows is a manifest, not a config
        if isinstance(data, dict) and "manifest" in data:
            data.update({k: v for k, v in overrides.items() if v is not None})
            return parse_config(RenderConfig, data, source=str(target))
    return load_render_config(None, manifest=str(target), **overrides)
