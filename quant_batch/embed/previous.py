"""The documents of the last publish, as a run compares against them: about 40 bytes a document.

An unchanged rerun of a million documents asks, for each one it reads, "same content, same
chunker, complete last time?", and remembers which previous documents it carries over. A dict of
a million ``doc_id → (hash, chunker, status, chunks)`` tuples cost about 350 MB and the set of
carried ids another 100 MB; here ids and content hashes are 64-bit values in numpy arrays (the
collision odds of ``store/keys.py``), and the carried documents a boolean mask over the previous
documents file, whose ids are read back only when the run publishes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quant_batch.compact import U64Map, hex_prefix, text_hash
from quant_batch.store.keys import key_prefixes


class PreviousDocuments:
    def __init__(self, path: Path | None = None):
        self.path = path if path is not None and path.exists() else None
        self._index = U64Map()
        self._content = np.empty(0, np.uint64)
        self._chunker = np.empty(0, np.int32)
        self._chunkers: list[str] = []
        self._ok = np.empty(0, bool)
        self._chunks = np.empty(0, np.int64)
        if self.path is not None:
            self._load(self.path)
        self.carried = np.zeros(len(self._ok), bool)

    def _load(self, path: Path) -> None:
        t = pq.read_table(path, columns=["doc_id", "content_hash", "chunker", "status", "chunks"])
        ids = t.column("doc_id").to_pylist()
        self._index = U64Map.from_arrays(
            np.fromiter((text_hash(d) for d in ids), np.uint64, len(ids)), np.arange(len(ids), dtype=np.int64)
        )
        del ids
        self._content = key_prefixes(pc.fill_null(t.column("content_hash"), "0" * 16))
        chunker = pc.dictionary_encode(pc.fill_null(t.column("chunker"), "")).combine_chunks()
        self._chunker = chunker.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        self._chunkers = chunker.dictionary.to_pylist()
        self._ok = pc.equal(pc.fill_null(t.column("status"), ""), "ok").to_numpy(zero_copy_only=False)
        self._chunks = pc.fill_null(t.column("chunks"), 0).to_numpy(zero_copy_only=False).astype(np.int64)

    def __len__(self) -> int:
        return len(self._ok)

    def find(self, doc_id: str) -> int | None:
        """The row of ``doc_id`` in the previous documents, or None for a new document."""
        return self._index.get(text_hash(doc_id)) if len(self) else None

    def unchanged(self, row: int, content_hash: str, chunker: str) -> bool:
        """Same content and chunker as last time, and complete then (status ``ok``)."""
        return (
            bool(self._ok[row])
            and int(self._content[row]) == hex_prefix(content_hash)
            and self._chunkers[int(self._chunker[row])] == chunker
        )

    def chunks(self, row: int) -> int:
        return int(self._chunks[row])

    def carry(self, row: int) -> None:
        """Keep this previous document's chunks in the new index as they are."""
        self.carried[row] = True

    @property
    def carried_count(self) -> int:
        return int(self.carried.sum())

    def carried_ids(self) -> pa.Array:
        """The doc ids of the carried documents, read back from the previous documents file."""
        if self.path is None or not self.carried.any():
            return pa.array([], pa.string())
        ids = pq.read_table(self.path, columns=["doc_id"]).column("doc_id").combine_chunks()
        return ids.filter(pa.array(self.carried))
