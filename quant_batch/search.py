"""Semantic search over an index: embed the query with the index's own model, rank by cosine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant_batch.client import QuantClient
from quant_batch.errors import ConfigError
from quant_batch.store.catalog import Catalog
from quant_batch.store.layout import Layout

SEARCH_SQL = """
SELECT source_path, position, doc_id, chunk_id, text,
       array_cosine_similarity(vector, ?::FLOAT[{dim}]) AS score
FROM chunks ORDER BY score DESC LIMIT ?
"""


@dataclass(frozen=True)
class Hit:
    score: float
    source_path: str
    position: int
    doc_id: str
    chunk_id: str
    text: str


def search(out: Path, query: str, client: QuantClient, *, k: int = 10) -> list[Hit]:
    """Top ``k`` live chunks of the index at ``out`` for ``query``."""
    layout = Layout(Path(out))
    gen = layout.active_generation()
    if not layout.catalog.exists() or gen is None:
        raise ConfigError(f"{out}: no complete index here yet; run `quant-batch embed` first")
    # embed first: the catalog stays closed during the API call, so a run is never kept waiting
    res = client.embed([query], model=gen["model"], dimensions=gen["dimensions"], normalize=gen["normalize"])
    qvec: np.ndarray = res.vectors[0]
    with Catalog(layout, read_only=True) as cat:
        rows = cat.con.execute(SEARCH_SQL.format(dim=int(gen["dimensions"])), [qvec.tolist(), k]).fetchall()
    return [Hit(score=float(r[5]), source_path=r[0], position=int(r[1]), doc_id=r[2], chunk_id=r[3], text=r[4]) for r in rows]
