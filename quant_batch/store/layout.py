"""Where things live under an output folder.

    <out>/
      parts/vectors/<generation>/<run>-<batch>.parquet   embedded chunks, one file per API batch
      parts/images/<run>-<key>.parquet                   one file per rendered manifest row
      parts/errors/<run>-<n>.parquet                     per-record failures
      parts/enrich/<table>/<run>-<n>.parquet             chat enrichment answers, one table each
      runs/<run_id>.json                                 one summary per run
      state/live-<gen>.parquet, documents-<gen>.parquet  the current corpus of a vector space
      state/generation.json                              the vector space search uses (switched
                                                         only when a space is complete)
      catalog.duckdb                                     query surface, rebuilt from the files above
      <id>_<n>.png, index.html                           rendered images and their contact sheet

Everything except ``catalog.duckdb`` is durable truth; the catalog can be deleted and rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def parts(self) -> Path:
        return self.root / "parts"

    def vector_parts(self, generation: str) -> Path:
        return self.parts / "vectors" / generation

    @property
    def image_parts(self) -> Path:
        return self.parts / "images"

    def enrich_parts(self, table: str) -> Path:
        return self.parts / "enrich" / table

    @property
    def error_parts(self) -> Path:
        return self.parts / "errors"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def live(self, generation: str) -> Path:
        return self.state / f"live-{generation}.parquet"

    def documents(self, generation: str) -> Path:
        return self.state / f"documents-{generation}.parquet"

    @property
    def generation(self) -> Path:
        return self.state / "generation.json"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def active_generation(self) -> dict[str, Any] | None:
        """The vector space search uses (model, dimensions, normalize), or None before any."""
        if not self.generation.exists():
            return None
        active: dict[str, Any] = json.loads(self.generation.read_text())
        return active
