"""Embed planned batches: the part of a corpus run that can run anywhere.

A worker (a thread, a Dask process, another machine) reads its batches from the plan file (in
the output's bucket when it runs elsewhere), calls the API, checks every vector, and commits one
Parquet part per batch under a key fixed by run id and batch number. A batch whose part is
already committed (this task ran before, on a worker that died) is not sent again. It never
touches DuckDB: the run's single writer reads the parts.

Rejections are isolated: a batch refused with a 4xx is split in halves and resent until only the
offending texts fail, so one bad text never costs its 99 neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quant_batch.client import EmbeddingResult, QuantClient
from quant_batch.errors import RUN_STOPPERS, RequestRejected, TransientError, stop_reason
from quant_batch.pricing import Budget
from quant_batch.store.commit import parquet_bytes
from quant_batch.store.layout import Layout
from quant_batch.store.output import OutputRef, OutputWriter
from quant_batch.store.records import ErrorRecord, commit_errors, vector_array
from quant_batch.tokens import estimate_tokens

NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ShardTask:
    """A contiguous range of planned batches; plain data so it pickles to any worker."""

    output: OutputRef
    plan_path: str
    """The plan file on the planning machine."""
    run_id: str
    generation: str
    model: str
    dimensions: int
    normalize: bool
    first_batch: int
    end_batch: int
    offset: int = 0
    """The run-wide number of the plan file's first row group (batch ``b`` is row group ``b - offset``)."""
    plan_key: str | None = None
    """The plan file's key in a bucket output, for a worker on another machine."""


@dataclass
class ShardResult:
    parts: list[str] = field(default_factory=list)
    error_part: str | None = None
    api_calls: int = 0
    attempts: int = 0
    throttled: int = 0
    embedded: int = 0
    failed: int = 0
    input_tokens: int = 0
    batches_skipped: int = 0
    duplicates_avoided: int = 0
    """Batches found committed by an earlier attempt (not sent again), or whose commit lost to one."""
    chunks_committed_before: int = 0
    """Chunks of those batches: done, by an attempt whose own result was lost with its worker."""
    stopped: str | None = None
    """Why this shard stopped sending early: the spend cap, or a run-level failure."""
    halted: str | None = None
    """A run-level failure (refused token, unreachable service): the whole run must stop."""


def check_vectors(result: EmbeddingResult, n: int, task: ShardTask) -> list[str | None]:
    """Quality gate: one problem message (or None) per returned vector."""
    if result.model != task.model or result.dimension != task.dimensions:
        msg = f"response is {result.model}/{result.dimension}, requested {task.model}/{task.dimensions}"
        return [msg] * n
    v = result.vectors
    if v.ndim != 2 or v.shape != (n, task.dimensions):
        return [f"vector shape {v.shape}, expected ({n}, {task.dimensions})"] * n
    finite = np.isfinite(v).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(v), v, 0), axis=1)
    problems: list[str | None] = []
    for ok, norm in zip(finite, norms, strict=True):
        if not ok:
            problems.append("vector has NaN or infinite values")
        elif norm == 0:
            problems.append("vector is all zeros")
        elif task.normalize and abs(norm - 1.0) > NORM_TOLERANCE:
            problems.append(f"vector norm {norm:.4f}, expected 1 (normalize=true)")
        else:
            problems.append(None)
    return problems


class _ShardRunner:
    def __init__(self, task: ShardTask, client: QuantClient, budget: Budget | None, price_per_token: float):
        self.task = task
        self.client = client
        self.budget = budget if budget is not None else Budget(None)
        self.price = price_per_token
        self.out = task.output.open()
        # parts of this shard committed by an earlier attempt (Dask re-runs a dead worker's
        # tasks): one listing per shard instead of one check per batch
        self.committed = self.out.storage.existing(
            [Layout.vector_part_key(task.generation, task.run_id, b) for b in range(task.first_batch, task.end_batch)]
        )
        self.result = ShardResult()
        self.errors: list[ErrorRecord] = []

    def error(self, row: dict, stage: str, exc_or_msg: Exception | str, *, retryable: bool = False) -> None:
        if isinstance(exc_or_msg, Exception):
            message = getattr(exc_or_msg, "server_message", None) or str(exc_or_msg)
            status, kind = getattr(exc_or_msg, "status", None), type(exc_or_msg).__name__
        else:
            message, status, kind = exc_or_msg, None, "QualityGate"
        self.errors.append(
            ErrorRecord(
                self.task.run_id,
                stage,
                message,
                source_path=row["source_path"],
                doc_id=row["doc_id"],
                chunk_id=row["chunk_id"],
                key=row["key"],
                status=status,
                kind=kind,
                retryable=retryable,
            )
        )
        self.result.failed += 1

    def embed_isolating(self, rows: list[dict]) -> list[tuple[dict, np.ndarray, int]]:
        """Embed ``rows``; on a 4xx split and retry halves until only bad texts remain."""
        t = self.task
        if self.budget.halted:  # another worker hit a run-level failure: these rows stay pending
            return []
        self.result.api_calls += 1
        try:
            res = self.client.embed(
                [r["text"] for r in rows], model=t.model, dimensions=t.dimensions, normalize=t.normalize
            )
        except RUN_STOPPERS as exc:
            # not the rows' fault: no error records, they are sent again by the next run
            self.result.halted = stop_reason(exc)
            self.budget.halt(self.result.halted)
            return []
        except RequestRejected as exc:
            if len(rows) == 1:
                self.error(rows[0], "embed", exc)
                return []
            mid = len(rows) // 2
            return self.embed_isolating(rows[:mid]) + self.embed_isolating(rows[mid:])
        except TransientError as exc:
            for r in rows:
                self.error(r, "embed", exc, retryable=True)
            return []
        self.result.attempts += res.info.attempts
        self.result.throttled += res.info.throttled
        self.result.input_tokens += res.usage.input_tokens
        tokens = _apportion(res.usage.input_tokens, [len(r["text"]) for r in rows])
        out = []
        for row, vec, tok, problem in zip(rows, res.vectors, tokens, check_vectors(res, len(rows), t), strict=True):
            if problem:
                self.error(row, "quality", problem)
            else:
                out.append((row, vec, tok))
        return out

    def run_batch(self, rows: list[dict], batch_no: int) -> None:
        t = self.task
        key = Layout.vector_part_key(t.generation, t.run_id, batch_no)
        if key in self.committed:  # an earlier attempt of this task did it: do not pay twice
            self.result.duplicates_avoided += 1
            self.result.chunks_committed_before += len(rows)
            return
        estimate = self.price * estimate_tokens(sum(len(r["text"]) for r in rows))
        if not self.budget.reserve(estimate):
            self.result.batches_skipped += 1
            self.result.stopped = self.budget.halted or "spend cap reached"
            return
        tokens_before = self.result.input_tokens
        good = self.embed_isolating(rows)
        self.budget.settle(estimate, self.price * (self.result.input_tokens - tokens_before))
        if self.result.halted:
            self.result.stopped = self.result.halted
        if not good:
            return
        # a part holds what a key's vector is, not where it is used: the live index (state files)
        # maps chunks to keys, so the text is stored once, there
        table = pa.table(
            {
                "key": [r["key"] for r, _, _ in good],
                "tokens": pa.array([tok for _, _, tok in good], pa.int32()),
                "model": [t.model] * len(good),
                "dimensions": pa.array([t.dimensions] * len(good), pa.int32()),
                "normalize": [t.normalize] * len(good),
                "run_id": [t.run_id] * len(good),
                "vector": vector_array(np.stack([v for _, v, _ in good])),
            }
        )
        meta = {
            "model": t.model,
            "dimensions": str(t.dimensions),
            "normalize": str(t.normalize).lower(),
            "run_id": t.run_id,
        }
        if not self.out.commit(key, parquet_bytes(table, meta, dictionary=("model", "run_id"))):
            self.result.duplicates_avoided += 1  # another attempt committed it first: same chunks
            self.result.chunks_committed_before += len(good)
            return
        self.result.parts.append(key)
        self.result.embedded += len(good)


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split a batch's token count over its texts in proportion to their length."""
    s = sum(weights) or 1
    return [round(total * w / s) for w in weights]


def embed_shard(
    task: ShardTask,
    client: QuantClient,
    *,
    budget: Budget | None = None,
    price_per_token: float = 0.0,
    on_batch: Callable[[int], None] | None = None,
) -> ShardResult:
    """Embed the batches ``[task.first_batch, task.end_batch)`` of the plan; see module doc."""
    runner = _ShardRunner(task, client, budget, price_per_token)
    plan = _open_plan(task, runner.out)
    for b in range(task.first_batch, task.end_batch):
        if runner.result.stopped:
            runner.result.batches_skipped += 1
            continue
        rows = plan.read_row_group(b - task.offset).to_pylist()
        runner.run_batch(rows, b)
        if on_batch:
            on_batch(len(rows))
    name = f"{task.run_id}-embed-{task.first_batch:06d}"
    runner.result.error_part = commit_errors(runner.out, Layout.error_part_key(name), runner.errors)
    return runner.result


def _open_plan(task: ShardTask, out: OutputWriter) -> pq.ParquetFile:
    """The plan file: from the bucket when the shard may run on another machine, else here.

    A remote worker reads the bucket even when a file of that name exists where it runs: one GET
    per shard, and a cluster of one machine takes the same path as a cluster of many.
    """
    if task.plan_key is None:
        return pq.ParquetFile(task.plan_path)
    return pq.ParquetFile(pa.BufferReader(out.storage.read_bytes(task.plan_key)))
