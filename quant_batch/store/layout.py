"""Where things live under an output folder.

    <out>/
      parts/vectors/<generation>/<run>-<batch>.parquet   embedded chunks, one file per API batch
      parts/images/<run>-<key>.parquet                   one file per rendered manifest row
      parts/errors/<run>-<n>.parquet                     per-record failures
      parts/enrich/<table>/<run>-<n>.parquet             chat enrichment answers, one table each
      runs/<run_id>.json                                 one summary per run
      state/live-<gen>-<run>.parquet                     the live chunks of a vector space, as one
      state/documents-<gen>-<run>.parquet                run published them (never rewritten)
      state/index-<gen>.json                             pointer to the published pair above,
                                                         replaced last: what readers read
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

from quant_batch.errors import InputError


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

    def index_pointer(self, generation: str) -> Path:
        return self.state / f"index-{generation}.json"

    def published(self, generation: str) -> dict[str, str] | None:
        """File names of the published live index of ``generation`` (None before the first publish).

        Indexes written before pointers existed have fixed names; they are read as they are
        until their next publish writes a pointer.
        """
        try:
            return json.loads(self.index_pointer(generation).read_text())
        except FileNotFoundError:
            pass
        legacy = self.state / f"live-{generation}.parquet"
        if legacy.exists():
            return {"live": legacy.name, "documents": f"documents-{generation}.parquet"}
        return None

    def live(self, generation: str) -> Path:
        """The published live chunks of ``generation`` (a path that does not exist before any)."""
        pub = self.published(generation)
        return self.state / (pub["live"] if pub else f"live-{generation}.parquet")

    def documents(self, generation: str) -> Path:
        """The published documents of ``generation`` (a path that does not exist before any)."""
        pub = self.published(generation)
        return self.state / (pub["documents"] if pub else f"documents-{generation}.parquet")

    @property
    def generation(self) -> Path:
        return self.state / "generation.json"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def active_generation(self) -> dict | None:
        """The vector space search uses (model, dimensions, normalize), or None before any."""
        if not self.generation.exists():
            return None
        return json.loads(self.generation.read_text())

    def holds_output(self) -> bool:
        """True once any run wrote here: a run summary or a Parquet part."""
        return any(self.runs.glob("*.json")) or any(self.parts.rglob("*.parquet"))

    def require_output(self) -> Layout:
        """This layout, or an InputError when the folder holds no quant-batch output (a typo'd path)."""
        if not self.holds_output():
            what = "does not exist" if not self.root.exists() else "holds no quant-batch output (no runs/, no parts/)"
            raise InputError(f"{what}; pass the output folder of an embed or render run", path=str(self.root))
        return self
