"""Row types that cross stage boundaries, and their Arrow schemas."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from quant_batch.store.commit import parquet_bytes
from quant_batch.store.files import write_parquet_atomic

if TYPE_CHECKING:
    from quant_batch.store.output import OutputWriter

ERROR_SCHEMA = pa.schema(
    [
        ("error_id", pa.string()),
        ("run_id", pa.string()),
        ("stage", pa.string()),
        ("source_path", pa.string()),
        ("line", pa.int64()),
        ("doc_id", pa.string()),
        ("chunk_id", pa.string()),
        ("key", pa.string()),
        ("status", pa.int64()),
        ("kind", pa.string()),
        ("message", pa.string()),
        ("retryable", pa.bool_()),
        ("created_at", pa.float64()),
    ]
)


@dataclass
class ErrorRecord:
    """One record that failed, and why. ``key`` lets a replay find the unit again."""

    run_id: str
    stage: str
    message: str
    source_path: str | None = None
    line: int | None = None
    doc_id: str | None = None
    chunk_id: str | None = None
    key: str | None = None
    status: int | None = None
    kind: str | None = None
    retryable: bool = False
    created_at: float = field(default_factory=time.time)
    error_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __str__(self) -> str:
        where = self.source_path or self.doc_id or self.key or "?"
        if self.line:
            where = f"{where}:{self.line}"
        return f"{where}: {self.stage}: {self.message}"


def error_table(records: list[ErrorRecord]) -> pa.Table:
    return pa.Table.from_pylist([asdict(r) for r in records], schema=ERROR_SCHEMA)


def write_errors(folder: Path, name: str, records: list[ErrorRecord]) -> Path | None:
    """Write error records as one part file; returns its path (None when there is nothing)."""
    if not records:
        return None
    path = folder / f"{name}.parquet"
    write_parquet_atomic(error_table(records), path)
    return path


def commit_errors(out: OutputWriter, key: str, records: list[ErrorRecord]) -> str | None:
    """A worker's error records as one part committed under ``key``; returns the key (None: nothing)."""
    if not records:
        return None
    out.commit(key, parquet_bytes(error_table(records)))
    return key


def vector_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """Arrow ``fixed_size_list<float32>[dim]`` over a (n, dim) float32 matrix, without copying rows."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
