"""Turn usage (tokens, images) into USD with a user-overridable price table."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from quant_batch.errors import ConfigError



@dataclass(frozen=True)
class PriceTable:
    """Prices per model; an unknown model costs 0 (see :func:`check_priced` for the warning)."""

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
    """Load the price table at ``path``, or the default table shipped inside the package."""
    if path is None:
        text = (files("quant_batch") / "data" / "pricing.yaml").read_text(encoding="utf-8")
        return _parse(text, "quant_batch/data/pricing.yaml")
    try:
        return _parse(Path(path).read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: price table not found") from None


def _parse(text: str, where: str) -> PriceTable:
    try:
        data = yaml.safe_load(text) or {}
        return PriceTable(
            embeddings={k: float(v) for k, v in (data.get("embeddings") or {}).items()},
            images=data.get("images") or {},
            chat=data.get("chat") or {},
            as_of=str(data.get("as_of", "")),
        )
    except (yaml.YAMLError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: invalid price table: {exc}") from None


def check_priced(prices: PriceTable, kind: str, model: str, cap: float | None) -> str | None:
    """A warning when ``model`` has no price, so its cost reads 0; an error when a cap needs one.

    Args:
        kind: ``embeddings``, ``images`` or ``chat`` (the price table's sections).
        cap: the run's spend cap; a cap that cannot be computed must not pass silently.
    """
    if model in getattr(prices, kind):
        return None
    where = "the price table (quant_batch/data/pricing.yaml, or your `pricing:` file)"
    if cap is not None:
        raise ConfigError(
            f"no price for {kind} model {model!r} in {where}, so the spend cap ${cap} cannot be enforced; "
            "add the model's price to a `pricing:` file, or run without --max-cost"
        )
    return f"no price for {kind} model {model!r} in {where}: its cost is reported as $0"


class Budget:
    """A run's permission to send, shared by all its workers: the spend cap and a stop switch.

    Every worker of every stage (embed, render, enrich) calls :meth:`reserve` with a call's
    estimated cost before sending it and :meth:`settle` with the actual cost after. ``reserve``
    says no once the call could cross the cap (the run ends ``partial`` and the next run goes on
    from there), or once :meth:`halt` was called: a run-level failure such as a refused token or
    an unreachable service, after which nothing sent could succeed.
    """

    def __init__(self, cap: float | None, spent: float = 0.0):
        self.cap = cap
        self.spent = spent
        self.capped = False
        """True once a call was refused for the cap."""
        self.halted: str | None = None
        """Why the run stopped sending (None while it may send)."""
        self._lock = threading.Lock()

    def reserve(self, estimate: float) -> bool:
        with self._lock:
            if self.halted:
                return False
            if self.cap is not None and self.spent + estimate > self.cap + 1e-12:
                self.capped = True
                return False
            self.spent += estimate
            return True

    def halt(self, reason: str) -> None:
        """Stop every worker before its next call; the first reason wins."""
        with self._lock:
            self.halted = self.halted or reason

    def settle(self, estimate: float, actual: float) -> None:
        with self._lock:
            self.spent += actual - estimate
