"""The corpus-embedding run config: sources, chunking, model, batching, limits, runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.config_files import _Strict, parse_config, read_yaml
from quant_batch.corpus.chunking import ChunkSettings
from quant_batch.corpus.sources import Source, check_sources

EMBED_MODELS = {"amazon.titan-embed-text-v2:0": (256, 512, 1024, 8192), "amazon.titan-embed-text-v1:0": (1536,)}


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
        check_sources(self.sources)
        return self


def load_corpus_config(path: Path, **overrides: Any) -> CorpusConfig:
    """Load a corpus run config; keyword overrides (e.g. from CLI flags) win when not None.

    Relative paths in the file are relative to the directory the command runs in, like
    every other path a user types; the config's own folder is not used as a base.
    """
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(CorpusConfig, data, source=str(path))


def resolve_corpus_config(target: str | Path, **overrides: Any) -> CorpusConfig:
    """A YAML run config, or a folder of documents to index with default settings."""
    target = Path(target)
    if target.is_dir():
        data: dict[str, Any] = {"sources": [{"path": str(target)}]}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return parse_config(CorpusConfig, data, source=str(target))
    return load_corpus_config(target, **overrides)
