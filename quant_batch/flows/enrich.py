"""Prefect flow: enrich the rows of a catalog with chat answers (``quant-batch enrich`` runs this).

One task per shard of rows (at most 4 × concurrency shards), a bounded window of in-flight
shards, retries and timeouts in the client, the spend cap shared by every shard of the run,
artifacts for progress and summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from quant_batch.client import QuantClient
from quant_batch.enrich.config import load_enrich_config
from quant_batch.enrich.run import EnrichRun
from quant_batch.enrich.source import EnrichItem
from quant_batch.enrich.worker import EnrichContext, EnrichResult, enrich_items
from quant_batch.flows._common import Progress, link_flow_run, report
from quant_batch.flows._limits import submit_shards
from quant_batch.pricing import Budget, PriceTable
from quant_batch.runs.runner import running_under


@task(name="enrich-shard", cache_policy=NO_CACHE)
def enrich_shard_task(
    items: list[EnrichItem], client: QuantClient, ctx: EnrichContext, budget: Budget, prices: PriceTable
) -> EnrichResult:
    """Send a shard of rows; every failure is an error record, so no task retry is needed."""
    return enrich_items(items, client, ctx, budget=budget, prices=prices)


@flow(name="enrich", task_runner=ThreadPoolTaskRunner(max_workers=64))
def enrich(
    target: str,
    concurrency: int | None = None,
    max_cost: float | None = None,
    replay: bool | str = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Enrich with the YAML config ``target`` (plus config-field ``overrides``); returns the run summary."""
    log = get_run_logger()
    given = {k: v for k, v in {"concurrency": concurrency, "max_cost": max_cost}.items() if v is not None}
    cfg = load_enrich_config(Path(target), **{**(overrides or {}), **given})
    with running_under("prefect", target), EnrichRun(cfg) as run:
        link_flow_run(run.summary)
        pending = run.make_plan(replay=replay)
        log.info("%s rows to enrich into %s, %s unchanged", len(pending), cfg.table, run.plan.unchanged)
        progress = Progress("enrich-progress", len(pending), f"rows enriched ({run.summary.run_id})")

        def absorb(result: EnrichResult) -> None:
            run.absorb(result)
            progress.advance(result.enriched + result.failed + result.skipped_cap)

        submit_shards(enrich_shard_task, run, absorb)
        summary = run.finish()
    return report("enrich-summary", "Chat enrichment run", summary)


if __name__ == "__main__":
    import sys

    enrich(sys.argv[1])
