"""The ledger's key set: which content keys already have a stored vector, in 8 bytes per key.

A run asks "is this chunk's key done?" once per chunk. Holding a million 64-character hex keys
as Python strings costs about 130 MB; a sorted ``uint64`` array of their first 16 hex digits costs
8 MB and answers by binary search. Two different sha256 keys share a 64-bit prefix with
probability about n²/2⁶⁵ (≈ 3·10⁻⁸ for a million keys); a collision would make one chunk look
done, so its document keeps the previous vector of that prefix's text. That trade is written
down here rather than hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quant_batch.compact import hex_prefix


class KeySet:
    """An immutable set of content keys (hex sha256), stored as sorted 64-bit prefixes."""

    def __init__(self, prefixes: np.ndarray | None = None):
        self._a = np.unique(prefixes) if prefixes is not None and len(prefixes) else np.empty(0, np.uint64)

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> KeySet:
        return cls(_prefixes(list(keys)))

    @classmethod
    def from_parts(cls, paths: Iterable[Path]) -> KeySet:
        """The keys of every Parquet part in ``paths`` (only their ``key`` column is read)."""
        blocks = [key_prefixes(pq.read_table(path, columns=["key"]).column("key")) for path in paths]
        return cls(np.concatenate(blocks) if blocks else None)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or len(key) < 16 or not len(self._a):
            return False
        p = np.uint64(hex_prefix(key))
        i = int(np.searchsorted(self._a, p))
        return i < len(self._a) and self._a[i] == p

    def __len__(self) -> int:
        return len(self._a)

    @property
    def nbytes(self) -> int:
        return int(self._a.nbytes)


def key_prefixes(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The 64-bit prefixes of a column of hex keys, without a Python string per key where it can."""
    return _prefixes(pc.utf8_slice_codeunits(keys, 0, 16).to_pylist())


def _prefixes(keys: list[str]) -> np.ndarray:
    if not keys:
        return np.empty(0, np.uint64)
    # one fromhex over the joined prefixes: no Python int per key
    raw = bytes.fromhex("".join(k[:16] for k in keys))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)
