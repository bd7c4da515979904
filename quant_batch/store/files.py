"""Atomic file writes: the hand-off between stages.

A part file is written under a hidden temporary name in its final folder, flushed to disk, and
renamed into place. Readers glob ``*.parquet`` / ``*.png`` and never see a half-written file; a
crash leaves at most a hidden ``.tmp-*`` file that the next run sweeps away.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems refuse to open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_parquet_atomic(
    table: pa.Table, path: Path, metadata: Mapping[str, str] | None = None, *, dictionary: Sequence[str] | None = None
) -> None:
    """Write ``table`` to ``path`` atomically, with ``metadata`` in the file's key-value metadata.

    ``dictionary`` names the columns worth dictionary-encoding (default: every string column;
    pass the low-cardinality ones for wide parts). Float vector columns are stored uncompressed:
    embeddings do not compress, and zstd on them only costs CPU.
    """
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    if dictionary is None:
        dictionary = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    compression = {
        f.name: "none" if pa.types.is_fixed_size_list(f.type) and pa.types.is_floating(f.type.value_type) else "zstd"
        for f in table.schema
    }
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, use_dictionary=list(dictionary))


def sweep_temp_files(root: Path) -> int:
    """Remove temporary files left by a crashed run under ``root``; returns how many."""
    if not root.exists():
        return 0
    removed = 0
    for tmp in root.rglob(f"{TMP_PREFIX}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
