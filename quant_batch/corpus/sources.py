"""Corpus sources: folders of documents and tables of rows, as a run config names them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Tag, model_validator

from quant_batch.config_files import _Strict
from quant_batch.corpus.readers import Document, DocumentError, iter_folder, iter_table, read_document
from quant_batch.errors import InputError


class FolderSource(_Strict):
    """A folder of documents (.txt .md .html .pdf .docx), or a single document file."""

    path: Path
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _exists(self) -> FolderSource:
        if not (self.path.is_dir() or self.path.is_file()):
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
            if source.path.is_file():
                yield read_document(source.path)
                continue
            if not source.path.is_dir():
                raise InputError("source folder not found", path=str(source.path))
            yield from iter_folder(source.path, source.include, source.exclude)
        elif isinstance(source, TableSource):
            if not source.table.is_file():
                raise InputError("source table not found", path=str(source.table))
            yield from iter_table(
                source.table, id_column=source.id_column, text_column=source.text_column, root=source.table.parent
            )
