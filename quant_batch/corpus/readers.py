"""Stream documents out of a folder or a table, one at a time.

Two entry points, both generators that yield a :class:`Document` or, in its place, a
:class:`DocumentError` naming the file (and line) and saying what to do. One bad file or row never
stops the iteration; the caller records the error and goes on.

* :func:`iter_folder` reads every supported file under a root: ``.txt``, ``.md``/``.markdown``,
  ``.html``/``.htm`` (visible text only), ``.pdf`` (pypdf) and ``.docx`` (python-docx).
  Other suffixes are skipped silently, and so are ``.csv``, ``.jsonl`` and ``.parquet``: their rows
  are documents only when the caller names the id and text columns through :func:`iter_table`.
* :func:`iter_table` reads rows of a ``.csv``, ``.jsonl``/``.ndjson`` or ``.parquet`` file in
  batches; each row is a document whose id is ``"<relpath>#<row id>"``.

A file-level problem the caller must fix before any row can be read (a missing column, a file
that is not a table) raises :class:`~quant_batch.errors.InputError` instead.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from quant_batch.errors import InputError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}
TABLE_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".parquet"})

_MAX_MESS = 0.2  # charset-normalizer "chaos" above this: we do not trust the guess
_NEAR_TIE = 0.15  # guesses this close to the best are treated as equally plausible
_PREFERRED_LEGACY = ("cp1252", "latin_1", "iso8859_15")
_BATCH_ROWS = 1024


@dataclass(frozen=True)
class Document:
    """One text to chunk and embed."""

    doc_id: str
    source_path: str
    text: str
    content_hash: str
    line: int | None = None


@dataclass(frozen=True)
class DocumentError:
    """A file or row that could not be read, yielded where its document would have been."""

    source_path: str
    message: str
    line: int | None = None
    doc_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.source_path}:{self.line}" if self.line else self.source_path
        return f"{where}: {self.message}"


class _Unreadable(Exception):
    """Internal: a file's content cannot become text; the message goes into a DocumentError."""


def iter_folder(
    root: Path, include: Sequence[str] = ("**/*",), exclude: Sequence[str] = ()
) -> Iterator[Document | DocumentError]:
    """Yield the documents under ``root``, one file at a time.

    Files are visited directory by directory with entries sorted by name, so the order is the same
    on every run. Hidden files and directories (name starting with ``.``) are skipped; symlinks are
    followed only when they resolve inside ``root`` (symlinked directories are not descended into,
    which also rules out cycles). Table files are skipped: read them with :func:`iter_table`.

    Args:
        root: folder to read; ``doc_id`` and ``source_path`` are POSIX paths relative to it.
        include: glob patterns on the relative path; ``**`` spans directories, ``*`` does not.
        exclude: glob patterns; a file matching any of them is skipped.

    Yields:
        A :class:`Document` per readable file, a :class:`DocumentError` per unreadable one.
    """
    for path, rel, verdict in folder_files(root, include, exclude):
        if verdict == "outside":  # said out loud, so a missing document is never a mystery
            yield DocumentError(rel, "symlink points outside the source folder; not followed", doc_id=rel)
        elif verdict == "read":
            yield _read_file(path, rel)


def folder_files(
    root: Path, include: Sequence[str] = ("**/*",), exclude: Sequence[str] = ()
) -> Iterator[tuple[Path, str, str]]:
    """Every visible file under ``root`` with what :func:`iter_folder` does with it, reading none.

    The verdict is ``read``, ``outside`` (a symlink out of ``root``), ``unsupported`` (a suffix
    that is not read) or ``excluded`` (left out by the include / exclude globs).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError("source folder does not exist or is not a folder", path=str(root))
    included = [_glob_regex(p) for p in include]
    excluded = [_glob_regex(p) for p in exclude]
    for path, rel, outside in _walk(root, root):
        if not outside and path.suffix.lower() not in SUPPORTED_SUFFIXES:
            yield path, rel, "unsupported"
        elif not any(r.fullmatch(rel) for r in included) or any(r.fullmatch(rel) for r in excluded):
            yield path, rel, "excluded"
        else:
            yield path, rel, "outside" if outside else "read"


def _walk(root: Path, folder: Path) -> Iterator[tuple[Path, str, bool]]:
    """Depth-first, sorted by name: (path, relative POSIX path, points outside root) per file."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink() and not path.resolve().is_relative_to(root):
            log.warning("skipping %s: symlink points outside %s", path, root)
            yield path, path.relative_to(root).as_posix(), True
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, path)
        elif entry.is_file():
            yield path, path.relative_to(root).as_posix(), False


def _glob_regex(pattern: str) -> re.Pattern:
    """``**/`` = any number of directories, ``**`` = anything, ``*``/``?`` stay in one segment."""
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wild = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(t, re.escape(t)) for t in tokens))


def _read_file(path: Path, rel: str) -> Document | DocumentError:
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_SUFFIXES:
            text = _decode(path.read_bytes())
        elif suffix in HTML_SUFFIXES:
            text = html_to_text(_decode(path.read_bytes()))
        elif suffix == ".pdf":
            text = _read_pdf(path)
        else:
            text = _read_docx(path)
    except _Unreadable as exc:
        return DocumentError(rel, str(exc), doc_id=rel)
    except OSError as exc:
        return DocumentError(rel, f"cannot read file: {exc.strerror or exc}", doc_id=rel)
    if not text.strip():
        message = "empty document: no text to index; remove or exclude it"
        return DocumentError(rel, message, doc_id=rel)
    return _document(rel, rel, text)


def _document(doc_id: str, source_path: str, text: str, line: int | None = None) -> Document:
    text = _normalise_newlines(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Document(doc_id, source_path, text, digest, line)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _decode(data: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, else a confident charset-normalizer guess."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _Unreadable(f"starts with a UTF-16 mark but is not valid UTF-16: {exc}") from exc
    if _looks_binary(data):
        raise _Unreadable(
            "binary file with a text extension; exclude it or give it its real extension"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # slow import, only needed off the UTF-8 path

    matches = from_bytes(data, threshold=_MAX_MESS)
    best = matches.best()
    if best is None:
        raise _Unreadable(
            "not valid UTF-8 and no other encoding detected; re-save the file as UTF-8"
        )
    # on short texts the detector cannot tell single-byte Western code pages apart (French
    # latin-1 came back as Baltic cp1257); among near-ties, take the most common legacy encoding
    near = [m for m in matches if m.chaos <= best.chaos + _NEAR_TIE]
    return str(next((m for m in near if m.encoding in _PREFERRED_LEGACY), best))


def _looks_binary(data: bytes) -> bool:
    # NUL never occurs in text outside UTF-16/32; other C0 controls are rare in real text
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in b"\t\n\r\f\v\x1b")
    return controls > len(sample) * 0.1


def _read_pdf(path: Path) -> str:
    """Page texts joined with blank lines; pypdf's many failure types become one message."""
    import pypdf

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("encrypted PDF; provide a copy without a password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except _Unreadable:
        raise
    except Exception as exc:  # pypdf raises anything from PdfReadError to KeyError on bad input
        raise _Unreadable(f"corrupt PDF: {_describe(exc)}; re-export or repair the file") from exc
    return "\n\n".join(page.strip() for page in pages if page.strip())


def _read_docx(path: Path) -> str:
    """Paragraphs and table rows (cells joined by " | ") in body order."""
    import docx
    from docx.table import Table

    try:
        body = docx.Document(str(path))
        blocks = []
        for item in body.iter_inner_content():
            blocks.append(_docx_table(item) if isinstance(item, Table) else item.text)
    except Exception as exc:  # zipfile, lxml and python-docx errors alike mean a bad file
        message = f"corrupt DOCX: {_describe(exc)}; re-save it from a word processor"
        raise _Unreadable(message) from exc
    return "\n\n".join(block.strip() for block in blocks if block.strip())


def _docx_table(table) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) not in seen:  # merged cells repeat the same element
                seen.add(id(cell._tc))
                cells.append(cell.text.strip())
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# tags after which the reader sees a new paragraph
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table "
    "tbody thead tfoot tr ul".split()
)
# <title> is shown in the tab, not the page, and usually repeats the first heading
_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "title"})


class _TextExtractor(HTMLParser):
    """Event-driven, so nesting depth costs no stack (no RecursionError on 5,000 nested divs)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._current: list[str] = []
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in _HIDDEN_TAGS
        self._pre += tag == "pre"
        if tag in _BLOCK_TAGS:
            self._flush()
        elif tag == "br":
            self._current.append("\n")
        elif tag in ("td", "th"):
            self._current.append(" ")

    def handle_endtag(self, tag):
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        if tag == "pre" and self._pre:
            self._pre -= 1

    def handle_data(self, data):
        if not self._hidden:
            self._current.append(data if self._pre else re.sub(r"\s+", " ", data))

    def _flush(self):
        text = "".join(self._current)
        self._current = []
        lines = (line.strip() for line in text.split("\n"))
        text = "\n".join(line for line in lines if line) if not self._pre else text.strip("\n")
        if text.strip():
            self.paragraphs.append(text)

    def close(self):
        super().close()
        self._flush()


def html_to_text(html: str) -> str:
    """Visible text of an HTML page, one paragraph per block element, blank lines between."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return "\n\n".join(parser.paragraphs)


def iter_table(
    path: Path, *, id_column: str, text_column: str, root: Path | None = None
) -> Iterator[Document | DocumentError]:
    """Yield one document per row of a CSV, JSONL or Parquet file, reading in batches.

    Args:
        path: the table file; its suffix picks the format.
        id_column: column holding a unique, non-empty row id.
        text_column: column holding the text to embed.
        root: folder that ``source_path`` is relative to; defaults to the file's own folder.

    Yields:
        Documents with ``doc_id = "<relpath>#<row id>"`` and ``line`` = 1-based line (CSV, JSONL)
        or row number (Parquet); a :class:`DocumentError` for an empty, duplicate or broken row.

    Raises:
        InputError: before any row, when the format is unknown, the file cannot be opened or a
            column is missing; later, when the file breaks so that no further row can be read.
    """
    path = Path(path)
    rel = _relative(path, root)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            f"unsupported table format {suffix!r}; use one of {sorted(TABLE_SUFFIXES)}", path=rel
        )
    readers = {".csv": _csv_rows, ".parquet": _parquet_rows}
    rows = readers.get(suffix, _jsonl_rows)(path, rel, (id_column, text_column))
    seen: dict[str, int] = {}
    for row in rows:
        yield row if isinstance(row, DocumentError) else _row_document(rel, row, seen, text_column)


def _relative(path: Path, root: Path | None) -> str:
    resolved = path.resolve()
    base = Path(root).resolve() if root is not None else resolved.parent
    if not resolved.is_relative_to(base):
        raise InputError(f"table is outside the source root {base}", path=str(path))
    return resolved.relative_to(base).as_posix()


def _row_document(rel: str, row: tuple, seen: dict[str, int], text_column: str):
    line, raw_id, raw_text = row
    row_id = _cell_str(raw_id).strip()
    if not row_id:
        return DocumentError(rel, "empty id; give every row an id", line=line)
    doc_id = f"{rel}#{row_id}"
    if row_id in seen:
        return DocumentError(
            rel, f"duplicate id {row_id!r} (first on line {seen[row_id]}); ids must be unique",
            line=line, doc_id=doc_id,
        )
    seen[row_id] = line
    if raw_text is not None and not isinstance(raw_text, str):
        message = f"column {text_column!r} holds {type(raw_text).__name__}, not text"
        return DocumentError(rel, message, line=line, doc_id=doc_id)
    if not (raw_text or "").strip():
        return DocumentError(rel, "empty document: the text is blank", line=line, doc_id=doc_id)
    return _document(doc_id, rel, raw_text, line)


def _cell_str(value) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _missing(rel: str, columns: Sequence[str], wanted: tuple[str, str]) -> None:
    for name in wanted:
        if name not in columns:
            have = ", ".join(map(repr, columns)) or "none"
            raise InputError(
                f"column {name!r} not found (columns: {have}); fix the column name in the config",
                path=rel,
            )


def _csv_rows(path: Path, rel: str, wanted: tuple[str, str]):
    # texts are long; the default 128 KiB field limit would reject ordinary documents
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            _missing(rel, header, wanted)
            id_at, text_at = header.index(wanted[0]), header.index(wanted[1])
            line = reader.line_num + 1
            for record in reader:
                if any(record):
                    yield line, _field(record, id_at), _field(record, text_at)
                line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read CSV beyond this point ({_describe(exc)}); save it as UTF-8 CSV",
                path=rel, line=reader.line_num + 1,
            ) from exc


def _field(record: list[str], index: int) -> str:
    return record[index] if index < len(record) else ""


def _jsonl_rows(path: Path, rel: str, wanted: tuple[str, str]):
    # broken lines before the first object wait here, so a missing column raises before any row
    pending: list[DocumentError] = []
    checked = False
    for line, record in _jsonl_records(path, rel):
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
        yield line, record.get(wanted[0]), record.get(wanted[1])
    if not checked:
        yield from pending


def _jsonl_records(path: Path, rel: str):
    """(line, dict or DocumentError) for each non-blank line."""
    with open(path, "rb") as handle:
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


def _parquet_rows(path: Path, rel: str, wanted: tuple[str, str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {_describe(exc)}", path=rel) from exc
    _missing(rel, table.schema_arrow.names, wanted)
    row = 0
    for batch in table.iter_batches(batch_size=_BATCH_ROWS, columns=list(dict.fromkeys(wanted))):
        ids = batch.column(wanted[0]).to_pylist()
        texts = batch.column(wanted[1]).to_pylist()
        for row_id, text in zip(ids, texts):
            row += 1
            yield row, row_id, text
