"""The corpus-embedding run config: sources, chunking, model, batching, limits, runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.config_files import _Strict, parse_config, read_yaml
from quant_batch.corpus.chunking import ChunkSettings
from quant_batch.corpus.readers import SUPPORTED_SUFFIXES, TABLE_SUFFIXES
from quant_batch.corpus.sources import Source, check_sources
from quant_batch.errors import ConfigError
from quant_batch.store.location import Location
from quant_batch.store.storage_config import StorageConfig

EMBED_MODELS = {"amazon.titan-embed-text-v2:0": (256, 512, 1024, 8192), "amazon.titan-embed-text-v1:0": (1536,)}


CONTEXT_TEMPLATE = """<document>
{{ document }}
</document>
Write one or two sentences that situate a passage of this document ({{ source_path }}) within the
whole, to improve search retrieval of the passage. Answer with only those sentences."""


class ContextualChunks(_Strict):
    """One chat call per changed document writes a short context prepended to each of its chunks before embedding."""

    enabled: bool = Field(
        default=False, description="Write and prepend a context per changed document; off by default."
    )
    model: str = Field(default="amazon.nova-lite-v1:0", description="Chat model that writes the context.")
    template: str = Field(
        default=CONTEXT_TEMPLATE,
        min_length=1,
        description="Jinja2 prompt (sandboxed) with variables document, doc_id, source_path; default asks for 1-2 sentences.",
    )
    max_tokens: int = Field(default=120, ge=1, le=2048, description="Output tokens per context answer, 1-2048.")

    def fingerprint(self) -> str:
        """Part of the chunker fingerprint: empty when disabled, so plain keys stay as they were."""
        if not self.enabled:
            return ""
        from quant_batch.hashing import canonical_json, sha256_hex

        return "+ctx:" + sha256_hex(canonical_json([self.model, self.template, self.max_tokens]))[:12]


class CorpusConfig(_Strict):
    """Everything one corpus-embedding run needs."""

    sources: tuple[Source, ...] = Field(
        min_length=1,
        description="Folders ({path, include, exclude}) and tables ({table, id_column, text_column}) to read.",
    )
    out: Location = Field(
        default=Path("data/index"),
        description="Output folder or bucket URI (s3://bucket/prefix): Parquet parts, state, run summaries.",
    )
    storage: StorageConfig | None = Field(
        default=None, description="Bucket endpoint/region/profile and catalog cache folder; default: the AWS_* chain."
    )
    chunking: ChunkSettings = Field(default=ChunkSettings(), description="How documents are cut into chunks.")
    model: str = Field(
        default="amazon.titan-embed-text-v2:0",
        description="Embedding model: amazon.titan-embed-text-v2:0 or amazon.titan-embed-text-v1:0.",
    )
    dimensions: int = Field(default=1024, description="Vector length: 256, 512, 1024 or 8192 for v2; 1536 for v1.")
    normalize: bool = Field(
        default=True, description="Ask the API for unit-length vectors (checked by the quality gate)."
    )
    batch_size: int = Field(default=100, ge=1, le=100, description="Texts per API request, 1-100 (the API's maximum).")
    max_batch_chars: int = Field(
        default=2_000_000,
        ge=50_000,
        description="Characters in one request at most; keeps it well under the 25 MB payload limit.",
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="API requests in flight at once, 1-256.")
    max_cost: float | None = Field(default=None, ge=0, description="Spend cap in USD for one run; null means no cap.")
    rate_limits: RateLimits = Field(default=RateLimits(), description="Account rate limits; unset means unlimited.")
    api: ApiConfig = Field(default=ApiConfig(), description="Timeouts, retries and where the API key comes from.")
    pricing: Path | None = Field(
        default=None, description="YAML price table replacing the bundled one (quant_batch/data/pricing.yaml)."
    )
    contextual_chunks: ContextualChunks = Field(
        default=ContextualChunks(), description="Prepend an LLM-written context to each chunk; off by default."
    )
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="Where shards run under Prefect: threads in the flow process, or Dask."
    )
    dask_workers: int = Field(default=2, ge=1, description="Processes of the Dask LocalCluster (task_runner: dask).")
    dask_address: str | None = Field(
        default=None, description="Address of an existing Dask scheduler; null starts a LocalCluster."
    )

    @model_validator(mode="after")
    def _model_dimensions(self) -> CorpusConfig:
        allowed = EMBED_MODELS.get(self.model)
        if allowed is None:
            raise ValueError(f"model must be one of {sorted(EMBED_MODELS)}")
        if self.dimensions not in allowed:
            raise ValueError(f"dimensions for {self.model} must be one of {list(allowed)}")
        check_sources(self.sources)
        if (
            self.task_runner == "dask"
            and self.dask_address
            and isinstance(self.out, Path)
            and not self.out.is_absolute()
        ):
            raise ValueError(
                f"out: {self.out} is relative, and the workers of the Dask cluster at {self.dask_address} would each "
                "write into their own working folder: use a bucket (s3://bucket/prefix) or an absolute path every "
                "worker shares"
            )
        return self


def load_corpus_config(path: Path, **overrides: Any) -> CorpusConfig:
    """Load a corpus run config; keyword overrides (e.g. from CLI flags) win when not None.

    Relative paths in the file are relative to the directory the command runs in, like
    every other path a user types; the config's own folder is not used as a base.
    """
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(CorpusConfig, data, source=str(path))


def resolve_corpus_config(
    target: str | Path, *, id_column: str | None = None, text_column: str | None = None, **overrides: Any
) -> CorpusConfig:
    """A YAML run config, a folder of documents, a table (.parquet/.csv/.jsonl) or one document file.

    A table is embedded row by row (``id_column`` / ``text_column``, default ``id`` / ``text``); a
    missing column raises :class:`InputError` naming the columns found, before anything runs.
    """
    target = Path(target)
    suffix = target.suffix.lower()
    if (id_column or text_column) and suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"{target}: --id-column/--text-column apply only to a table target (.parquet/.csv/.jsonl)")
    source: dict[str, Any] | None = None
    if target.is_dir():
        source = {"path": str(target)}
    elif target.is_file() and suffix in TABLE_SUFFIXES:
        source = {"table": str(target), "id_column": id_column or "id", "text_column": text_column or "text"}
        _check_columns(target, source["id_column"], source["text_column"])
    elif target.is_file() and suffix in SUPPORTED_SUFFIXES:
        source = {"path": str(target)}  # one document: doc_id is its file name
    if source is None:
        return load_corpus_config(target, **overrides)
    data: dict[str, Any] = {"sources": [source]}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(CorpusConfig, data, source=str(target))


def _check_columns(table: Path, id_column: str, text_column: str) -> None:
    """Fail before the run when the table lacks a column (the reader checks before its first row)."""
    from quant_batch.corpus.readers import iter_table

    next(iter_table(table, id_column=id_column, text_column=text_column), None)
