"""Corpus sources: folders of documents and tables of rows, as a run config names them.

A document's identity is unique across all sources of a config: every source has a label (its
``name:``, else the folder's or table file's own name) and document ids are qualified by it,
``<label>/<path in the folder>`` for folder documents and ``<label>#<row id>`` for table rows.
So two folders that each hold a ``README.md`` are two documents, and ``source_path`` stays the
readable ``docs/README.md``. Two sources with one label, or a folder inside another, are refused
before anything runs.

A ``path:`` or ``table:`` may be a bucket URI (``s3://bucket/docs/``, see
:mod:`quant_batch.corpus.bucket`): same globs, same ids (the label defaults to the prefix's last
segment), and ``source_path`` is the object's URI. A URI is not checked when the config is
parsed but when the run starts (:func:`require_documents`), with the config's ``storage:``
settings, which every function here takes as ``storage``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from quant_batch.config_files import _Strict
from quant_batch.corpus.readers import (
    TABLE_SUFFIXES,
    Document,
    DocumentError,
    folder_files,
    iter_folder,
    iter_table,
    read_document,
)
from quant_batch.errors import InputError
from quant_batch.store.location import Location, display, is_uri
from quant_batch.store.storage_config import StorageConfig


class FolderSource(_Strict):
    """A folder of documents (.txt .md .html .pdf .docx), or a single document file."""

    path: Location = Field(
        description="Folder to read recursively (it must exist), one document, or s3://bucket/prefix/."
    )
    include: tuple[str, ...] = Field(default=("**/*",), description="Glob patterns of files to read, relative to path.")
    exclude: tuple[str, ...] = Field(default=(), description="Glob patterns of files to skip; win over include.")
    name: str | None = Field(
        default=None,
        pattern=r"^[^/#]+$",
        description="Label that qualifies this source's document ids; default: the folder's own name.",
    )

    @model_validator(mode="after")
    def _exists(self) -> FolderSource:
        # a bucket prefix is checked when the run starts (require_documents), with the storage settings
        if isinstance(self.path, Path) and not (self.path.is_dir() or self.path.is_file()):
            raise ValueError(f"folder not found: {self.path}")
        return self

    @property
    def label(self) -> str:
        if is_uri(self.path):
            return self.name or _uri_label(str(self.path)) or "root"
        return self.name or Path(self.path).resolve().name or "root"


class TableSource(_Strict):
    """A Parquet / CSV / JSONL table with one document per row."""

    table: Location = Field(description="A .parquet, .csv or .jsonl file (it must exist), or its s3:// URI.")
    id_column: str = Field(default="id", description="Column naming each row's document (its id within the source).")
    text_column: str = Field(default="text", description="Column holding each row's document text.")
    metadata_columns: tuple[str, ...] = Field(
        default=(),
        description="Columns kept with each row's chunks as metadata: returned with hits, filterable in search.",
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[^/#]+$",
        description="Label that qualifies this table's row ids; default: the table file's name.",
    )

    @model_validator(mode="after")
    def _exists(self) -> TableSource:
        if isinstance(self.table, Path) and not self.table.is_file():
            raise ValueError(f"table not found: {self.table}")
        return self

    @property
    def label(self) -> str:
        return self.name or (_uri_label(str(self.table)) if is_uri(self.table) else Path(self.table).name)


def _source_kind(value: Any) -> str:
    data = value if isinstance(value, dict) else vars(value)
    return "table" if "table" in data else "folder"


Source = Annotated[
    Annotated[FolderSource, Tag("folder")] | Annotated[TableSource, Tag("table")], Discriminator(_source_kind)
]


def check_sources(sources: Sequence[FolderSource | TableSource]) -> None:
    """Refuse sources whose documents could collide: one label twice, or a folder inside another."""
    seen: dict[str, FolderSource | TableSource] = {}
    for source in sources:
        if source.label in seen:
            raise ValueError(
                f"two sources are both labelled {source.label!r} ({_where(seen[source.label])} and "
                f"{_where(source)}); give one of them a distinct `name:`"
            )
        seen[source.label] = source
    folders = [s for s in sources if isinstance(s, FolderSource)]
    for a in folders:
        for b in folders:
            if a is not b and _inside(a.path, b.path):
                raise ValueError(
                    f"source folder {a.path} lies inside source folder {b.path}: its documents would be "
                    f"indexed twice; remove one, or exclude it from the other with `exclude:`"
                )


def _inside(inner: Path | str, outer: Path | str) -> bool:
    if is_uri(inner) or is_uri(outer):
        if not (is_uri(inner) and is_uri(outer)):
            return False
        return (display(inner).rstrip("/") + "/").startswith(display(outer).rstrip("/") + "/")
    return Path(inner).resolve().is_relative_to(Path(outer).resolve())


def _uri_label(uri: str) -> str:
    return display(uri).rstrip("/").rsplit("/", 1)[-1]


def _where(source: FolderSource | TableSource) -> str:
    return display(source.path if isinstance(source, FolderSource) else source.table)


def _qualified(
    item: Document | DocumentError, prefix: str, own: str = "", *, source_path: bool = True
) -> Document | DocumentError:
    """``item`` with the reader's own id prefix ``own`` replaced by ``prefix``.

    ``source_path=False`` leaves ``source_path`` as the reader set it (a bucket object's URI).
    """

    def q(value: str) -> str:
        return prefix + value[len(own) :]

    def q_or_none(value: str | None) -> str | None:
        return None if value is None else q(value)

    if isinstance(item, Document):
        if item.metadata and "path" in item.metadata:
            item = dataclasses.replace(item, metadata={**item.metadata, "path": q_or_none(item.metadata["path"])})
        where = q(item.source_path) if source_path else item.source_path
        return dataclasses.replace(item, doc_id=q(item.doc_id), source_path=where)
    where = q(item.source_path) if source_path else item.source_path
    return dataclasses.replace(item, doc_id=q_or_none(item.doc_id), source_path=where)


def iter_sources(
    sources: Iterable[FolderSource | TableSource], storage: StorageConfig | None = None
) -> Iterator[Document | DocumentError]:
    """Every document of every source, ids qualified by the source's label (see module doc).

    ``storage`` is the config's ``storage:`` block, for sources in a bucket.
    """
    for source in sources:
        if isinstance(source, FolderSource) and is_uri(source.path):
            yield from _bucket_folder(source, storage)
        elif isinstance(source, FolderSource):
            folder = Path(source.path)
            if folder.is_file():
                yield read_document(folder)
                continue
            if not folder.is_dir():
                raise InputError("source folder not found", path=str(folder))
            for item in iter_folder(folder, source.include, source.exclude):
                yield _qualified(item, source.label + "/")
        elif isinstance(source, TableSource):
            yield from _table(source, storage)


def _bucket_folder(source: FolderSource, storage: StorageConfig | None) -> Iterator[Document | DocumentError]:
    from quant_batch.corpus.bucket import is_document_uri, iter_bucket_folder, read_document_uri

    uri = str(source.path)
    if is_document_uri(uri):
        yield read_document_uri(uri, storage)
        return
    for item in iter_bucket_folder(uri, source.include, source.exclude, storage):
        yield _qualified(item, source.label + "/", source_path=False)


def _table(source: TableSource, storage: StorageConfig | None) -> Iterator[Document | DocumentError]:
    remote = is_uri(source.table)
    if not remote and not Path(source.table).is_file():
        raise InputError("source table not found", path=str(source.table))
    # the reader names rows "<file name or URI>#<id>"; the label replaces that
    own = display(source.table) if remote else Path(source.table).name
    for item in iter_table(
        source.table,
        id_column=source.id_column,
        text_column=source.text_column,
        root=None if remote else Path(source.table).parent,
        metadata_columns=source.metadata_columns,
        storage=storage,
    ):
        yield _qualified(item, source.label, own=own, source_path=not remote)


@dataclass
class SourceScan:
    """What the sources of a config match, counted from file names alone (nothing is read)."""

    matched: int = 0
    """Files a folder source reads, plus one per table source (its rows are not counted)."""
    unsupported: Counter[str] = field(default_factory=Counter)
    """Skipped files by extension: not a type a folder source reads."""
    excluded: Counter[str] = field(default_factory=Counter)
    """Skipped files by extension: readable, but left out by the include / exclude globs."""

    def skipped(self) -> str:
        """``.xyz 2, .bin 1 (unsupported); .md 3 (not matched by include/exclude)``, or ''."""
        parts = [
            f"{_by_extension(c)} ({why})"
            for c, why in ((self.unsupported, "unsupported"), (self.excluded, "not matched by include/exclude"))
            if c
        ]
        return "; ".join(parts)

    def describe(self) -> str:
        n = sum(self.unsupported.values()) + sum(self.excluded.values())
        text = f"matched {self.matched} documents"
        if not n:
            return text + ("; the folder holds no files" if not self.matched else "")
        text += f"; skipped {n} file{'s' * (n != 1)}: {self.skipped()}"
        if any(ext in TABLE_SUFFIXES for ext in self.unsupported):
            text += " (tables are read by a `table:` source that names the id and text columns)"
        return text


def _by_extension(counts: Counter[str]) -> str:
    return ", ".join(f"{ext} {n}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def scan_sources(sources: Iterable[FolderSource | TableSource], storage: StorageConfig | None = None) -> SourceScan:
    """Count what each source matches and skips, by the same rules :func:`iter_sources` reads by.

    Raises:
        InputError: a bucket source names no bucket, an empty prefix or a missing object.
    """
    scan = SourceScan()
    for source in sources:
        for rel, verdict in _files(source, storage):
            ext = PurePosixPath(rel).suffix.lower() or "(no extension)"
            if verdict in ("read", "outside"):
                scan.matched += 1
            else:
                (scan.unsupported if verdict == "unsupported" else scan.excluded)[ext] += 1
    return scan


def _files(source: FolderSource | TableSource, storage: StorageConfig | None) -> Iterable[tuple[str, str]]:
    """(relative path, verdict) per file of a source; a table or a single document is one file."""
    location = source.table if isinstance(source, TableSource) else source.path
    if is_uri(location):
        from quant_batch.corpus.bucket import check_object, is_document_uri, scan_bucket_folder

        uri = str(location)
        if isinstance(source, TableSource) or is_document_uri(uri):
            check_object(uri, storage)
            return [(uri, "read")]
        return scan_bucket_folder(uri, source.include, source.exclude, storage)
    if isinstance(source, TableSource) or Path(location).is_file():
        return [(str(location), "read")]
    return ((rel, verdict) for _path, rel, verdict in folder_files(Path(location), source.include, source.exclude))


def require_documents(
    sources: Iterable[FolderSource | TableSource], storage: StorageConfig | None = None
) -> SourceScan:
    """The scan of ``sources``; raises when they match no document at all.

    Raises:
        InputError: nothing to embed; the message names the sources and what was skipped. For a
            bucket source also: no such bucket, nothing under the prefix, no such object.
        StorageError: a bucket cannot be listed or read (e.g. access denied); names the URI.
    """
    sources = tuple(sources)
    scan = scan_sources(sources, storage)
    if scan.matched == 0:
        names = ", ".join(_name(s) for s in sources)
        raise InputError(f"{scan.describe()}; nothing to embed", path=names)
    return scan


def _name(source: FolderSource | TableSource) -> str:
    if isinstance(source, TableSource):
        return display(source.table)
    globs = [f"include {', '.join(source.include)}"] if source.include != ("**/*",) else []
    globs += [f"exclude {', '.join(source.exclude)}"] if source.exclude else []
    return display(source.path) + (f" ({'; '.join(globs)})" if globs else "")
