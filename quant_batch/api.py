"""The public Python API: the same runs the CLI does, callable from a script or a Prefect flow.

Each run function resolves its config exactly like the command of the same name, then runs the
Prefect flow when a Prefect API is configured (or ``prefect=True``) and the library in this
process otherwise (or ``prefect=False``); see :mod:`quant_batch.runs.runner`. Called inside the
user's own flow with a Prefect API configured, the run becomes a subflow of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant_batch.allocators import tune_allocators
from quant_batch.runs.runner import choose_runner, running_under
from quant_batch.runs.summary import RunSummary

if TYPE_CHECKING:
    from quant_batch.client import QuantClient
    from quant_batch.query.search import Hit

Progress = Callable[[int, int], None]


def embed(
    target: str | Path,
    *,
    out: str | Path | None = None,
    prefect: bool | None = None,
    replay: bool | str = False,
    id_column: str | None = None,
    text_column: str | None = None,
    on_progress: Progress | None = None,
    **overrides: Any,
) -> RunSummary:
    """Embed a corpus into Parquet parts + DuckDB; only new or changed chunks are sent.

    Args:
        target: a corpus run config (YAML), a folder of documents, one document file, or a
            table (``.parquet``/``.csv``/``.jsonl``, one document per row).
        out: output folder (default: the config's ``out``, else ``data/index``).
        prefect: run the Prefect flow (True), in this process (False), or decide by whether a
            Prefect API is configured (None).
        replay: also resend chunks that failed terminally before (True), or only those of one
            run id.
        id_column: the row id column of a table target (default ``id``).
        text_column: the text column of a table target (default ``text``).
        on_progress: called with (chunks done, chunks to do) as batches finish.
        **overrides: any :class:`CorpusConfig` field, e.g. ``concurrency=4, max_cost=0.5``.

    Returns:
        The run's summary; ``status`` is ``completed``, ``partial`` or ``failed`` and
        ``stats["runner"]`` says ``prefect`` or ``in-process``.

    Raises:
        ConfigError: a setting is wrong (also: Dask on a cluster without a Prefect API).
        InputError: the target cannot be read (e.g. a table without the id or text column).
        LockError: another run holds the output folder.
    """
    from quant_batch.embed.config import resolve_corpus_config

    tune_allocators()  # process-wide: peak memory that follows the data, not the threads
    overrides = _clean(out=out, **overrides)
    cfg = resolve_corpus_config(target, id_column=id_column, text_column=text_column, **overrides)
    if choose_runner(prefect, task_runner=cfg.task_runner, dask_address=cfg.dask_address) == "prefect":
        from quant_batch.flows.embed_corpus import flow_for

        with _listening(on_progress):
            result = flow_for(cfg)(
                target=str(target), replay=replay, id_column=id_column, text_column=text_column, overrides=overrides
            )
        return RunSummary.from_dict(result)
    from quant_batch.client.factory import build_client
    from quant_batch.embed.run import run_corpus

    with (
        running_under("in-process", target),
        build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency) as client,
    ):
        return run_corpus(cfg, client, replay=replay, on_progress=on_progress)


def render(
    target: str | Path,
    *,
    out: str | Path | None = None,
    prefect: bool | None = None,
    replay: bool | str = False,
    on_progress: Progress | None = None,
    **overrides: Any,
) -> RunSummary:
    """Render every row of an image manifest to PNG files + Parquet + DuckDB.

    Args:
        target: a manifest (``.jsonl``/``.csv``/``.yaml`` rows) or a render config naming one.
        out: output folder (default ``data/renders``).
        prefect: as in :func:`embed`.
        replay: also resend rows that failed terminally before (True), or only one run's.
        on_progress: called with (rows done, rows to do) under Prefect.
        **overrides: any :class:`RenderConfig` field, e.g. ``skip_invalid=True``,
            ``defaults={"width": 512}``, ``max_cost=1.0``.
    """
    from quant_batch.render.config import resolve_render_config

    tune_allocators()  # process-wide: peak memory that follows the data, not the threads
    overrides = _clean(out=out, **overrides)
    cfg = resolve_render_config(target, **overrides)
    if choose_runner(prefect) == "prefect":
        from quant_batch.flows.render_images import render_images

        with _listening(on_progress):
            return RunSummary.from_dict(render_images(target=str(target), replay=replay, overrides=overrides))
    from quant_batch.client.factory import build_client
    from quant_batch.render.run import render_manifest

    with (
        running_under("in-process", target),
        build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency, images=True) as client,
    ):
        return render_manifest(cfg, client, replay=replay)


def enrich(
    config: str | Path,
    *,
    prefect: bool | None = None,
    replay: bool | str = False,
    on_progress: Progress | None = None,
    **overrides: Any,
) -> RunSummary:
    """Run a chat prompt over every row of a catalog table; answers land in ``enrich_<name>``.

    Args:
        config: an enrichment config (YAML with ``catalog``, ``source``, ``template``).
        prefect: as in :func:`embed`.
        replay: also resend rows that failed or were truncated before (True), or one run's.
        on_progress: called with (rows done, rows to do) under Prefect.
        **overrides: any :class:`EnrichConfig` field, e.g. ``concurrency=2, max_cost=0.1``.
    """
    from quant_batch.enrich.config import load_enrich_config

    tune_allocators()  # process-wide: peak memory that follows the data, not the threads
    overrides = _clean(**overrides)
    cfg = load_enrich_config(Path(config), **overrides)
    if choose_runner(prefect) == "prefect":
        from quant_batch.flows.enrich import enrich as enrich_flow

        with _listening(on_progress):
            return RunSummary.from_dict(enrich_flow(target=str(config), replay=replay, overrides=overrides))
    from quant_batch.client.factory import build_client
    from quant_batch.enrich.run import enrich_table

    with (
        running_under("in-process", config),
        build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency) as client,
    ):
        return enrich_table(cfg, client, replay=replay)


def plan(
    target: str | Path,
    *,
    out: str | Path | None = None,
    latency: float | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
) -> dict[str, Any]:
    """What a run of ``target`` would send and cost, sending zero API requests.

    The target is routed by :func:`quant_batch.targets.target_kind` (a table of texts is a
    corpus, a table with image-request columns a manifest). Returns a dict with ``target``,
    ``kind`` (``corpus``/``render``/``enrich``), the counts and estimates of that kind, and
    ``problems`` (strings; invalid rows that a run would skip or refuse).
    """
    from quant_batch.query import estimate
    from quant_batch.store.location import is_uri
    from quant_batch.targets import target_kind

    if not is_uri(target):
        target = Path(target)
    kind = target_kind(target, text_column=text_column or "text")
    if kind == "enrich":
        from quant_batch.enrich.config import load_enrich_config

        result = estimate.plan_enrich_dry(
            load_enrich_config(Path(target), **_clean(catalog=out)), latency_s=latency or 2.0
        )
    elif kind == "render":
        from quant_batch.render.config import resolve_render_config

        result = estimate.plan_render_dry(resolve_render_config(target, **_clean(out=out)), latency_s=latency or 20.0)
    else:
        from quant_batch.embed.config import resolve_corpus_config

        cfg = resolve_corpus_config(target, id_column=id_column, text_column=text_column, **_clean(out=out))
        result = estimate.plan_corpus_dry(cfg, latency_s=latency or 0.5)
    return {"target": str(target), "kind": kind, **result, "problems": result.pop("problems", [])}


def search(
    out: str | Path,
    query: str,
    *,
    k: int = 10,
    source: str | None = None,
    where: Mapping[str, Any] | None = None,
    client: QuantClient | None = None,
) -> list[Hit]:
    """The ``k`` live chunks of the index at ``out`` closest to ``query``, best first.

    The query is embedded with the index's own model and dimensions; ``client`` defaults to one
    built from the ``QUANT_*`` environment variables. ``source`` keeps hits whose source path
    matches a glob, ``where`` those whose metadata has the given values (both bound as
    parameters, never pasted into SQL). Search reads the last published index, so it answers
    while a run writes.
    """
    from quant_batch.query.search import search as run_search

    if client is not None:
        return run_search(out, query, client, k=k, source=source, where=where)
    from quant_batch.client import QuantClient

    with QuantClient() as own:
        return run_search(out, query, own, k=k, source=source, where=where)


def _clean(**values: Any) -> dict[str, Any]:
    """Drop unset values; paths become strings so Prefect can record them as flow parameters."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}


@contextmanager
def _listening(on_progress: Progress | None) -> Iterator[None]:
    from quant_batch.runs.runner import listening

    with listening(on_progress):
        yield
