"""Run configuration: YAML files validated by pydantic, errors that name the file and key.

Committed configs hold no secrets. Credentials come from the environment
(``QUANT_API_KEY``, ``QUANT_ORGANIZATION``, ``QUANT_BASE_URL``) or a Prefect Secret block named in
``api.secret_block``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from quant_batch.corpus.chunking import ChunkSettings
from quant_batch.errors import ConfigError
from quant_batch.render.manifest import RenderDefaults

EMBED_MODELS = {"amazon.titan-embed-text-v2:0": (256, 512, 1024, 8192), "amazon.titan-embed-text-v1:0": (1536,)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FolderSource(_Strict):
    """A folder of documents (.txt .md .html .pdf .docx)."""

    path: Path
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _exists(self) -> FolderSource:
        if not self.path.is_dir():
            raise ValueError(f"folder not found: {self.path}")
        return self


class TableSource(_Strict):
    """A Parquet / CSV / JSONL table with one document per row."""

    table: Path
    id_column: str = "id"
    text_column: str = "text"

    @model_validator(mode="after")
    def _exists(self) -> TableSource:
        if not self.table.is_file():
            raise ValueError(f"table not found: {self.table}")
        return self


def _source_kind(value: Any) -> str:
    data = value if isinstance(value, dict) else vars(value)
    return "table" if "table" in data else "folder"


Source = Annotated[
    Annotated[FolderSource, Tag("folder")] | Annotated[TableSource, Tag("table")], Discriminator(_source_kind)
]


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


CONTEXT_TEMPLATE = """<document>
{{ document }}
</document>
Write one or two sentences that situate a passage of this document ({{ source_path }}) within the
whole, to improve search retrieval of the passage. Answer with only those sentences."""


class ContextualChunks(_Strict):
    """One chat call per changed document writes a short context prepended to each of its chunks before embedding."""

    enabled: bool = False
    model: str = "amazon.nova-lite-v1:0"
    template: str = Field(default=CONTEXT_TEMPLATE, min_length=1)
    """Jinja2 (sandboxed); variables: document, doc_id, source_path."""
    max_tokens: int = Field(default=120, ge=1, le=2048)

    def fingerprint(self) -> str:
        """Part of the chunker fingerprint: empty when disabled, so plain keys stay as they were."""
        if not self.enabled:
            return ""
        from quant_batch.hashing import canonical_json, sha256_hex

        return "+ctx:" + sha256_hex(canonical_json([self.model, self.template, self.max_tokens]))[:12]


class CorpusConfig(_Strict):
    """Everything one corpus-embedding run needs."""

    sources: tuple[Source, ...] = Field(min_length=1)
    out: Path = Path("data/index")
    chunking: ChunkSettings = ChunkSettings()
    model: str = "amazon.titan-embed-text-v2:0"
    dimensions: int = 1024
    normalize: bool = True
    batch_size: int = Field(default=100, ge=1, le=100)
    """Texts per request; the API takes at most 100."""
    max_batch_chars: int = Field(default=2_000_000, ge=50_000)
    """Upper bound on the characters of one request, well under the 25 MB payload limit."""
    concurrency: int = Field(default=8, ge=1, le=256)
    max_cost: float | None = Field(default=None, ge=0)
    """Hard spend cap in USD for one run (None = no cap)."""
    rate_limits: RateLimits = RateLimits()
    api: ApiConfig = ApiConfig()
    pricing: Path | None = None
    """Price table overriding configs/pricing.yaml."""
    contextual_chunks: ContextualChunks = ContextualChunks()
    task_runner: Literal["threads", "dask"] = "threads"
    dask_workers: int = Field(default=2, ge=1)
    dask_address: str | None = None
    """Address of an existing Dask scheduler; None starts a LocalCluster."""

    @model_validator(mode="after")
    def _model_dimensions(self) -> CorpusConfig:
        allowed = EMBED_MODELS.get(self.model)
        if allowed is None:
            raise ValueError(f"model must be one of {sorted(EMBED_MODELS)}")
        if self.dimensions not in allowed:
            raise ValueError(f"dimensions for {self.model} must be one of {list(allowed)}")
        return self


C = TypeVar("C", bound=BaseModel)


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if str(p) not in ("folder", "table") or p == err["loc"][-1])
        lines.append(f"{source}: {key or '(top level)'}: {err['msg']}")
    return "\n".join(dict.fromkeys(lines))


def parse_config(model: type[C], data: dict[str, Any], *, source: str) -> C:
    """Validate ``data``; a failure names ``source`` and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_corpus_config(path: Path, **overrides: Any) -> CorpusConfig:
    """Load a corpus run config; keyword overrides (e.g. from CLI flags) win when not None.

    Relative paths in the file are relative to the directory the command runs in, like
    every other path a user types; the config's own folder is not used as a base.
    """
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(CorpusConfig, data, source=str(path))


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


def resolve_corpus_config(target: str | Path, **overrides: Any) -> CorpusConfig:
    """A YAML run config, or a folder of documents to index with default settings."""
    target = Path(target)
    if target.is_dir():
        data: dict[str, Any] = {"sources": [{"path": str(target)}]}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return parse_config(CorpusConfig, data, source=str(target))
    return load_corpus_config(target, **overrides)


def resolve_render_config(target: str | Path, **overrides: Any) -> RenderConfig:
    """A YAML run config (with ``manifest:``), or a manifest file (.jsonl / .csv / .yaml rows)."""
    target = Path(target)
    if target.suffix.lower() in (".yaml", ".yml") and target.is_file():
        data = read_yaml(target)
        if "manifest" in data:
            data.update({k: v for k, v in overrides.items() if v is not None})
            return parse_config(RenderConfig, data, source=str(target))
    return load_render_config(None, manifest=str(target), **overrides)
