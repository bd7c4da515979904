"""Prefect flow: index a corpus into vectors (``quant-batch embed`` runs this).

The flow is thin: planning, embedding and loading are library calls. Prefect adds the task
boundaries (one task per shard of up to 25 API batches, never per text), a bounded window of
in-flight shards, progress and summary artifacts, and, optionally, Dask. Tasks are not retried:
the client retries what is transient, a rejected record is an error row, and a run-level failure
(refused token, unreachable service) stops the run, so a task retry could only resend work.
Credentials are read inside the process from the environment or a Secret block, never passed
as parameters.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from quant_batch.client import QuantClient
from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.embed.config import CorpusConfig, resolve_corpus_config
from quant_batch.embed.run import CorpusRun
from quant_batch.embed.worker import ShardResult, ShardTask, embed_shard
from quant_batch.flows._common import Progress, link_flow_run, report, submit_windowed
from quant_batch.flows._limits import ensure_rate_limit, flow_client, share_limit
from quant_batch.pricing import Budget
from quant_batch.runs.runner import running_under


@task(name="embed-shard", cache_policy=NO_CACHE)
def embed_shard_task(
    shard: ShardTask,
    client: QuantClient | None = None,
    budget: Budget | None = None,
    price_per_token: float = 0.0,
    api: ApiConfig | None = None,
    limits: RateLimits | None = None,
) -> ShardResult:
    """Embed one shard; on a remote worker (Dask) build a client from the environment."""
    if client is None:
        limits = limits or RateLimits()
        with build_client(api or ApiConfig(), limits, pool_size=2) as own:
            share_limit(own, limits.prefect_limit)
            return embed_shard(shard, own, budget=budget, price_per_token=price_per_token)
    return embed_shard(shard, client, budget=budget, price_per_token=price_per_token)


def _run(cfg: CorpusConfig, replay: bool | str) -> dict[str, Any]:
    log = get_run_logger()
    dask = cfg.task_runner == "dask"
    if dask and cfg.rate_limits.prefect_limit and cfg.rate_limits.requests_per_minute:
        ensure_rate_limit(cfg.rate_limits.prefect_limit, cfg.rate_limits.requests_per_minute)
    with CorpusRun(cfg) as run:
        link_flow_run(run.summary)
        # shards are submitted while the corpus is still being read: the total grows meanwhile
        progress = Progress("embed-progress", lambda: run.pending_chunks, f"chunks embedded ({run.summary.run_id})")

        def absorb(result: ShardResult) -> None:
            run.absorb(result)
            progress.advance(result.embedded + result.failed + result.chunks_committed_before)

        shards = run.stream(replay=replay)
        if dask:
            # remote workers cannot share the Budget object: the run admits whole shards instead
            submit_windowed(
                embed_shard_task,
                shards,
                cfg.concurrency,
                absorb,
                may_submit=run.admit_remote,
                price_per_token=run.price_per_token,
                api=cfg.api,
                limits=cfg.rate_limits,
            )
        else:
            with flow_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency) as client:
                submit_windowed(
                    embed_shard_task,
                    shards,
                    cfg.concurrency,
                    absorb,
                    may_submit=lambda _: not run.budget.halted,
                    client=client,
                    budget=run.budget,
                    price_per_token=run.price_per_token,
                )
        assert run.plan is not None
        st = run.plan.stats
        log.info(
            "planned %s documents, %s chunks: %s new in %s batches, %s unchanged",
            st.documents,
            st.chunks_total,
            st.chunks_pending,
            st.batches,
            st.chunks_unchanged,
        )
        summary = run.finish()
    return report("embed-summary", "Corpus embedding run", summary)


@flow(name="embed-corpus", task_runner=ThreadPoolTaskRunner(max_workers=64))
def embed_corpus(
    target: str,
    out: str | None = None,
    concurrency: int | None = None,
    max_cost: float | None = None,
    replay: bool | str = False,
    id_column: str | None = None,
    text_column: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed a corpus: ``target`` is a run config (YAML), a folder, a table or one document.

    ``overrides`` holds further run-config fields (as ``quant_batch.embed(**overrides)`` takes).
    Returns the run summary (also in ``<out>/runs/`` and the ``runs`` table).
    """
    cfg = resolve_corpus_config(
        target,
        id_column=id_column,
        text_column=text_column,
        **{**(overrides or {}), **_set(out=out, concurrency=concurrency, max_cost=max_cost)},
    )
    with running_under("prefect", target):
        return _run(cfg, replay)


def _set(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def flow_for(cfg: CorpusConfig):
    """The flow with the task runner the config asks for (threads, or Dask processes)."""
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            runner = DaskTaskRunner(address=cfg.dask_address)
        else:
            per = max(1, -(-cfg.concurrency // cfg.dask_workers))
            runner = DaskTaskRunner(
                cluster_kwargs={"n_workers": cfg.dask_workers, "threads_per_worker": per, "processes": True}
            )
        return embed_corpus.with_options(task_runner=runner)
    return embed_corpus


if __name__ == "__main__":
    import sys

    embed_corpus(sys.argv[1])
