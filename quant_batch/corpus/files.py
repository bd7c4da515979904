"""Documents from a folder: the walk, and the decoders for text, Markdown, HTML, PDF and DOCX.

Plain text is decoded as UTF-8 (with or without a BOM), UTF-16 with a BOM, or else a confident
charset-normalizer guess; HTML becomes its visible text, one paragraph per block element.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

from quant_batch.corpus.documents import Document, DocumentError, _describe, _document
from quant_batch.errors import InputError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}

_MAX_MESS = 0.2  # charset-normalizer "chaos" above this: we do not trust the guess
_NEAR_TIE = 0.15  # guesses this close to the best are treated as equally plausible
_PREFERRED_LEGACY = ("cp1252", "latin_1", "iso8859_15")


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
    # the store owns the glob rule (it lists buckets with it); imported here, not at the top,
    # because the store module loads pyarrow and reading a folder needs none of it
    from quant_batch.store.storage import glob_regex

    included = [glob_regex(p) for p in include]
    excluded = [glob_regex(p) for p in exclude]
    for path, rel, outside in _walk(root, root):
        if not outside and path.suffix.lower() not in SUPPORTED_SUFFIXES:
            yield path, rel, "unsupported"
        elif not any(r.fullmatch(rel) for r in included) or any(r.fullmatch(rel) for r in excluded):
            yield path, rel, "excluded"
        else:
            yield path, rel, "outside" if outside else "read"


def read_document(path: Path) -> Document | DocumentError:
    """One document file on its own; ``doc_id`` and ``source_path`` are its file name."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return DocumentError(
            path.name,
            f"unsupported document type {path.suffix!r}; use one of {sorted(SUPPORTED_SUFFIXES)}",
            doc_id=path.name,
        )
    return _read_file(path, path.name)


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
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    # the modified time is not hashed: touching a file must not re-chunk it
    return _document(
        rel, rel, text, metadata={"path": rel, "extension": suffix, "modified": modified}, hash_metadata=False
    )


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
        raise _Unreadable("binary file with a text extension; exclude it or give it its real extension")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # slow import, only needed off the UTF-8 path

    matches = from_bytes(data, threshold=_MAX_MESS)
    best = matches.best()
    if best is None:
        raise _Unreadable("not valid UTF-8 and no other encoding detected; re-save the file as UTF-8")
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
