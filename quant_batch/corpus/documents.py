"""What the readers yield: a :class:`Document`, or a :class:`DocumentError` in its place."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Document:
    """One text to chunk and embed, with the metadata stored beside its chunks."""

    doc_id: str
    source_path: str
    text: str
    content_hash: str
    line: int | None = None
    metadata: dict[str, Any] | None = None
    """Folder documents: path, extension, modified (ISO 8601); table rows: the chosen columns."""


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


def _document(
    doc_id: str,
    source_path: str,
    text: str,
    line: int | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    hash_metadata: bool = True,
) -> Document:
    text = _normalise_newlines(text)
    h = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    if metadata and hash_metadata:  # changed metadata re-chunks a document (free: its chunk keys stay)
        h.update(b"\x00" + json.dumps(metadata, sort_keys=True, default=str).encode())
    return Document(doc_id, source_path, text, h.hexdigest(), line, metadata)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
