"""Content keys: one key per unit of work.

A key is the sha256 of everything that changes the unit's output. Two chunks with the same text
and embedding settings share a key (and one vector), whatever document they came from; the same
text under a different model, dimension, normalisation or chunker gets a different key. A chunk's
*id*, by contrast, names its place: document id + position + text hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys) so equal requests hash equally."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def embedding_generation(model: str, dimensions: int, normalize: bool) -> str:
    """Short id of a vector space: vectors of different generations are never mixed."""
    return sha256_hex(canonical_json([model, dimensions, normalize]))[:12]


def chunk_key(text: str, *, model: str, dimensions: int, normalize: bool, chunker: str) -> str:
    """Key of one embedding unit: text plus everything that changes its vector."""
    head = canonical_json([model, dimensions, normalize, chunker])
    return hashlib.sha256(head + b"\x00" + text.encode("utf-8")).hexdigest()


def chunk_id(doc_id: str, position: int, text: str) -> str:
    """Stable id of a chunk's place in a document."""
    return sha256_hex(canonical_json([doc_id, position, sha256_hex(text)]))[:32]
