"""The image-rendering run config: manifest, defaults for its rows, concurrency, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.config_files import _Strict, load_yaml, parse_config, read_yaml
from quant_batch.render.manifest import RenderDefaults


class RenderConfig(_Strict):
    """Everything one image-rendering run needs."""

    manifest: Path
    out: Path = Path("data/renders")
    defaults: RenderDefaults = RenderDefaults()
    """Values for every row that the row (or the manifest's own defaults) does not give."""
    concurrency: int = Field(default=4, ge=1, le=64)
    skip_invalid: bool = False
    """Render the valid rows of a manifest with problems (invalid rows go to the errors table)."""
    embed_images: bool = False
    """Also store the PNG bytes in the Parquet parts (off: parts hold paths and hashes)."""
    max_cost: float | None = Field(default=None, ge=0)
    rate_limits: RateLimits = RateLimits()
    api: ApiConfig = ApiConfig()
    pricing: Path | None = None


def load_render_config(path: Path | None, **overrides: Any) -> RenderConfig:
    """Load a render config from YAML (or only from ``overrides`` when ``path`` is None)."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(RenderConfig, data, source=str(path or "command line"))


def resolve_render_config(target: str | Path, **overrides: Any) -> RenderConfig:
    """A YAML run config (with ``manifest:``), or a manifest file (.jsonl / .csv / .yaml rows)."""
    target = Path(target)
    if target.suffix.lower() in (".yaml", ".yml") and target.is_file():
        data = load_yaml(target)  # a bare list of rows is a manifest, not a config
        if isinstance(data, dict) and "manifest" in data:
            data.update({k: v for k, v in overrides.items() if v is not None})
            return parse_config(RenderConfig, data, source=str(target))
    return load_render_config(None, manifest=str(target), **overrides)
