"""A corpus run: lock → sync → plan → embed shards → load parts → publish the new index.

``CorpusRun`` holds the single-writer side (lock, DuckDB, state files). The embedding work is
``embed_shard`` calls that any executor can run: :func:`run_corpus` uses a thread pool, the
Prefect flow in ``flows/embed_corpus.py`` uses Prefect tasks on threads or Dask.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import pyarrow.parquet as pq

from quant_batch.client import QuantClient
from quant_batch.client.factory import build_client
from quant_batch.corpus.sources import require_documents
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.context import Contextualizer
from quant_batch.embed.plan import Plan, PlannedShard, plan_corpus
from quant_batch.embed.worker import ShardResult, ShardTask, embed_shard
from quant_batch.hashing import embedding_generation
from quant_batch.pricing import Budget, PriceTable, load_prices
from quant_batch.runs.executor import run_in_threads, sum_results
from quant_batch.runs.session import RunSession
from quant_batch.runs.summary import RunSummary
from quant_batch.store import state
from quant_batch.store.files import committed_parquet
from quant_batch.store.keys import KeySet
from quant_batch.store.records import write_errors
from quant_batch.tokens import estimate_tokens


class CorpusRun(RunSession):
    """The single-writer side of one corpus run; use as a context manager."""

    def __init__(self, config: CorpusConfig, *, lock_wait: float = 0.0, prices: PriceTable | None = None):
        self.scan = require_documents(config.sources, config.storage)  # before the run records anything
        super().__init__(config.out, "embed", lock_wait=lock_wait, storage=config.storage)
        self.config = config
        self.prices = prices or load_prices(config.pricing)
        self.budget = Budget(config.max_cost)
        self._refused_batches = 0
        self._shards: list[ShardTask] = []
        self.plan: Plan | None = None
        self.results: list[ShardResult] = []
        self.contextualizer: Contextualizer | None = None  # set while planning when contextual_chunks is on

    def prepare(self) -> None:
        # plans of runs that died before finish(); we hold the lock, so nothing reads them
        for stale in self.layout.state.glob("plan-*.parquet"):
            stale.unlink(missing_ok=True)
        if self.layout.remote is not None:
            for key in self.layout.remote.list("state", include="plan-*.parquet"):
                self.layout.remote.delete(key)

    @property
    def remote_workers(self) -> bool:
        """Shards may run on other machines (a Dask cluster named by address)."""
        return self.config.task_runner == "dask" and self.config.dask_address is not None

    @property
    def price_per_token(self) -> float:
        return self.prices.embedding_cost(self.config.model, 1_000_000) / 1_000_000

    def stream(self, *, replay: bool | str = False, client: QuantClient | None = None) -> Iterator[ShardTask]:
        """Plan the run in a background thread and yield each shard the moment it is cut.

        The first shards hold one batch each, so the first API call goes out while the corpus is
        still being read; :attr:`plan` is complete once the iterator is exhausted. A planning
        error (a broken source) is raised here after the shards already cut, whose work is
        durable like any other. With ``contextual_chunks`` on, ``client`` (or one built from the
        config) writes the contexts.
        """
        cfg = self.config
        assert self.catalog is not None
        self.check_prices(self.prices, "embeddings", [cfg.model], cfg.max_cost)
        if cfg.contextual_chunks.enabled:
            self.check_prices(self.prices, "chat", [cfg.contextual_chunks.model], cfg.max_cost)
        gen = embedding_generation(cfg.model, cfg.dimensions, cfg.normalize)
        done = KeySet.from_parts(committed_parquet(self.layout.vector_parts(gen)))
        dead = {k for k in self.catalog.dead_letter_keys(("embed", "quality"), replay=replay) if k not in done}
        handoff: queue.Queue[ShardTask | BaseException | None] = queue.Queue()

        def plan() -> None:
            own = cfg.contextual_chunks.enabled and client is None
            ctx_client = build_client(cfg.api, cfg.rate_limits, pool_size=1) if own else client
            try:
                if cfg.contextual_chunks.enabled:
                    assert ctx_client is not None
                    self.contextualizer = Contextualizer(cfg.contextual_chunks, ctx_client, self.prices)
                self.plan = plan_corpus(
                    cfg,
                    self.layout,
                    self.summary.run_id,
                    done,
                    dead=dead,
                    contextualize=self.contextualizer,
                    on_shard=lambda shard: handoff.put(self._task(shard)),
                    on_start=lambda plan: setattr(self, "plan", plan),
                    stop=lambda: self.budget.halted is not None,
                )
                handoff.put(None)
            except BaseException as exc:  # handed to the consuming thread, which raises it
                handoff.put(exc)
            finally:
                if own and ctx_client is not None:
                    ctx_client.close()

        planner = threading.Thread(target=plan, name="quant-batch-planner", daemon=True)
        planner.start()
        try:
            while (item := handoff.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                self._shards.append(item)
                yield item
        finally:
            planner.join()

    def make_plan(self, *, replay: bool | str = False, client: QuantClient | None = None) -> Plan:
        """Plan the whole run before sending anything (tests, and callers that want the plan first)."""
        for _ in self.stream(replay=replay, client=client):
            pass
        assert self.plan is not None
        return self.plan

    def shard_tasks(self) -> list[ShardTask]:
        """The shards cut so far (all of them once planning is complete)."""
        return list(self._shards)

    def _task(self, shard: PlannedShard) -> ShardTask:
        cfg = self.config
        plan_key = None
        if self.layout.remote is not None and self.remote_workers:
            self.layout.push(shard.path)  # a worker on another machine reads its batches from the bucket
            plan_key = self.layout.key(shard.path)
        return ShardTask(
            output=self.layout.ref(beside=not self.remote_workers),
            plan_path=str(shard.path),
            plan_key=plan_key,
            run_id=self.summary.run_id,
            generation=embedding_generation(cfg.model, cfg.dimensions, cfg.normalize),
            model=cfg.model,
            dimensions=cfg.dimensions,
            normalize=cfg.normalize,
            first_batch=shard.first,
            end_batch=shard.end,
            offset=shard.first,
        )

    @property
    def pending_chunks(self) -> int:
        """Chunks planned for sending so far (the plan's counters grow while it streams)."""
        return self.plan.stats.chunks_pending if self.plan else 0

    def admit_remote(self, shard: ShardTask) -> bool:
        """Whether to send ``shard`` to another process (Dask), which cannot share :attr:`budget`.

        The whole shard's estimated cost is reserved up front; a refused shard counts as skipped.
        """
        assert self.plan is not None
        chars = sum(self.plan.batch_chars[shard.first_batch : shard.end_batch])
        if self.budget.reserve(self.price_per_token * estimate_tokens(chars)):
            return True
        self._refused_batches += shard.end_batch - shard.first_batch
        return False

    def absorb(self, result: ShardResult) -> None:
        """Count a finished shard.

        Its batches are already done: a committed part file is the ledger's record, and the
        catalog only notes the part's name at ``finish`` (it holds no copy of the vectors).
        """
        self.results.append(result)
        if result.halted:  # a shard on another process hit a run-level failure: stop submitting
            self.budget.halt(result.halted)

    def finish(self) -> RunSummary:
        """Publish the new live index, switch the vector space if complete, write the summary."""
        assert self.catalog is not None and self.plan is not None
        plan, cat, s = self.plan, self.catalog, self.summary
        self.layout.pull()  # parts committed by workers on other machines
        cat.sync()
        read_errors = write_errors(self.layout.error_parts, f"{plan.run_id}-read", plan.errors)
        if read_errors:
            self.layout.push(read_errors, once=True)
            cat.load_error_parts([read_errors])
        if plan.stopped or self.budget.halted:
            # a run stopped by a refused token or an outage keeps the published index as it was;
            # what it embedded before stopping is durable and found by the next run
            removed, incomplete = 0, True
            for p in (plan.live_tmp, plan.docs_tmp):
                p.unlink(missing_ok=True)
        else:
            removed, incomplete = self._publish_state()
        totals = sum_results(self.results, ShardResult)
        if totals.duplicates_avoided:
            # a worker died: the results it had sent back are lost, its committed parts are not
            totals.embedded = self._embedded_by_this_run()
        failed = totals.failed + len(plan.errors)
        skipped = totals.batches_skipped + self._refused_batches
        st = plan.stats
        s.api_calls = totals.api_calls
        s.errors = failed
        s.cost_usd = round(self.prices.embedding_cost(self.config.model, totals.input_tokens), 8)
        ctx = self.contextualizer
        if ctx is not None:
            s.api_calls += ctx.calls
            s.cost_usd = round(s.cost_usd + ctx.cost_usd, 8)
        s.stats |= {
            "documents": st.documents,
            "documents_failed": st.documents_failed,
            "documents_unchanged": st.documents_unchanged,
            "chunks_total": st.chunks_total,
            "chunks_new": st.chunks_pending,
            "chunks_unchanged": st.chunks_unchanged,
            "chunks_duplicate": st.chunks_duplicate,
            "chunks_removed": removed,
            "chunks_skipped_dead": st.chunks_skipped_dead,
            "embedded": totals.embedded,
            "failed_chunks": totals.failed,
            "batches": st.batches,
            "batches_skipped": skipped,
            "duplicates_avoided": totals.duplicates_avoided,
            "input_tokens": totals.input_tokens,
            "attempts": totals.attempts,
            "throttled": totals.throttled,
            "generation": plan.generation,
            "generation_active": not incomplete or self._active() == plan.generation,
            "files_skipped": self.scan.skipped() or "none",
        }
        if ctx is not None:
            s.stats.update(
                context_calls=ctx.calls, context_input_tokens=ctx.input_tokens, context_output_tokens=ctx.output_tokens
            )
        status, reason, code = self.outcome(failed=failed, skipped=skipped, dead=st.chunks_skipped_dead, unit="batches")
        s.finish(status, reason, exit_code=code)
        self.save_summary()
        cat.sync()
        for shard in plan.shards:
            if self.layout.remote is not None and self.remote_workers:
                self.layout.delete(shard.path)
            shard.path.unlink(missing_ok=True)
        return s

    def _embedded_by_this_run(self) -> int:
        """Chunks in this run's committed vector parts (their footers, not their vectors)."""
        assert self.plan is not None
        folder = self.layout.vector_parts(self.plan.generation)
        mine = [p for p in committed_parquet(folder) if p.name.startswith(f"{self.summary.run_id}-")]
        return sum(pq.read_metadata(p).num_rows for p in mine)

    def _active(self) -> str | None:
        gen = self.catalog.active_generation() if self.catalog else None
        return gen["generation"] if gen else None

    def _publish_state(self) -> tuple[int, bool]:
        """Publish the new live index; switch the vector space when it is complete. Returns (removed, incomplete)."""
        plan, cfg = self.plan, self.config
        assert plan is not None
        self.check_still_owner()
        try:
            pub = state.publish(
                self.layout, plan.generation, plan.run_id, plan.live_tmp, plan.docs_tmp, plan.previous.carried_ids()
            )
        finally:
            for p in (plan.live_tmp, plan.docs_tmp):
                p.unlink(missing_ok=True)
        incomplete = bool(pub.incomplete_documents) or bool(plan.errors)
        active = self._active()
        if active is None or active == plan.generation or not incomplete:
            state.switch_generation(self.layout, plan.generation, cfg.model, cfg.dimensions, cfg.normalize)
        return pub.removed, incomplete


def run_corpus(
    config: CorpusConfig,
    client: QuantClient,
    *,
    replay: bool | str = False,
    on_progress: Callable[[int, int], None] | None = None,
    lock_wait: float = 0.0,
) -> RunSummary:
    """Run a whole corpus job in this process with a thread pool (no Prefect)."""
    with CorpusRun(config, lock_wait=lock_wait) as run:
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:  # the total grows while the corpus is still being planned
                on_progress(done, run.pending_chunks)

        run_in_threads(
            run,
            run.stream(replay=replay, client=client),
            lambda t: embed_shard(t, client, budget=run.budget, price_per_token=run.price_per_token, on_batch=progress),
            config.concurrency,
        )
        return run.finish()
