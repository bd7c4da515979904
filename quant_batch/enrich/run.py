"""An enrichment run: lock the catalog → sync → plan rows → chat → parts → the results table.

:class:`EnrichRun` is the single-writer side (the catalog folder's lock, DuckDB, the summary);
:func:`~quant_batch.enrich.worker.enrich_items` is plain work any executor can run. Results are
keyed by source key + template hash; a rerun sends only rows whose unit key (template, key,
rendered text, image) has no full answer yet.

Status: ``partial`` when the spend cap left rows for the next run; ``errors`` when rows failed
(see ``errors``) *or* answers were cut at ``max_tokens`` (stored with ``truncated = true`` and
counted in ``stats.truncated``); ``completed`` otherwise. Failed and truncated rows are not resent
by later runs with the same settings unless ``replay`` is set (raising ``max_tokens`` changes the
template hash, so it re-enriches every row).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quant_batch.client import QuantClient
from quant_batch.enrich.config import EnrichConfig
from quant_batch.enrich.prompt import Prompt
from quant_batch.enrich.source import EnrichItem, EnrichPlan, plan_enrich
from quant_batch.enrich.worker import EnrichContext, EnrichResult, enrich_items
from quant_batch.pricing import Budget, load_prices
from quant_batch.runs.executor import interleaved_shards, run_in_threads, sum_results
from quant_batch.runs.session import RunSession
from quant_batch.runs.summary import RunSummary
from quant_batch.store.records import write_errors


class EnrichRun(RunSession):
    """The single-writer side of one enrichment run; use as a context manager."""

    def __init__(self, config: EnrichConfig, *, lock_wait: float = 0.0):
        self.prompt = Prompt(config)  # a template that does not compile fails before the lock
        super().__init__(config.catalog, "enrich", lock_wait=lock_wait)
        self.config = config
        self.prices = load_prices(config.pricing)
        self.budget = Budget(config.max_cost)
        self.plan: EnrichPlan | None = None
        self.results: list[EnrichResult] = []

    @property
    def context(self) -> EnrichContext:
        cfg = self.config
        return EnrichContext(
            str(self.layout.root),
            self.summary.run_id,
            cfg.table,
            self.prompt.hash,
            self.prompt.base_request(),
            cfg.json_schema,
            cfg.model,
        )

    def make_plan(self, *, replay: bool | str = False) -> list[EnrichItem]:
        """Render every source row; keep those without a full answer (and not dead, unless replay)."""
        assert self.catalog is not None
        self.check_prices(self.prices, "chat", [self.config.model], self.config.max_cost)
        self.summary.save(self.layout.runs)
        done, truncated = self.catalog.done_enrich_keys(self.config.table)
        dead = self.catalog.dead_letter_keys(("enrich",), replay=replay, source_path=self.config.table) - done
        self.plan = plan_enrich(
            self.catalog.con,
            self.config,
            self.prompt,
            self.summary.run_id,
            done=done,
            dead=dead,
            truncated=set() if replay is True else truncated,
        )
        return self.plan.items

    def shards(self) -> list[list[EnrichItem]]:
        return interleaved_shards(self.plan.items if self.plan else [], self.config.concurrency)

    def absorb(self, result: EnrichResult) -> None:
        """Load a shard's answers and errors: this is what marks its rows done."""
        assert self.catalog is not None
        self.results.append(result)
        self.catalog.load_enrich_parts(self.config.table, [Path(p) for p in result.parts])
        if result.error_part:
            self.catalog.load_error_parts([Path(result.error_part)])

    def finish(self) -> RunSummary:
        assert self.catalog is not None and self.plan is not None
        s, cat, plan = self.summary, self.catalog, self.plan
        part = write_errors(self.layout.error_parts, f"{s.run_id}-enrich-plan", plan.errors)
        if part:
            cat.load_error_parts([part])
        cat.sync()
        tot = sum_results(self.results, EnrichResult)
        s.api_calls = tot.api_calls
        s.errors = tot.failed + len(plan.errors)
        s.cost_usd = round(tot.cost_usd, 8)
        s.stats |= {
            "table": self.config.table,
            "template_hash": self.prompt.hash,
            "rows": plan.rows,
            "rows_new": len(plan.items),
            "rows_unchanged": plan.unchanged,
            "enriched": tot.enriched,
            "truncated": tot.truncated,
            "repaired": tot.repaired,
            "failed": tot.failed,
            "invalid_rows": len(plan.errors),
            "skipped_failed": plan.skipped_failed,
            "skipped_truncated": plan.skipped_truncated,
            "skipped_cap": tot.skipped_cap,
            "input_tokens": tot.input_tokens,
            "output_tokens": tot.output_tokens,
            "attempts": tot.attempts,
            "throttled": tot.throttled,
        }
        status, reason, code = self.outcome(
            failed=s.errors + tot.truncated, skipped=tot.skipped_cap, dead=plan.skipped_failed, unit="rows"
        )
        if status == "errors" and tot.truncated:
            parts = [f"{s.errors} rows failed (see errors)"] if s.errors else []
            reason = "; ".join([*parts, f"{tot.truncated} answers truncated at max_tokens (truncated = true)"])
        s.finish(status, reason, exit_code=code)
        s.save(self.layout.runs)
        cat.load_runs()
        return s


def enrich_table(
    config: EnrichConfig,
    client: QuantClient,
    *,
    replay: bool | str = False,
    on_row: Callable[[], None] | None = None,
    lock_wait: float = 0.0,
) -> RunSummary:
    """Run a whole enrichment in this process with a thread pool (no Prefect)."""
    with EnrichRun(config, lock_wait=lock_wait) as run:
        run.make_plan(replay=replay)
        run_in_threads(
            run,
            run.shards(),
            lambda shard: enrich_items(
                shard, client, run.context, budget=run.budget, prices=run.prices, on_item=on_row
            ),
            config.concurrency,
        )
        return run.finish()
