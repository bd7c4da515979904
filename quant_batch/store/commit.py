"""Committing files: the one protocol behind every stage hand-off, on disk and in a bucket.

What it promises: a reader never sees a half-written file, and a part committed with
:func:`commit_once` is written exactly once, however many workers race for its key.

- Local folders: the bytes go to a hidden temporary name in the final folder, are fsynced, then
  hard-linked onto the final name (:func:`commit_once`: the link fails if the name exists, so the
  first writer wins) or renamed onto it (:func:`replace`, :func:`atomic_path`: last writer wins).
  A crash leaves at most a hidden ``.tmp-*`` file that the next run sweeps away.
- S3: there is no rename. The object is built fully in memory and uploaded in one ``PutObject``
  with ``If-None-Match: *``; a 412 means another attempt committed the key first, which is a
  duplicate avoided, not an error. A part is never streamed to its final key: pyarrow's S3 output
  stream completes the upload even when the writer raises, leaving a short object under the
  final name (apache/arrow#40502).
- GCS / Azure through pyarrow: no conditional write is available there, so :func:`commit_once`
  checks, then writes the finished bytes; two racing writers can both write (same key, and in
  this pipeline the same content), which is weaker than S3 and local.

Which write is which: parts (vectors, images, errors, enrich answers, PNGs) use
:func:`commit_once`; state that moves forward (live index, generation switch, run summaries) uses
:func:`replace`, written last so a reader sees the old state or the new one, never half of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from quant_batch.store.storage import Storage

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


def _temp_name(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_temp(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _publish_temp(tmp: Path, path: Path, *, exclusive: bool) -> bool:
    """Move a complete temp file beside ``path`` onto it; with ``exclusive`` only if ``path`` is free.

    ``os.link`` refuses an existing target atomically, which makes the first of several racing
    writers the only one. On filesystems without hard links it falls back to check-then-rename,
    which is how this module behaved before object storage (a narrow race, same content).
    """
    try:
        if not exclusive:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some FUSE / SMB mounts)
                if path.exists():
                    return False
                os.replace(tmp, path)
        _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def link_once(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it exists; True if this call created it."""
    if path.exists():
        return False
    return _publish_temp(_write_temp(path, data), path, exclusive=True)


def _copy_temp(path: Path, src: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, replacing what was there."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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


def write_parquet(
    table: pa.Table,
    sink: str | Path | pa.NativeFile,
    metadata: Mapping[str, str] | None = None,
    *,
    dictionary: Sequence[str] | None = None,
) -> None:
    """Write ``table`` to ``sink`` with our Parquet settings and ``metadata`` in the footer.

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
    pq.write_table(
        table,
        sink if isinstance(sink, pa.NativeFile) else str(sink),
        compression=compression,
        use_dictionary=list(dictionary),
    )


def parquet_bytes(
    table: pa.Table, metadata: Mapping[str, str] | None = None, *, dictionary: Sequence[str] | None = None
) -> bytes:
    """The whole Parquet file for ``table`` in memory, ready for one conditional PUT."""
    sink = pa.BufferOutputStream()
    write_parquet(table, sink, metadata, dictionary=dictionary)
    return sink.getvalue().to_pybytes()


def commit_once(storage: Storage, key: str, data: bytes) -> bool:
    """Commit ``data`` under ``key`` unless something is already there.

    Returns True if this call committed it, False if another attempt had (a duplicate avoided:
    count it, do not raise). With S3 retries a lost answer to our own successful PUT also reads
    as False; the object is still there exactly once.
    """
    if storage.local_root is not None:
        return link_once(storage.local_path(key), data)
    if storage.scheme == "s3":
        return storage.s3_put(key, data, if_none_match=True)
    if storage.exists(key):  # gs:// and az://: no conditional write through pyarrow
        return False
    storage.put_bytes(key, data)
    return True


def commit_table_once(
    storage: Storage,
    key: str,
    table: pa.Table,
    metadata: Mapping[str, str] | None = None,
    *,
    dictionary: Sequence[str] | None = None,
) -> bool:
    """:func:`commit_once` for a Parquet part: serialised in full first, then one commit."""
    return commit_once(storage, key, parquet_bytes(table, metadata, dictionary=dictionary))


def replace(storage: Storage, key: str, data: bytes) -> None:
    """Write ``data`` under ``key``, replacing it; readers see the old bytes or the new, whole."""
    if storage.local_root is not None:
        replace_file(storage.local_path(key), data)
    elif storage.scheme == "s3":
        storage.s3_put(key, data, if_none_match=False)
    else:
        storage.put_bytes(key, data)


def commit_file_once(storage: Storage, key: str, src: Path) -> bool:
    """:func:`commit_once` for a finished local file too big to hold in memory (DuckDB output).

    On S3 the file is sent as the body of the one conditional PUT (up to 5 GB; larger needs a
    multipart upload whose completion carries ``If-None-Match``). ``src`` is left in place.
    """
    if storage.local_root is not None:
        dest = storage.local_path(key)
        return False if dest.exists() else _publish_temp(_copy_temp(dest, src), dest, exclusive=True)
    if storage.scheme == "s3":
        with open(src, "rb") as fh:
            return storage.s3_put(key, fh, if_none_match=True)
    return commit_once(storage, key, Path(src).read_bytes())


def replace_from_file(storage: Storage, key: str, src: Path) -> None:
    """:func:`replace` with the bytes of a finished local file (``src`` is left in place)."""
    if storage.local_root is not None:
        dest = storage.local_path(key)
        _publish_temp(_copy_temp(dest, src), dest, exclusive=False)
    elif storage.scheme == "s3":
        with open(src, "rb") as fh:
            storage.s3_put(key, fh, if_none_match=False)
    else:
        storage.put_bytes(key, Path(src).read_bytes())


def is_committed(storage: Storage, key: str) -> bool:
    """Whether ``key`` is committed: check before paying for the API call that would produce it."""
    return storage.exists(key)


@dataclass
class PartBuffer:
    """A part being built in memory; ``committed`` is set when the ``with`` block exits cleanly."""

    sink: pa.BufferOutputStream
    committed: bool | None = None


@contextmanager
def building_part(storage: Storage, key: str) -> Iterator[PartBuffer]:
    """Build a part in memory and commit it once when the block ends without an exception.

    If the block raises, nothing is uploaded or written: there is no temporary object to clean
    and no short object under the final key.
    """
    part = PartBuffer(pa.BufferOutputStream())
    yield part
    part.committed = commit_once(storage, key, part.sink.getvalue().to_pybytes())
