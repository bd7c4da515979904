"""Sources in a bucket: the same documents, ids and errors as from a local folder or file.

A ``path: s3://bucket/docs/`` source is the set of objects under that prefix. They are picked by
the local folder's rule (:func:`~quant_batch.corpus.files.file_verdicts`: hidden names skipped,
the same include / exclude globs) and decoded from their bytes by the same readers. A document's
id is its key below the prefix (the caller qualifies it with the source's label), its
``source_path`` is the object's URI and its ``modified`` the object's Last-Modified time.

A bucket has no folders, so an empty listing is the bucket's way of saying "no such folder":
:func:`scan_bucket_folder` turns it into an :class:`InputError` that says whether the bucket or only the
prefix is missing. Messages name URIs, never credentials (see :mod:`quant_batch.store.storage`).
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import BinaryIO, TypeVar

from quant_batch.corpus.documents import Document, DocumentError
from quant_batch.corpus.files import SUPPORTED_SUFFIXES, document_from_bytes, file_verdicts
from quant_batch.errors import InputError, ObjectNotFound
from quant_batch.store.location import display
from quant_batch.store.storage import Storage, open_storage
from quant_batch.store.storage_config import StorageConfig

_BUFFER = 1 << 20  # one ranged GET per MiB of a table, not one per 8 KiB line buffer
_READERS = 8  # objects fetched at once
_AHEAD = 32  # fetched documents waiting for the consumer, at most
T = TypeVar("T")


def is_document_uri(uri: str) -> bool:
    """A URI naming one document (``…/guide.md``) rather than a prefix (``…/docs/``, ``…/docs``)."""
    return not uri.endswith("/") and PurePosixPath(display(uri)).suffix.lower() in SUPPORTED_SUFFIXES


def bucket_files(storage: Storage, include: Sequence[str], exclude: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(key, verdict) for every visible object under ``storage``'s prefix, listed once."""
    verdict = file_verdicts(include, exclude)
    for key in storage.list():
        yield key, verdict(key, False)  # a bucket has no symlinks


def iter_bucket_folder(
    uri: str, include: Sequence[str], exclude: Sequence[str], config: StorageConfig | None
) -> Iterator[Document | DocumentError]:
    """The documents under a prefix, ``doc_id`` = key below it, ``source_path`` = object URI.

    Objects are fetched ``_READERS`` at a time, at most ``_AHEAD`` ahead of the consumer, and
    yielded in key order: one GET costs a round trip, and a corpus is thousands of them.
    """
    storage = open_storage(uri, config)
    keys = (key for key, verdict in bucket_files(storage, include, exclude) if verdict == "read")
    yield from _in_order(keys, lambda key: read_object(storage, key, key, config))


def read_document_uri(uri: str, config: StorageConfig | None) -> Document | DocumentError:
    """One document object on its own; ``doc_id`` is its name, as for a single local file."""
    parent, name = _split(uri)
    return read_object(open_storage(parent, config), name, name, config)


def read_object(storage: Storage, key: str, rel: str, config: StorageConfig | None) -> Document | DocumentError:
    """Read and decode one object; a storage failure other than a vanished object stops the run."""
    uri = storage.uri_of(key)
    try:
        data, mtime = storage.read_with_mtime(key)  # one GET on S3 (size and Last-Modified come with it)
        modified = datetime.fromtimestamp(mtime, tz=timezone.utc) if mtime is not None else None
    except ObjectNotFound:  # deleted between the listing and the read: the next run drops it
        return DocumentError(uri, "object was deleted while the run read the bucket", doc_id=rel)
    return document_from_bytes(data, rel, uri, modified)


def _in_order(keys: Iterator[str], read: Callable[[str], T]) -> Iterator[T]:
    """``map(read, keys)`` on a small thread pool, in order, never more than ``_AHEAD`` in memory."""
    with ThreadPoolExecutor(_READERS, thread_name_prefix="qb-source") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for key in keys:
                pending.append(pool.submit(read, key))
                if len(pending) >= _AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (or a read raised): drop what was not started
            for future in pending:
                future.cancel()


def object_opener(uri: str, config: StorageConfig | None, *, buffered: bool = True):
    """A function that opens the object ``uri`` for reading (a table's one pass over its bytes).

    ``buffered`` wraps the object in a 1 MiB read buffer for line readers; Parquet wants the
    random-access file itself.
    """
    parent, name = _split(uri)
    storage = open_storage(parent, config)

    def open_object() -> BinaryIO:
        try:
            handle = storage.open_input(name)
        except ObjectNotFound:
            raise InputError(_missing_object(storage, name), path=display(uri)) from None
        return io.BufferedReader(handle, buffer_size=_BUFFER) if buffered else handle

    return open_object


def scan_bucket_folder(
    uri: str, include: Sequence[str], exclude: Sequence[str], config: StorageConfig | None
) -> list[tuple[str, str]]:
    """(key, verdict) per object of a folder source; raises when nothing at all lies under it.

    Raises:
        InputError: the bucket does not exist, or the prefix holds no object.
        StorageError: the bucket cannot be listed (e.g. access denied); names the URI.
    """
    storage = open_storage(uri, config)
    files = list(bucket_files(storage, include, exclude))
    if not files:
        raise InputError(_empty_prefix(storage), path=storage.uri)
    return files


def check_object(uri: str, config: StorageConfig | None) -> None:
    """Raise :class:`InputError` when the object ``uri`` (a table, one document) does not exist."""
    parent, name = _split(uri)
    storage = open_storage(parent, config)
    if not storage.exists(name):
        raise InputError(_missing_object(storage, name), path=display(uri))


def _split(uri: str) -> tuple[str, str]:
    parent, _, name = display(uri).rstrip("/").rpartition("/")
    return parent, name


def _bucket_missing(storage: Storage) -> bool:
    bucket = storage.root.split("/", 1)[0]
    try:
        from pyarrow.fs import FileType

        return storage.fs.get_file_info(bucket).type == FileType.NotFound
    except OSError:  # cannot tell; the caller's message covers both cases
        return False


def _empty_prefix(storage: Storage) -> str:
    if _bucket_missing(storage):
        return "no such bucket; check the bucket name and AWS_ENDPOINT_URL / AWS_REGION (or the storage: block)"
    return "no objects under this prefix; check the path (keys are case-sensitive)"


def _missing_object(storage: Storage, name: str) -> str:
    if _bucket_missing(storage):
        return "no such bucket; check the bucket name and AWS_ENDPOINT_URL / AWS_REGION (or the storage: block)"
    return "no such object; check the URI (keys are case-sensitive)"
