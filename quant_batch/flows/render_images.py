"""Prefect flow: render a prompt manifest with Nova Canvas (``quant-batch render`` runs this).

One task per shard of rows (at most 4 × concurrency shards), a bounded window of in-flight
shards, the 5-minute read timeout and retries in the client, artifacts for progress and summary.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from quant_batch.client import QuantClient
from quant_batch.flows._common import Progress, link_flow_run, report
from quant_batch.flows._limits import submit_shards
from quant_batch.pricing import Budget, PriceTable
from quant_batch.render.config import resolve_render_config
from quant_batch.render.rows import RenderRow
from quant_batch.render.run import RenderContext, RenderResult, RenderRun, render_rows
from quant_batch.runs.runner import running_under


@task(name="render-shard", cache_policy=NO_CACHE)
def render_shard_task(
    rows: list[RenderRow], client: QuantClient, ctx: RenderContext, prices: PriceTable, budget: Budget
) -> RenderResult:
    """Render a shard of rows; every failure is an error record, so no task retry is needed."""
    return render_rows(rows, client, ctx, prices=prices, budget=budget)


@flow(name="render-images", task_runner=ThreadPoolTaskRunner(max_workers=64))
def render_images(
    target: str,
    out: str | None = None,
    concurrency: int | None = None,
    skip_invalid: bool | None = None,
    max_cost: float | None = None,
    defaults: dict[str, Any] | None = None,
    replay: bool | str = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render ``target`` (a manifest, or a YAML run config naming one); returns the run summary.

    ``overrides`` holds further run-config fields (as ``quant_batch.render(**overrides)`` takes).
    """
    log = get_run_logger()
    given = dict(out=out, concurrency=concurrency, skip_invalid=skip_invalid, max_cost=max_cost, defaults=defaults)
    cfg = resolve_render_config(target, **{**(overrides or {}), **{k: v for k, v in given.items() if v is not None}})
    with running_under("prefect", target), RenderRun(cfg) as run:
        link_flow_run(run.summary)
        pending = run.make_plan(replay=replay)
        log.info("%s rows to render, %s already rendered", len(pending), run.unchanged)
        progress = Progress("render-progress", len(pending), f"rows rendered ({run.summary.run_id})")

        def absorb(result: RenderResult) -> None:
            run.absorb(result)
            progress.advance(result.rendered + result.failed)

        submit_shards(render_shard_task, run, absorb, images=True)
        summary = run.finish()
    return report("render-summary", "Image rendering run", summary)


if __name__ == "__main__":
    import sys

    render_images(sys.argv[1])
