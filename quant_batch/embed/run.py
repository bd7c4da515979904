"""A corpus run: lock → sync → plan → embed shards → load parts → publish the new index.

``CorpusRun`` holds the single-writer side (lock, DuckDB, state files). The embedding work is
``embed_shard`` calls that any executor can run: :func:`run_corpus` uses a thread pool, the
Prefect flow in ``flows/embed_corpus.py`` uses Prefect tasks on threads or Dask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quant_batch.client import QuantClient
from quant_batch.corpus.sources import require_documents
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.plan import Plan, plan_corpus
from quant_batch.pricing import Budget
from quant_batch.embed.worker import ShardResult, ShardTask, embed_shard
from quant_batch.pricing import Budget, PriceTable, load_prices
from quant_batch.runs.session import RunSession
from quant_batch.runs.summary import RunSummary
from quant_batch.runs.executor import run_in_threads, sum_results
from quant_batch.store import state
from quant_batch.tokens import estimate_tokens
from quant_batch.store.records import write_errors


LOAD_EVERY_PARTS = 40


def shard_ranges(n_batches: int, concurrency: int, *, per_worker: int = 4, max_batches: int = 25) -> list[tuple[int, int]]:
    """Cut batches into contiguous shards: enough for load balance, few enough for low overhead."""
    if n_batches == 0:
        return []
    size = max(1, min(max_batches, -(-n_batches // (concurrency * per_worker))))
    return [(i, min(i + size, n_batches)) for i in range(0, n_batches, size)]


class CorpusRun(RunSession):
    """The single-writer side of one corpus run; use as a context manager."""

    def __init__(self, config: CorpusConfig, *, lock_wait: float = 0.0, prices: PriceTable | None = None):
        self.scan = require_documents(config.sources)  # before the run records anything
        super().__init__(config.out, "embed", lock_wait=lock_wait)
        self.config = config
        self.prices = prices or load_prices(config.pricing)
        self.budget = Budget(config.max_cost)
        self._refused_batches = 0
        self._unloaded: list[Path] = []
        self.plan: Plan | None = None
        self.results: list[ShardResult] = []
        self.contextualizer = None  # set by make_plan when contextual_chunks is on

    def prepare(self) -> None:
        # plans of runs that died before finish(); we hold the lock, so nothing reads them
        for stale in self.layout.state.glob("plan-*.parquet"):
            stale.unlink(missing_ok=True)

    @property
    def price_per_token(self) -> float:
        return self.prices.embedding_cost(self.config.model, 1_000_000) / 1_000_000

    def make_plan(self, *, replay: bool | str = False, client: QuantClient | None = None) -> Plan:
        """Plan the run; with ``contextual_chunks`` on, ``client`` (or one built from the config) writes contexts."""
        cfg = self.config
        assert self.catalog is not None
        from quant_batch.hashing import embedding_generation

        self.check_prices(self.prices, "embeddings", [cfg.model], cfg.max_cost)
        if cfg.contextual_chunks.enabled:
            self.check_prices(self.prices, "chat", [cfg.contextual_chunks.model], cfg.max_cost)

        gen = embedding_generation(cfg.model, cfg.dimensions, cfg.normalize)
        done = self.catalog.done_keys(gen)
        dead = self.catalog.dead_letter_keys(("embed", "quality"), replay=replay) - done
        if not cfg.contextual_chunks.enabled:
            self.plan = plan_corpus(cfg, self.layout, self.summary.run_id, done, dead=dead)
            return self.plan
        from quant_batch.embed.context import Contextualizer
        from quant_batch.client.factory import build_client

        own = client is None
        client = client or build_client(cfg.api, cfg.rate_limits, pool_size=1)
        try:
            self.contextualizer = Contextualizer(cfg.contextual_chunks, client, self.prices)
            self.plan = plan_corpus(cfg, self.layout, self.summary.run_id, done, dead=dead,
                                    contextualize=self.contextualizer)
        finally:
            if own:
                client.close()
        return self.plan

    def shard_tasks(self) -> list[ShardTask]:
        assert self.plan is not None
        cfg, plan = self.config, self.plan
        return [
            ShardTask(
                root=str(self.layout.root), plan_path=str(plan.path), run_id=plan.run_id,
                generation=plan.generation, model=cfg.model, dimensions=cfg.dimensions,
                normalize=cfg.normalize, first_batch=a, end_batch=b,
            )
            for a, b in shard_ranges(plan.stats.batches, cfg.concurrency)
        ]

    def admit_remote(self, shard: ShardTask) -> bool:
        """Whether to send ``shard`` to another process (Dask), which cannot share :attr:`budget`.

        The whole shard's estimated cost is reserved up front; a refused shard counts as skipped.
        """
        assert self.plan is not None
        chars = sum(self.plan.batch_chars[shard.first_batch:shard.end_batch])
        if self.budget.reserve(self.price_per_token * estimate_tokens(chars)):
            return True
        self._refused_batches += shard.end_batch - shard.first_batch
        return False

    def absorb(self, result: ShardResult) -> None:
        """Count a finished shard and load finished parts into DuckDB in bulk.

        A shard's batches are already done: a renamed part file is the ledger's record, and
        ``finish`` (or, after a crash, the next run's ``sync``) loads whatever is left. Loading
        every ``LOAD_EVERY_PARTS`` parts keeps each insert large (one insert per part cost
        three times the CPU) while the load overlaps the API calls still in flight.
        """
        assert self.catalog is not None and self.plan is not None
        self.results.append(result)
        if result.halted:  # a shard on another process hit a run-level failure: stop submitting
            self.budget.halt(result.halted)
        self._unloaded.extend(Path(p) for p in result.parts)
        if len(self._unloaded) >= LOAD_EVERY_PARTS:
            self.catalog.load_vector_parts(self.plan.generation, self._unloaded)
            self._unloaded = []

    def finish(self) -> RunSummary:
        """Publish the new live index, switch the vector space if complete, write the summary."""
        assert self.catalog is not None and self.plan is not None
        plan, cat, s = self.plan, self.catalog, self.summary
        cat.sync()
        read_errors = write_errors(self.layout.error_parts, f"{plan.run_id}-read", plan.errors)
        if read_errors:
            cat.load_error_parts([read_errors])
        removed, incomplete = self._publish_state()
        totals = sum_results(self.results, ShardResult)
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
        s.stats = {
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
            "input_tokens": totals.input_tokens,
            "attempts": totals.attempts,
            "throttled": totals.throttled,
            "generation": plan.generation,
            "generation_active": not incomplete or self._active() == plan.generation,
            "files_skipped": self.scan.skipped() or "none",
        }
        if ctx is not None:
            s.stats.update(context_calls=ctx.calls, context_input_tokens=ctx.input_tokens,
                           context_output_tokens=ctx.output_tokens)
        status, reason, code = self.outcome(failed=failed, skipped=skipped, dead=st.chunks_skipped_dead, unit="batches")
        s.finish(status, reason, exit_code=code)
        s.save(self.layout.runs)
        cat.sync()
        plan.path.unlink(missing_ok=True)
        return s

    def _active(self) -> str | None:
        gen = self.catalog.active_generation() if self.catalog else None
        return gen["generation"] if gen else None

    def _publish_state(self) -> tuple[int, bool]:
        """Publish the new live index; switch the vector space when it is complete. Returns (removed, incomplete)."""
        plan, cfg = self.plan, self.config
        assert plan is not None
        try:
            pub = state.publish(self.layout, plan.generation, plan.run_id, plan.live_tmp, plan.docs_tmp, plan.carry_doc_ids)
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
        plan = run.make_plan(replay=replay, client=client)
        total = plan.stats.chunks_pending
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done, total)

        run_in_threads(run, run.shard_tasks(),
                       lambda t: embed_shard(t, client, budget=run.budget, price_per_token=run.price_per_token,
                                             on_batch=progress),
                       config.concurrency)
        return run.finish()

