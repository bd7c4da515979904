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

from quant_batch.corpus.documents import Document, DocumentError
from quant_batch.corpus.files import (
    HTML_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TEXT_SUFFIXES,
    folder_files,
    html_to_text,
    iter_folder,
    read_document,
)
from quant_batch.corpus.tables import TABLE_SUFFIXES, iter_table

# the folder reader lives in ``files``, the table reader in ``tables`` and the two result types
# in ``documents``; every name stays importable from here
__all__ = [
    "HTML_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TABLE_SUFFIXES",
    "TEXT_SUFFIXES",
    "Document",
    "DocumentError",
    "folder_files",
    "html_to_text",
    "iter_folder",
    "iter_table",
    "read_document",
]
