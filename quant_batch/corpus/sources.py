"""Corpus sources: folders of documents and tables of rows, as a run config names them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Tag, model_validator

from quant_batch.config_files import _Strict
from quant_batch.corpus.readers import TABLE_SUFFIXES, Document, DocumentError, folder_files, iter_folder, iter_table
from quant_batch.errors import InputError


class FolderSource(_Strict):
    """A folder of documents (.txt .md .html .pdf .docx)."""

    path: Path
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _exists(self) -> FolderSource:
        if not self.path.is_dir():
            raise ValueError(f"folder not found: {self.path}")
        return self


class TableSource(_Strict):
    """A Parquet / CSV / JSONL table with one document per row."""

    table: Path
    id_column: str = "id"
    text_column: str = "text"

    @model_validator(mode="after")
    def _exists(self) -> TableSource:
        if not self.table.is_file():
            raise ValueError(f"table not found: {self.table}")
        return self


def _source_kind(value: Any) -> str:
    data = value if isinstance(value, dict) else vars(value)
    return "table" if "table" in data else "folder"


Source = Annotated[
    Annotated[FolderSource, Tag("folder")] | Annotated[TableSource, Tag("table")], Discriminator(_source_kind)
]


def iter_sources(sources: Iterable[FolderSource | TableSource]) -> Iterator[Document | DocumentError]:
    for source in sources:
        if isinstance(source, FolderSource):
            if not source.path.is_dir():
                raise InputError("source folder not found", path=str(source.path))
            yield from iter_folder(source.path, source.include, source.exclude)
        elif isinstance(source, TableSource):
            if not source.table.is_file():
                raise InputError("source table not found", path=str(source.table))
            yield from iter_table(
                source.table, id_column=source.id_column, text_column=source.text_column, root=source.table.parent
            )


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
        parts = [f"{_by_extension(c)} ({why})" for c, why in ((self.unsupported, "unsupported"),
                                                            (self.excluded, "not matched by include/exclude")) if c]
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


def scan_sources(sources: Iterable[FolderSource | TableSource]) -> SourceScan:
    """Count what each source matches and skips, by the same rules :func:`iter_sources` reads by."""
    scan = SourceScan()
    for source in sources:
        if isinstance(source, TableSource):
            scan.matched += 1
            continue
        for path, _rel, verdict in folder_files(source.path, source.include, source.exclude):
            ext = path.suffix.lower() or "(no extension)"
            if verdict in ("read", "outside"):
                scan.matched += 1
            else:
                (scan.unsupported if verdict == "unsupported" else scan.excluded)[ext] += 1
    return scan


def require_documents(sources: Iterable[FolderSource | TableSource]) -> SourceScan:
    """The scan of ``sources``; raises when they match no document at all.

    Raises:
        InputError: nothing to embed; the message names the sources and what was skipped.
    """
    sources = tuple(sources)
    scan = scan_sources(sources)
    if scan.matched == 0:
        names = ", ".join(_name(s) for s in sources)
        raise InputError(f"{scan.describe()}; nothing to embed", path=names)
    return scan


def _name(source: FolderSource | TableSource) -> str:
    if isinstance(source, TableSource):
        return str(source.table)
    globs = [f"include {', '.join(source.include)}"] if source.include != ("**/*",) else []
    globs += [f"exclude {', '.join(source.exclude)}"] if source.exclude else []
    return str(source.path) + (f" ({'; '.join(globs)})" if globs else "")
