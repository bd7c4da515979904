"""A map from 64-bit integers to integers in 16 bytes an entry, for the per-row bookkeeping of big runs.

A Python ``dict`` of a million string keys costs well over 100 MB; the planner's pending keys and
a table's row ids only need "seen before?" (and, for ids, on which line). Recent entries sit in
a small dict; every ``merge_every`` of them are folded into two sorted numpy arrays and found by
binary search. Keys are 64-bit prefixes or hashes: two different inputs share one with
probability about n²/2⁶⁵ (3·10⁻⁸ for a million), the trade ``store/keys.py`` writes down.
"""

from __future__ import annotations

import hashlib

import numpy as np


class U64Map:
    def __init__(self, merge_every: int = 1 << 16):
        self._keys = np.empty(0, np.uint64)
        self._values = np.empty(0, np.int64)
        self._recent: dict[int, int] = {}
        self._merge_every = merge_every

    @classmethod
    def from_arrays(cls, keys: np.ndarray, values: np.ndarray) -> U64Map:
        """A map of ``keys[i] → values[i]`` built at once (the first of equal keys wins)."""
        made = cls()
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        made._keys, made._values = keys[first].astype(np.uint64), values[first].astype(np.int64)
        return made

    def get(self, key: int) -> int | None:
        found = self._recent.get(key)
        if found is not None or not len(self._keys):
            return found
        i = int(np.searchsorted(self._keys, np.uint64(key)))
        return int(self._values[i]) if i < len(self._keys) and int(self._keys[i]) == key else None

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def setdefault(self, key: int, value: int) -> int:
        """The value stored for ``key``, storing ``value`` first when there is none."""
        found = self.get(key)
        if found is not None:
            return found
        self._recent[key] = value
        if len(self._recent) >= self._merge_every:
            self._fold()
        return value

    def _fold(self) -> None:
        keys = np.fromiter(self._recent.keys(), np.uint64, len(self._recent))
        values = np.fromiter(self._recent.values(), np.int64, len(self._recent))
        merged_keys = np.concatenate([self._keys, keys])
        order = np.argsort(merged_keys, kind="stable")
        self._keys, self._values = merged_keys[order], np.concatenate([self._values, values])[order]
        self._recent.clear()

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)


def hex_prefix(key: str) -> int:
    """The first 64 bits of a hex digest key (a chunk's content key)."""
    return int(key[:16], 16)


def text_hash(text: str) -> int:
    """64 bits of blake2b of ``text`` (a row id)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
