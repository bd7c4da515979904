"""Plan a corpus run: read, chunk, key, and keep only the chunks the ledger has not seen.

Streaming all the way: documents are read one at a time, chunks go straight to two Parquet
writers (the new live index, and the pending work cut into API batches, one row group per
batch), so memory stays flat whatever the corpus size. A document whose content hash, chunker
and vector space match the last complete run is not even chunked: its chunks are carried over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quant_batch.corpus.sources import iter_sources
from quant_batch.embed.config import CorpusConfig
from quant_batch.corpus.chunking import chunk_text
from quant_batch.corpus.readers import Document, DocumentError, iter_folder, iter_table
from quant_batch.errors import AuthError, InputError, RequestRejected, TransientError
from quant_batch.hashing import chunk_id, chunk_key, embedding_generation
from quant_batch.store.files import TMP_PREFIX
from quant_batch.store.layout import Layout
from quant_batch.store.records import ErrorRecord
from quant_batch.tokens import estimate_tokens

PLAN_SCHEMA = pa.schema(
    [
        ("batch", pa.int32()),
        ("key", pa.string()),
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("position", pa.int32()),
        ("text", pa.string()),
    ]
)
LIVE_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("position", pa.int32()),
        ("start_char", pa.int32()),
        ("end_char", pa.int32()),
        ("text", pa.string()),
        ("key", pa.string()),
        ("context", pa.string()),
    ]
)
DOC_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("content_hash", pa.string()),
        ("chunker", pa.string()),
        ("chunks", pa.int32()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("run_id", pa.string()),
    ]
)


@dataclass
class PlanStats:
    documents: int = 0
    documents_failed: int = 0
    documents_unchanged: int = 0
    chunks_total: int = 0
    chunks_pending: int = 0
    chunks_unchanged: int = 0
    chunks_duplicate: int = 0
    chunks_skipped_dead: int = 0
    batches: int = 0
    pending_chars: int = 0

    @property
    def estimated_tokens(self) -> int:
        return estimate_tokens(self.pending_chars) if self.pending_chars else 0


@dataclass
class Plan:
    run_id: str
    generation: str
    path: Path
    live_tmp: Path
    docs_tmp: Path
    stats: PlanStats
    batch_chars: list[int]
    carry_doc_ids: set[str] = field(default_factory=set)
    errors: list[ErrorRecord] = field(default_factory=list)


class _RowBuffer:
    """Columnar buffer flushed to a ParquetWriter every ``flush_rows`` rows."""

    def __init__(self, path: Path, schema: pa.Schema, flush_rows: int = 5000):
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.schema = schema
        self.rows: list[dict] = []
        self.flush_rows = flush_rows

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _Batcher:
    """Cuts pending chunks into API batches: at most ``size`` texts and ``max_chars`` characters."""

    def __init__(self, path: Path, size: int, max_chars: int):
        self.writer = pq.ParquetWriter(path, PLAN_SCHEMA, compression="zstd")
        self.size, self.max_chars = size, max_chars
        self.rows: list[dict] = []
        self.chars = 0
        self.batch_chars: list[int] = []

    def add(self, row: dict) -> None:
        n = len(row["text"])
        if self.rows and (len(self.rows) >= self.size or self.chars + n > self.max_chars):
            self.flush()
        row["batch"] = len(self.batch_chars)
        self.rows.append(row)
        self.chars += n

    def flush(self) -> None:
        if self.rows:
            # one row group per batch: a worker reads exactly its batches, nothing else
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=PLAN_SCHEMA), row_group_size=len(self.rows))
            self.batch_chars.append(self.chars)
            self.rows, self.chars = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _previous_documents(layout: Layout, generation: str) -> dict[str, tuple[str, str, str, int]]:
    """doc_id → (content_hash, chunker, status, chunks) from the last finished run of this space."""
    path = layout.documents(generation)
    if not path.exists():
        return {}
    t = pq.read_table(path, columns=["doc_id", "content_hash", "chunker", "status", "chunks"])
    return {
        d: (h, c, s, n)
        for d, h, c, s, n in zip(*(t.column(i).to_pylist() for i in range(5)), strict=True)
    }


def plan_corpus(
    config: CorpusConfig,
    layout: Layout,
    run_id: str,
    done: set[str],
    *,
    dead: set[str] = frozenset(),
    documents: Iterable[Document | DocumentError] | None = None,
    scratch: Path | None = None,
    contextualize: Callable[[Document], str] | None = None,
) -> Plan:
    """Read and chunk the corpus; write the pending batches and the new live index to disk.

    Args:
        done: keys already embedded in this vector space (the ledger).
        dead: keys that failed terminally before (a 400); skipped until replayed.
        documents: override the configured sources (tests, replays).
        scratch: folder for the plan files (default: the output's state folder); a dry plan
            writes them elsewhere so the output folder is not touched.
        contextualize: with ``contextual_chunks`` on, writes a changed document's context.
    """
    gen = embedding_generation(config.model, config.dimensions, config.normalize)
    chunker = config.chunking.fingerprint() + config.contextual_chunks.fingerprint()
    folder = scratch or layout.state
    folder.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        run_id=run_id,
        generation=gen,
        path=folder / f"plan-{run_id}.parquet",
        live_tmp=folder / f"{TMP_PREFIX}live-{run_id}.parquet",
        docs_tmp=folder / f"{TMP_PREFIX}documents-{run_id}.parquet",
        stats=PlanStats(),
        batch_chars=[],
    )
    previous = _previous_documents(layout, gen)
    stats = plan.stats
    live = _RowBuffer(plan.live_tmp, LIVE_SCHEMA)
    docs = _RowBuffer(plan.docs_tmp, DOC_SCHEMA, flush_rows=2000)
    batcher = _Batcher(plan.path, config.batch_size, config.max_batch_chars)
    pending_keys: set[str] = set()
    try:
        for item in documents if documents is not None else iter_sources(config.sources):
            stats.documents += 1
            if isinstance(item, DocumentError):
                stats.documents_failed += 1
                doc_id = item.doc_id or item.source_path
                plan.errors.append(
                    ErrorRecord(run_id, "read", item.message, source_path=item.source_path, line=item.line, doc_id=doc_id)
                )
                if doc_id in previous:  # keep its last good chunks searchable
                    plan.carry_doc_ids.add(doc_id)
                continue
            prev = previous.get(item.doc_id)
            if prev and prev[0] == item.content_hash and prev[1] == chunker and prev[2] == "ok":
                plan.carry_doc_ids.add(item.doc_id)
                stats.documents_unchanged += 1
                stats.chunks_total += prev[3]
                stats.chunks_unchanged += prev[3]
                continue
            try:
                context = contextualize(item) if contextualize else None
            except AuthError:
                raise
            except (RequestRejected, TransientError) as exc:
                plan.errors.append(ErrorRecord(run_id, "context", str(exc), source_path=item.source_path,
                                               doc_id=item.doc_id, kind=type(exc).__name__))
                if item.doc_id in previous:
                    plan.carry_doc_ids.add(item.doc_id)
                continue
            chunks = chunk_text(item.text, config.chunking)
            for c in chunks:
                embedded = f"{context}\n\n{c.text}" if context else c.text  # what the vector is of
                key = chunk_key(
                    embedded, model=config.model, dimensions=config.dimensions, normalize=config.normalize, chunker=chunker
                )
                cid = chunk_id(item.doc_id, c.position, c.text)
                row = {
                    "chunk_id": cid, "doc_id": item.doc_id, "source_path": item.source_path,
                    "position": c.position, "start_char": c.start, "end_char": c.end, "text": c.text, "key": key,
                    "context": context,
                }
                live.add(row)
                stats.chunks_total += 1
                if key in done:
                    stats.chunks_unchanged += 1
                elif key in pending_keys:
                    stats.chunks_duplicate += 1
                elif key in dead:
                    stats.chunks_skipped_dead += 1
                else:
                    pending_keys.add(key)
                    stats.chunks_pending += 1
                    stats.pending_chars += len(embedded)
                    batcher.add({**{k: row[k] for k in ("key", "chunk_id", "doc_id", "source_path", "position")},
                                 "text": embedded})
            docs.add(
                {
                    "doc_id": item.doc_id, "source_path": item.source_path, "content_hash": item.content_hash,
                    "chunker": chunker, "chunks": len(chunks), "status": "pending", "message": None, "run_id": run_id,
                }
            )
    finally:
        live.close()
        docs.close()
        batcher.close()
    plan.batch_chars = batcher.batch_chars
    stats.batches = len(batcher.batch_chars)
    return plan
