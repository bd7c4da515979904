"""Corpus sources: folders of documents and tables of rows, as a run config names them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from quant_batch.config_files import _Strict
from quant_batch.corpus.readers import Document, DocumentError, iter_folder, iter_table
from quant_batch.errors import InputError


class FolderSource(_Strict):
    """A folder of documents (.txt .md .html .pdf .docx)."""

    path: Path = Field(description="Folder to read recursively; it must exist.")
    include: tuple[str, ...] = Field(default=("**/*",), description="Glob patterns of files to read, relative to path.")
    exclude: tuple[str, ...] = Field(default=(), description="Glob patterns of files to skip; win over include.")

    @model_validator(mode="after")
    def _exists(self) -> FolderSource:
        if not self.path.is_dir():
            raise ValueError(f"folder not found: {self.path}")
        return self


class TableSource(_Strict):
    """A Parquet / CSV / JSONL table with one document per row."""

    table: Path = Field(description="A .parquet, .csv or .jsonl file; it must exist.")
    id_column: str = Field(default="id", description="Column naming each row's document (its doc_id).")
    text_column: str = Field(default="text", description="Column holding each row's document text.")

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
