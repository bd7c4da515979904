"""Plan a corpus run: read, chunk, key, and keep only the chunks the ledger has not seen.

Streaming all the way: documents are read one at a time, chunks go straight to two Parquet
writers (the new live index, and the pending work cut into API batches, one row group per
batch), so memory stays flat whatever the corpus size. A document whose content hash, chunker
and vector space match the last complete run is not even chunked: its chunks are carried over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quant_batch.compact import U64Map, hex_prefix
from quant_batch.corpus.chunking import iter_chunks
from quant_batch.corpus.readers import Document, DocumentError
from quant_batch.corpus.sources import iter_sources
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.previous import PreviousDocuments
from quant_batch.errors import AuthError, RequestRejected, TransientError
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
        ("metadata", pa.string()),  # JSON: folder path/extension/modified, or a table's metadata_columns
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
    previous: PreviousDocuments = field(default_factory=PreviousDocuments)
    """The documents of the last publish, and which of them this run carries over unchanged."""
    errors: list[ErrorRecord] = field(default_factory=list)
    shards: list[PlannedShard] = field(default_factory=list)
    """The shard files the batches were cut into (``path`` is their common prefix)."""
    stopped: bool = False
    """Reading ended early: the planned index is incomplete and must not replace the published one."""


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


@dataclass(frozen=True)
class PlannedShard:
    """Batches ``[first, end)`` of a run, stored as row groups 0.. of their own plan file."""

    path: Path
    first: int
    end: int


class _Batcher:
    """Cuts pending chunks into API batches (at most ``size`` texts and ``max_chars`` characters)
    and batches into shard files, handing each shard over the moment it is complete.

    Shards start at one batch, so the first API call goes out while the corpus is still being
    read, and double every ``concurrency`` shards up to ``max_batches`` (few Prefect tasks for
    big corpora).
    """

    def __init__(
        self,
        folder: Path,
        run_id: str,
        size: int,
        max_chars: int,
        *,
        concurrency: int = 8,
        max_batches: int = 25,
        on_shard: Callable[[PlannedShard], None] | None = None,
    ):
        self.folder, self.run_id = folder, run_id
        self.size, self.max_chars = size, max_chars
        self.concurrency, self.max_batches = max(1, concurrency), max_batches
        self.on_shard = on_shard
        self.rows: list[dict] = []
        self.chars = 0
        self.batch_chars: list[int] = []
        self.shards: list[PlannedShard] = []
        self.writer: pq.ParquetWriter | None = None
        self.shard_first = 0

    def add(self, row: dict) -> None:
        n = len(row["text"])
        if self.rows and (len(self.rows) >= self.size or self.chars + n > self.max_chars):
            self.flush()
        row["batch"] = len(self.batch_chars)
        self.rows.append(row)
        self.chars += n

    def _quota(self) -> int:
        return min(self.max_batches, 2 ** (len(self.shards) // self.concurrency))

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            path = self.folder / f"plan-{self.run_id}-{len(self.shards):05d}.parquet"
            self.writer = pq.ParquetWriter(path, PLAN_SCHEMA, compression="zstd")
        # one row group per batch: a worker reads exactly its batches, nothing else
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=PLAN_SCHEMA), row_group_size=len(self.rows))
        self.batch_chars.append(self.chars)
        self.rows, self.chars = [], 0
        if len(self.batch_chars) - self.shard_first >= self._quota():
            self._close_shard()

    def _close_shard(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        shard = PlannedShard(Path(self.writer.where), self.shard_first, len(self.batch_chars))
        self.writer, self.shard_first = None, len(self.batch_chars)
        self.shards.append(shard)
        if self.on_shard:
            self.on_shard(shard)

    def close(self) -> None:
        self.flush()
        self._close_shard()


class _DocumentPlanner:
    """The body of :func:`plan_corpus` for one document: carry it over, or contextualize and chunk it.

    Owns the three writers (live index, documents table, pending batches) and the keys pending
    in this run, so a chunk repeated across documents is sent once.
    """

    def __init__(
        self,
        config: CorpusConfig,
        layout: Layout,
        plan: Plan,
        chunker: str,
        done: Container[str],
        dead: Container[str],
        contextualize: Callable[[Document], str] | None,
        on_shard: Callable[[PlannedShard], None] | None,
    ):
        self.config, self.plan, self.chunker = config, plan, chunker
        self.done, self.dead, self.contextualize = done, dead, contextualize
        self.previous = plan.previous = PreviousDocuments(layout.documents(plan.generation))
        self.live = _RowBuffer(plan.live_tmp, LIVE_SCHEMA)
        self.docs = _RowBuffer(plan.docs_tmp, DOC_SCHEMA, flush_rows=2000)
        # shard files go beside the plan's prefix: the state folder, or the dry run's scratch
        self.batcher = _Batcher(
            plan.path.parent,
            plan.run_id,
            config.batch_size,
            config.max_batch_chars,
            concurrency=config.concurrency,
            on_shard=on_shard,
        )
        plan.batch_chars = self.batcher.batch_chars  # the same list: filled while shards are handed over
        # the keys sent in this run (a chunk repeated across documents is sent once), 16 bytes each
        self.pending_keys = U64Map()

    def add(self, item: Document | DocumentError) -> None:
        stats = self.plan.stats
        stats.documents += 1
        if isinstance(item, DocumentError):
            self._read_error(item)
        elif not self._carried_over(item):
            ok, context = self._context(item)
            if ok:
                self._chunk(item, context)

    def close(self) -> None:
        self.live.close()
        self.docs.close()
        self.batcher.close()

    def _read_error(self, item: DocumentError) -> None:
        self.plan.stats.documents_failed += 1
        doc_id = item.doc_id or item.source_path
        self.plan.errors.append(
            ErrorRecord(
                self.plan.run_id, "read", item.message, source_path=item.source_path, line=item.line, doc_id=doc_id
            )
        )
        row = self.previous.find(doc_id)
        if row is not None:  # keep its last good chunks searchable
            self.previous.carry(row)

    def _carried_over(self, item: Document) -> bool:
        """Same content, chunker and space as the last complete run: its chunks stay as they are."""
        row = self.previous.find(item.doc_id)
        if row is None or not self.previous.unchanged(row, item.content_hash, self.chunker):
            return False
        stats = self.plan.stats
        self.previous.carry(row)
        stats.documents_unchanged += 1
        stats.chunks_total += self.previous.chunks(row)
        stats.chunks_unchanged += self.previous.chunks(row)
        return True

    def _context(self, item: Document) -> tuple[bool, str | None]:
        """(False, None) when the context call failed for this document: it is recorded and skipped."""
        try:
            return True, self.contextualize(item) if self.contextualize else None
        except AuthError:
            raise
        except (RequestRejected, TransientError) as exc:
            self.plan.errors.append(
                ErrorRecord(
                    self.plan.run_id,
                    "context",
                    str(exc),
                    source_path=item.source_path,
                    doc_id=item.doc_id,
                    kind=type(exc).__name__,
                )
            )
            row = self.previous.find(item.doc_id)
            if row is not None:
                self.previous.carry(row)
            return False, None

    def _chunk(self, item: Document, context: str | None) -> None:
        config, stats = self.config, self.plan.stats
        n_chunks = 0  # a big document's first batches go out while it is still being cut
        metadata = json.dumps(item.metadata, ensure_ascii=False, default=str) if item.metadata else None
        for c in iter_chunks(item.text, config.chunking):
            n_chunks += 1
            embedded = f"{context}\n\n{c.text}" if context else c.text  # what the vector is of
            key = chunk_key(
                embedded,
                model=config.model,
                dimensions=config.dimensions,
                normalize=config.normalize,
                chunker=self.chunker,
            )
            cid = chunk_id(item.doc_id, c.position, c.text)
            row = {
                "chunk_id": cid,
                "doc_id": item.doc_id,
                "source_path": item.source_path,
                "position": c.position,
                "start_char": c.start,
                "end_char": c.end,
                "text": c.text,
                "key": key,
                "context": context,
                "metadata": metadata,
            }
            self.live.add(row)
            stats.chunks_total += 1
            prefix = hex_prefix(key)
            if key in self.done:
                stats.chunks_unchanged += 1
            elif prefix in self.pending_keys:
                stats.chunks_duplicate += 1
            elif key in self.dead:
                stats.chunks_skipped_dead += 1
            else:
                self.pending_keys.setdefault(prefix, 0)
                stats.chunks_pending += 1
                stats.pending_chars += len(embedded)
                self.batcher.add(
                    {**{k: row[k] for k in ("key", "chunk_id", "doc_id", "source_path", "position")}, "text": embedded}
                )
        self.docs.add(
            {
                "doc_id": item.doc_id,
                "source_path": item.source_path,
                "content_hash": item.content_hash,
                "chunker": self.chunker,
                "chunks": n_chunks,
                "status": "pending",
                "message": None,
                "run_id": self.plan.run_id,
            }
        )


def plan_corpus(
    config: CorpusConfig,
    layout: Layout,
    run_id: str,
    done: Container[str],
    *,
    dead: frozenset[str] | set[str] = frozenset(),
    documents: Iterable[Document | DocumentError] | None = None,
    scratch: Path | None = None,
    contextualize: Callable[[Document], str] | None = None,
    on_shard: Callable[[PlannedShard], None] | None = None,
    on_start: Callable[[Plan], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Plan:
    """Read and chunk the corpus; write the pending batches and the new live index to disk.

    Args:
        done: keys already embedded in this vector space (the ledger).
        dead: keys that failed terminally before (a 400); skipped until replayed.
        documents: override the configured sources (tests, replays).
        scratch: folder for the plan files (default: the output's state folder); a dry plan
            writes them elsewhere so the output folder is not touched.
        contextualize: with ``contextual_chunks`` on, writes a changed document's context.
        on_shard: called with each shard of batches as soon as it is complete, while reading
            goes on; a run starts sending it at once.
        on_start: called with the plan before reading starts; its counters then grow live.
        stop: asked before each document; True ends reading early (the run stopped sending),
            and the plan is marked ``stopped``: it must not be published.
    """
    gen = embedding_generation(config.model, config.dimensions, config.normalize)
    chunker = config.chunking.fingerprint() + config.contextual_chunks.fingerprint()
    folder = scratch or layout.state
    folder.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        run_id=run_id,
        generation=gen,
        path=folder / f"plan-{run_id}",
        live_tmp=folder / f"{TMP_PREFIX}live-{run_id}.parquet",
        docs_tmp=folder / f"{TMP_PREFIX}documents-{run_id}.parquet",
        stats=PlanStats(),
        batch_chars=[],
    )
    if on_start:
        on_start(plan)
    planner = _DocumentPlanner(config, layout, plan, chunker, done, dead, contextualize, on_shard)
    try:
        for item in documents if documents is not None else iter_sources(config.sources, config.storage):
            if stop is not None and stop():
                plan.stopped = True
                break
            planner.add(item)
    finally:
        planner.close()
    plan.shards = planner.batcher.shards
    plan.stats.batches = len(planner.batcher.batch_chars)
    return plan
