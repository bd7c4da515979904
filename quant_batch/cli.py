"""``quant-batch``: a thin command line over the library and the flows.

``embed``, ``render`` and ``enrich`` run the Prefect flows (ephemeral unless ``PREFECT_API_URL`` is set), so
runs show up in a user's Prefect UI; ``search``, ``plan``, ``runs`` and ``catalog`` only read and
never start Prefect. Exit codes: 0 all good, 1 some records failed or the run stopped at the
spend cap, 2 bad input or configuration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quant_batch.errors import QuantError

for _k, _v in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}.items():
    os.environ.setdefault(_k, _v)

app = typer.Typer(help="Batch embeddings and image rendering on the QuantCDN AI Inference API.", no_args_is_help=True)
catalog_app = typer.Typer(help="Maintain the DuckDB catalog of an output folder.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
console = Console(stderr=True)
out_console = Console()


def _fail(exc: QuantError) -> None:
    console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    try:
        yield
    except QuantError as exc:
        _fail(exc)


@contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_summary(summary: dict[str, Any], title: str) -> int:
    from quant_batch.runs.summary import RunSummary

    s = RunSummary(**{k: v for k, v in summary.items() if k != "wall_s"})
    table = Table(title=title, show_header=False)
    for k, v in s.table():
        table.add_row(k, v)
    out_console.print(table)
    return s.exit_code


def _run_flow(flow: Any, label: str, **params: Any) -> dict[str, Any]:
    import quant_batch.flows._common as common

    with _progress_bar(label) as update:
        common.progress_listener = update
        try:
            return flow(**params)
        finally:
            common.progress_listener = None


def _check_replay_run(out: Path, kind: str, run_id: str | None) -> None:
    """--replay-run names a run of this output folder, or nothing is sent (exit 2)."""
    if run_id:
        from quant_batch.runs.summary import check_replay_target

        check_replay_target(Path(out), kind, run_id)


@app.command()
def embed(
    target: Annotated[Path, typer.Argument(help="Run config (YAML) or a folder of documents.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: from config, else data/index).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="API requests in flight.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Spend cap in USD for this run.")] = None,
    replay: Annotated[bool, typer.Option(help="Also resend chunks that failed terminally before.")] = False,
    replay_run: Annotated[str | None, typer.Option(help="Resend only what failed terminally in this run.")] = None,
    no_prefect: Annotated[bool, typer.Option("--no-prefect", help="Run in-process without Prefect.")] = False,
) -> None:
    """Embed a corpus into Parquet + DuckDB; only new or changed chunks are sent."""
    with _errors_to_exit():
        from quant_batch.embed.config import resolve_corpus_config

        cfg = resolve_corpus_config(target, out=out, concurrency=concurrency, max_cost=max_cost)
        _check_replay_run(cfg.out, "embed", replay_run)
        if no_prefect:
            from quant_batch.embed.run import run_corpus
            from quant_batch.client.factory import build_client

            with build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency) as client, _progress_bar("embedding") as up:
                summary = run_corpus(cfg, client, replay=replay_run or replay, on_progress=up).to_dict()
        else:
            from quant_batch.flows.embed_corpus import flow_for

            summary = _run_flow(
                flow_for(cfg), "embedding", target=str(target), out=str(out) if out else None,
                concurrency=concurrency, max_cost=max_cost, replay=replay_run or replay,
            )
    raise typer.Exit(_print_summary(summary, "embed"))


@app.command()
def render(
    target: Annotated[Path, typer.Argument(help="Manifest (.jsonl/.csv/.yaml) or a run config naming one.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default data/renders).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Render valid rows even if some rows are invalid.")] = False,
    max_cost: Annotated[float | None, typer.Option(help="Spend cap in USD for this run.")] = None,
    width: Annotated[int | None, typer.Option(help="Default width for rows that give none.")] = None,
    height: Annotated[int | None, typer.Option(help="Default height.")] = None,
    quality: Annotated[str | None, typer.Option(help="Default quality: standard or premium.")] = None,
    region: Annotated[str | None, typer.Option(help="Default region.")] = None,
    replay: Annotated[bool, typer.Option(help="Also resend rows that failed terminally before.")] = False,
    replay_run: Annotated[str | None, typer.Option(help="Resend only what failed terminally in this run.")] = None,
    no_prefect: Annotated[bool, typer.Option("--no-prefect", help="Run in-process without Prefect.")] = False,
) -> None:
    """Render every row of a prompt manifest to PNG files + Parquet + DuckDB."""
    defaults = {k: v for k, v in {"width": width, "height": height, "quality": quality, "region": region}.items() if v}
    params = dict(out=out, concurrency=concurrency, skip_invalid=skip_invalid or None, max_cost=max_cost,
                  defaults=defaults or None)
    with _errors_to_exit():
        from quant_batch.render.config import resolve_render_config

        cfg = resolve_render_config(target, **params)
        _check_replay_run(cfg.out, "render", replay_run)
        if no_prefect:
            from quant_batch.client.factory import build_client
            from quant_batch.render.run import render_manifest

            with build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency, images=True) as client:
                summary = render_manifest(cfg, client, replay=replay_run or replay).to_dict()
        else:
            from quant_batch.flows.render_images import render_images

            summary = _run_flow(render_images, "rendering", target=str(target),
                                **{k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}, replay=replay_run or replay)
    code = _print_summary(summary, "render")
    out_console.print(f"contact sheet: {Path(cfg.out) / 'index.html'}")
    raise typer.Exit(code)


@app.command()
def enrich(
    config: Annotated[Path, typer.Argument(help="Enrichment config (YAML with catalog, source, template).")],
    concurrency: Annotated[int | None, typer.Option(help="Chat requests in flight.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Spend cap in USD for this run.")] = None,
    replay: Annotated[bool, typer.Option(help="Also resend rows that failed or were truncated before.")] = False,
    replay_run: Annotated[str | None, typer.Option(help="Resend only what failed terminally in this run.")] = None,
    no_prefect: Annotated[bool, typer.Option("--no-prefect", help="Run in-process without Prefect.")] = False,
) -> None:
    """Run a chat prompt over every row of a catalog table; answers land in a DuckDB table."""
    with _errors_to_exit():
        from quant_batch.enrich.config import load_enrich_config

        cfg = load_enrich_config(config, concurrency=concurrency, max_cost=max_cost)
        _check_replay_run(cfg.catalog, "enrich", replay_run)
        if no_prefect:
            from quant_batch.enrich.run import enrich_table
            from quant_batch.client.factory import build_client

            with build_client(cfg.api, cfg.rate_limits, pool_size=cfg.concurrency) as client:
                summary = enrich_table(cfg, client, replay=replay_run or replay).to_dict()
        else:
            from quant_batch.flows.enrich import enrich as enrich_flow

            summary = _run_flow(enrich_flow, "enriching", target=str(config), concurrency=concurrency,
                                max_cost=max_cost, replay=replay_run or replay)
    code = _print_summary(summary, "enrich")
    out_console.print(f"results: table {cfg.table} in {Path(cfg.catalog) / 'catalog.duckdb'}")
    raise typer.Exit(code)


@app.command()
def replay(
    target: Annotated[Path, typer.Argument(help="The run config / folder / manifest of the failed run.")],
    run: Annotated[str | None, typer.Option("--run", help="Only the dead letters of this run id.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: from the config).")] = None,
    no_prefect: Annotated[bool, typer.Option("--no-prefect", help="Run in-process without Prefect.")] = False,
) -> None:
    """Retry the dead-letter set: records that failed terminally (all, or those of one run).

    Only the failures of an existing output folder are resent: a folder with no output of this
    kind, or an unknown --run id, is exit 2 before anything is sent. The ledger keeps it
    idempotent: anything done since is skipped, and transient failures are retried by every
    normal run anyway.
    """
    with _errors_to_exit():
        from quant_batch.runs.summary import check_replay_target

        command = _stage_of(target)
        check_replay_target(_output_folder(command, target, out), command, run)
    argv = [command, str(target), *(["--out", str(out)] if out and command != "enrich" else [])]
    argv += ["--replay-run", run] if run else ["--replay"]
    argv += ["--no-prefect"] if no_prefect else []
    raise typer.Exit(app(argv, standalone_mode=False) or 0)


def _stage_of(target: Path) -> str:
    """embed, render or enrich: the command a config, folder or manifest belongs to."""
    if target.suffix.lower() in (".jsonl", ".csv") or _is_render_yaml(target):
        return "render"
    if target.suffix.lower() in (".yaml", ".yml") and target.is_file():
        from quant_batch.enrich.config import is_enrich_config

        return "enrich" if is_enrich_config(target) else "embed"
    return "embed"


def _output_folder(command: str, target: Path, out: Path | None) -> Path:
    """The output folder a run of ``command`` on ``target`` would write to (configs are validated)."""
    if command == "enrich":
        from quant_batch.enrich.config import load_enrich_config

        return Path(load_enrich_config(target).catalog)
    if command == "render":
        from quant_batch.render.config import resolve_render_config

        return Path(resolve_render_config(target, out=out).out)
    from quant_batch.embed.config import resolve_corpus_config

    return Path(resolve_corpus_config(target, out=out).out)


@app.command()
def search(
    index: Annotated[Path, typer.Argument(help="Output folder of an embed run.")],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many hits.")] = 10,
) -> None:
    """Print the chunks closest to QUERY, with score, source path and position."""
    with _errors_to_exit():
        from quant_batch.client import QuantClient
        from quant_batch.query.search import search as run_search
        from quant_batch.store.layout import Layout

        Layout(index).require_output()
        with QuantClient() as client:
            hits = run_search(index, query, client, k=k)
    table = Table("score", "source", "pos", "text")
    for h in hits:
        snippet = " ".join(h.text.split())[:110]
        table.add_row(f"{h.score:.3f}", h.source_path, str(h.position), snippet)
    out_console.print(table)


@app.command()
def plan(
    target: Annotated[Path, typer.Argument(help="Corpus config / folder, a manifest / render config, or an enrich config.")],
    out: Annotated[Path | None, typer.Option(help="Output folder to compare against.")] = None,
    latency: Annotated[float | None, typer.Option(help="Assumed seconds per API call (default 0.5 embed, 20 image, 2 chat).")] = None,
) -> None:
    """Show what a run would do and cost, sending zero API requests."""
    with _errors_to_exit():
        from quant_batch.query import estimate
        from quant_batch.embed.config import resolve_corpus_config
        from quant_batch.render.config import resolve_render_config
        from quant_batch.enrich.config import is_enrich_config, load_enrich_config

        if is_enrich_config(target):
            cfg = load_enrich_config(target, catalog=str(out) if out else None)
            result = estimate.plan_enrich_dry(cfg, latency_s=latency or 2.0)
        elif target.suffix.lower() in (".jsonl", ".csv") or _is_render_yaml(target):
            cfg = resolve_render_config(target, out=out)
            result = estimate.plan_render_dry(cfg, latency_s=latency or 20.0)
        else:
            result = estimate.plan_corpus_dry(resolve_corpus_config(target, out=out), latency_s=latency or 0.5)
    problems = result.pop("problems", [])
    table = Table(title=f"plan: {target}", show_header=False)
    for k, v in result.items():
        table.add_row(k.replace("_", " "), str(v))
    out_console.print(table)
    for p in problems:
        console.print(f"[yellow]{p}[/yellow]", highlight=False)


def _is_render_yaml(path: Path) -> bool:
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    from quant_batch.config_files import load_yaml

    data = load_yaml(path)  # broken YAML: ConfigError with file:line, exit 2
    return isinstance(data, list) or (isinstance(data, dict) and ("manifest" in data or "rows" in data))


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str, typer.Option(help="Chat model id.")] = "amazon.nova-lite-v1:0",
    system: Annotated[str | None, typer.Option(help="Optional system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Maximum output tokens.")] = 1024,
    temperature: Annotated[float, typer.Option(help="Sampling temperature 0-2.")] = 0.7,
) -> None:
    """Stream one ad-hoc chat answer (SSE), e.g. to try a prompt before a batch run."""
    request: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}], "modelId": model,
        "maxTokens": max_tokens, "temperature": temperature,
    }
    if system:
        request["systemPrompt"] = system
    with _errors_to_exit():
        from quant_batch.client import QuantClient

        with QuantClient() as client:
            for event in client.chat_stream(request):
                if event.kind == "delta":
                    out_console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
                else:
                    out_console.print()
                    usage = event.usage
                    tokens = f", {usage.input_tokens} in / {usage.output_tokens} out tokens" if usage else ""
                    console.print(f"[dim]finish: {event.finish_reason}{tokens}[/dim]")


@app.command()
def runs(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    limit: Annotated[int, typer.Option(help="How many recent runs.")] = 20,
) -> None:
    """List recent runs: status, counts, cost, errors, wall time."""
    from quant_batch.runs.summary import list_runs
    from quant_batch.store.layout import Layout

    with _errors_to_exit():
        layout = Layout(out).require_output()
    rows = [
        (r["run_id"], r.get("kind"), r.get("status"), r.get("api_calls"), r.get("errors"), r.get("cost_usd"),
         r.get("wall_s"), r.get("reason") or "")
        for r in list_runs(layout.runs, limit)
    ]
    table = Table("run", "kind", "status", "api calls", "errors", "cost $", "wall s", "reason")
    for r in rows:
        table.add_row(r[0], r[1], r[2], str(r[3]), str(r[4]), f"{r[5] or 0:.6f}", f"{r[6] or 0:.1f}", r[7])
    out_console.print(table)


@catalog_app.command("rebuild")
def catalog_rebuild(out: Annotated[Path, typer.Argument(help="Output folder.")]) -> None:
    """Delete catalog.duckdb and rebuild it from the part files (they are the durable truth)."""
    with _errors_to_exit():
        from quant_batch.store.catalog import Catalog
        from quant_batch.store.layout import Layout
        from quant_batch.store.lock import OutputLock

        layout = Layout(out).require_output()
        with OutputLock(layout.root):
            for p in (layout.catalog, layout.catalog.with_suffix(".duckdb.wal")):
                p.unlink(missing_ok=True)
            with Catalog(layout) as cat:
                n = cat.sync()
    out_console.print(f"loaded {n} part files into {layout.catalog}")


@app.command()
def serve(
    prefect_yaml: Annotated[Path, typer.Option(help="Deployment file.")] = Path("prefect.yaml"),
    name: Annotated[list[str] | None, typer.Option(help="Only these deployments (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Max concurrent flow runs.")] = None,
) -> None:
    """Serve the flows of prefect.yaml with their schedules, without a work pool."""
    with _errors_to_exit():
        from quant_batch.flows.deploy import serve as serve_deployments

        serve_deployments(prefect_yaml, name, limit)


# every argument, --help included, goes to the emulator's own parser: one list of flags
@app.command(add_help_option=False, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def emulator(ctx: typer.Context) -> None:
    """Serve the local API emulator: --port, --token, latency and fault flags (--help lists them)."""
    from quant_batch.emulator.__main__ import main

    main(ctx.args, prog="quant-batch emulator")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes (index/ and renders/ inside).")] = Path("data"),
    query: Annotated[str, typer.Option(help="Search query to run after indexing.")] = "when is the library open on sunday",
) -> None:
    """Offline demo: start the emulator, index the bundled sample corpus, search it, render the sample manifest."""
    from importlib.resources import as_file, files

    from quant_batch.emulator import EmulatorServer

    token = "demo-token"
    with as_file(files("quant_batch") / "data" / "sample") as sample, EmulatorServer(token=token) as emu:
        os.environ.update(QUANT_API_KEY=token, QUANT_ORGANIZATION="demo-org", QUANT_BASE_URL=emu.base_url)
        console.print(f"emulator listening on {emu.base_url}")
        out.mkdir(parents=True, exist_ok=True)
        corpus_cfg = out / "demo-corpus.yaml"
        corpus_cfg.write_text(_demo_config(Path(sample), out / "index"), encoding="utf-8")
        codes = []
        for cmd in (
            ["embed", str(corpus_cfg)],
            ["search", str(out / "index"), query, "-k", "5"],
            ["render", str(Path(sample) / "prompts.jsonl"), "--out", str(out / "renders")],
        ):
            console.rule(" ".join(["quant-batch", *cmd]))
            try:
                codes.append(app(cmd, standalone_mode=False) or 0)
            except typer.Exit as exc:
                codes.append(exc.exit_code)
        stats = emu.stats()
    console.print(f"API calls made to the emulator: {stats.get('total_requests')}")
    raise typer.Exit(max(codes))


def _demo_config(sample: Path, out: Path) -> str:
    import json

    # JSON is YAML: paths with quotes or colons stay intact
    return json.dumps({
        "sources": [{"path": str(sample / "corpus")}, {"table": str(sample / "corpus_table" / "faq.jsonl")}],
        "out": str(out),
        "chunking": {"max_chars": 1200, "overlap_chars": 150},
    }, indent=2)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
