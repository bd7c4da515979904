"""Turn usage (tokens, images) into USD with a user-overridable price table."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from quant_batch.errors import ConfigError

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "pricing.yaml"  # package data, ships in the wheel


@dataclass(frozen=True)
class PriceTable:
    """Prices per model; a model missing from the table costs 0 (and so never trips a spend cap)."""

    embeddings: dict[str, float] = field(default_factory=dict)
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chat: dict[str, dict[str, float]] = field(default_factory=dict)
    as_of: str = ""

    def embedding_cost(self, model: str, input_tokens: int) -> float:
        return self.embeddings.get(model, 0.0) * input_tokens / 1_000_000

    def image_cost(self, model: str, width: int, height: int, quality: str, count: int = 1) -> float:
        for tier in self.images.get(model, []):
            if max(width, height) <= tier["max_side"] and width * height <= tier["max_pixels"]:
                return float(tier.get(quality, tier["standard"])) * count
        return 0.0

    def chat_cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        p = self.chat.get(model)
        if not p:
            return 0.0
        return (p["input"] * input_tokens + p["output"] * output_tokens) / 1_000_000


def load_prices(path: Path | None = None) -> PriceTable:
    """Load the price table at ``path`` (default: the bundled ``quant_batch/data/pricing.yaml``)."""
    path = path or DEFAULT_TABLE
    if not path.exists():
        if path == DEFAULT_TABLE:
            return PriceTable()
        raise ConfigError(f"{path}: price table not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return PriceTable(
            embeddings={k: float(v) for k, v in (data.get("embeddings") or {}).items()},
            images=data.get("images") or {},
            chat=data.get("chat") or {},
            as_of=str(data.get("as_of", "")),
        )
    except (yaml.YAMLError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: invalid price table: {exc}") from None


class Budget:
    """Thread-safe spend cap: a batch is sent only if its estimated cost still fits."""

    def __init__(self, cap: float | None, spent: float = 0.0):
        self.cap = cap
        self.spent = spent
        self._lock = threading.Lock()

    def reserve(self, estimate: float) -> bool:
        with self._lock:
            if self.cap is not None and self.spent + estimate > self.cap + 1e-12:
                return False
            self.spent += estimate
            return True

    def settle(self, estimate: float, actual: float) -> None:
        with self._lock:
            self.spent += actual - estimate
