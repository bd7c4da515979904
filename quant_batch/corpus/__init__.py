"""Corpus stage: read documents from folders and tables, then cut them into chunks."""

from quant_batch.corpus.chunking import CHUNKER_VERSION, Chunk, ChunkSettings, chunk_text
from quant_batch.corpus.readers import (
    SUPPORTED_SUFFIXES,
    Document,
    DocumentError,
    iter_folder,
    iter_table,
)

__all__ = [
    "CHUNKER_VERSION",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "ChunkSettings",
    "Document",
    "DocumentError",
    "chunk_text",
    "iter_folder",
    "iter_table",
]
