"""Atomic file writes in a local folder: the hand-off between stages.

A part file is written under a hidden temporary name in its final folder, flushed to disk, and
renamed into place. Readers glob ``*.parquet`` / ``*.png`` and never see a half-written file; a
crash leaves at most a hidden ``.tmp-*`` file that the next run sweeps away.

The protocol itself lives in :mod:`quant_batch.store.commit`, which also serves buckets; these
are its local-path helpers under their original names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from quant_batch.store.commit import TMP_PREFIX, atomic_path, sweep_temp_files, write_parquet

__all__ = ["TMP_PREFIX", "atomic_path", "sweep_temp_files", "write_bytes_atomic", "write_parquet_atomic"]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    # looks atomic_path up in this module, so a test that wraps files.atomic_path sees every write
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_parquet_atomic(
    table: pa.Table, path: Path, metadata: Mapping[str, str] | None = None, *, dictionary: Sequence[str] | None = None
) -> None:
    """Write ``table`` to ``path`` atomically, with ``metadata`` in the file's key-value metadata.

    Encoding and compression are :func:`quant_batch.store.commit.write_parquet`'s.
    """
    with atomic_path(path) as tmp:
        write_parquet(table, tmp, metadata, dictionary=dictionary)


def committed_parquet(folder: Path) -> list[Path]:
    """The committed Parquet files of ``folder``, sorted by name.

    Hidden ``.tmp-*`` files are parts still being written and are left out; a missing folder has
    none. Names are sorted as strings (sorting ten thousand ``Path`` objects cost a quarter second).
    """
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".parquet") and not e.name.startswith("."))
    except FileNotFoundError:
        return []
    return [folder / n for n in names]
