"""Documents from a table: one per row of a CSV, JSONL or Parquet file, read in batches."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from quant_batch.compact import U64Map, text_hash
from quant_batch.corpus.documents import Document, DocumentError, _describe, _document
from quant_batch.errors import InputError
from quant_batch.store.location import display, is_uri
from quant_batch.store.storage_config import StorageConfig

TABLE_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".parquet"})
_BATCH_ROWS = 1024

Opener = Callable[[], BinaryIO]
"""Opens the table's bytes for one sequential pass (a local file or a buffered bucket object)."""


def iter_table(
    path: Path | str,
    *,
    id_column: str,
    text_column: str,
    root: Path | None = None,
    metadata_columns: Sequence[str] = (),
    storage: StorageConfig | None = None,
) -> Iterator[Document | DocumentError]:
    """Yield one document per row of a CSV, JSONL or Parquet file, reading in batches.

    Args:
        path: the table file, or a bucket URI (``s3://bucket/t.jsonl``); its suffix picks the format.
        id_column: column holding a unique, non-empty row id.
        text_column: column holding the text to embed.
        metadata_columns: columns kept as each document's metadata (JSON values).
        root: folder that ``source_path`` is relative to; defaults to the file's own folder.
            A bucket table's ``source_path`` is its URI.
        storage: endpoint and credentials for a bucket URI (default: the AWS_* chain).

    Yields:
        Documents with ``doc_id = "<relpath>#<row id>"`` and ``line`` = 1-based line (CSV, JSONL)
        or row number (Parquet); a :class:`DocumentError` for an empty, duplicate or broken row.

    Raises:
        InputError: before any row, when the format is unknown, the file cannot be opened or a
            column is missing; later, when the file breaks so that no further row can be read.
    """
    if is_uri(path):
        from quant_batch.corpus.bucket import object_opener

        rel, source = display(path), object_opener(str(path), storage)
    else:
        path = Path(path)
        rel, source = _relative(path, root), _file_opener(path)
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"unsupported table format {suffix!r}; use one of {sorted(TABLE_SUFFIXES)}", path=rel)
    readers = {".csv": _csv_rows, ".parquet": _parquet_rows}
    wanted = (id_column, text_column, *metadata_columns)
    rows = readers.get(suffix, _jsonl_rows)(source, rel, wanted)
    seen = U64Map()  # row id hash → first line: 16 bytes a row, not a dict of strings
    for row in rows:
        yield row if isinstance(row, DocumentError) else _row_document(rel, row, seen, text_column, metadata_columns)


def _file_opener(path: Path) -> Opener:
    return lambda: open(path, "rb")


def _relative(path: Path, root: Path | None) -> str:
    resolved = path.resolve()
    base = Path(root).resolve() if root is not None else resolved.parent
    if not resolved.is_relative_to(base):
        raise InputError(f"table is outside the source root {base}", path=str(path))
    return resolved.relative_to(base).as_posix()


def _row_document(rel: str, row: tuple, seen: U64Map, text_column: str, meta_columns: Sequence[str] = ()):
    line, raw_id, raw_text, *meta = row
    row_id = _cell_str(raw_id).strip()
    if not row_id:
        return DocumentError(rel, "empty id; give every row an id", line=line)
    doc_id = f"{rel}#{row_id}"
    first = seen.setdefault(text_hash(row_id), line or 0)
    if first != (line or 0):
        return DocumentError(
            rel, f"duplicate id {row_id!r} (first on line {first}); ids must be unique", line=line, doc_id=doc_id
        )
    if raw_text is not None and not isinstance(raw_text, str):
        message = f"column {text_column!r} holds {type(raw_text).__name__}, not text"
        return DocumentError(rel, message, line=line, doc_id=doc_id)
    if raw_text is None or not raw_text.strip():
        return DocumentError(rel, "empty document: the text is blank", line=line, doc_id=doc_id)
    metadata = {c: _json_value(v) for c, v in zip(meta_columns, meta, strict=True)} if meta_columns else None
    return _document(doc_id, rel, raw_text, line, metadata)


def _json_value(value: Any) -> Any:
    """A metadata cell as JSON can hold it (dates and decimals become text)."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def _cell_str(value) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _missing(rel: str, columns: Sequence[str], wanted: tuple[str, ...]) -> None:
    for name in wanted:
        if name not in columns:
            have = ", ".join(map(repr, columns)) or "none"
            raise InputError(
                f"column {name!r} not found (columns: {have}); fix the column name in the config",
                path=rel,
            )


def _csv_rows(source: Opener, rel: str, wanted: tuple[str, ...]):
    # texts are long; the default 128 KiB field limit would reject ordinary documents
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    with source() as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            _missing(rel, header, wanted)
            at = [header.index(w) for w in wanted]
            line = reader.line_num + 1
            for record in reader:
                if any(record):
                    yield (line, *(_field(record, i) for i in at))
                line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read CSV beyond this point ({_describe(exc)}); save it as UTF-8 CSV",
                path=rel,
                line=reader.line_num + 1,
            ) from exc


def _field(record: list[str], index: int) -> str:
    return record[index] if index < len(record) else ""


def _jsonl_rows(source: Opener, rel: str, wanted: tuple[str, ...]):
    # broken lines before the first object wait here, so a missing column raises before any row
    pending: list[DocumentError] = []
    checked = False
    for line, record in _jsonl_records(source, rel):
        if isinstance(record, DocumentError):
            if checked:
                yield record
            else:
                pending.append(record)
            continue
        if not checked:
            _missing(rel, list(record), wanted)
            checked = True
            yield from pending
        yield (line, *(record.get(w) for w in wanted))
    if not checked:
        yield from pending


def _jsonl_records(source: Opener, rel: str):
    """(line, dict or DocumentError) for each non-blank line."""
    with source() as handle:
        for line, raw in enumerate(handle, start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                message = f"invalid JSON ({exc}); fix or delete the line"
                yield line, DocumentError(rel, message, line)
                continue
            if not isinstance(record, dict):
                record = DocumentError(rel, "not a JSON object; each line must be {...}", line)
            yield line, record


def _parquet_rows(source: Opener, rel: str, wanted: tuple[str, ...]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with source() as handle:
        try:
            table = pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"not a readable Parquet file: {_describe(exc)}", path=rel) from exc
        _missing(rel, table.schema_arrow.names, wanted)
        row = 0
        for batch in table.iter_batches(batch_size=_BATCH_ROWS, columns=list(dict.fromkeys(wanted))):
            columns = [batch.column(w).to_pylist() for w in wanted]
            for values in zip(*columns):
                row += 1
                yield (row, *values)
