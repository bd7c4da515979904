"""``quant-batch``: a thin command line over the library and the flows.

``embed``, ``render`` and ``enrich`` run the Prefect flows when a Prefect API is configured (so
runs show up in a user's Prefect UI) and the same library code in-process otherwise
(``--prefect/--no-prefect`` forces either); ``search``, ``plan``, ``runs``, ``errors``, ``ui`` and
``catalog`` only read and never start Prefect. ``--json`` prints exactly one JSON document on
stdout; logs and progress go to stderr. Exit codes: see ``runs.summary.STATUSES`` and the README
(0 all good, 1 some records failed or the spend cap stopped the run, 2 bad input or configuration
or a refused token / unreachable service, 3 dead letters from earlier runs still missing).

Why one module of ~550 lines: it is one typer app of thin commands, each a few lines over
``api.py`` or ``query/``; splitting it would scatter the shared options and output helpers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
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


def _print_rows(headers: tuple[str, ...], rows: Sequence[Sequence[Any]], *, ids: tuple[str, ...]) -> None:
    """A table whose ``ids`` columns are never cut or wrapped (they are pasted into --run).

    When the terminal is too narrow for the ids plus a readable rest, each row is printed as a
    block of ``name: value`` lines instead of a table that would squeeze the other columns away.
    """
    id_width = {h: max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers) if h in ids}
    needed = sum(id_width.values()) + sum(min(len(h), 6) for h in headers if h not in ids) + 3 * len(headers) + 1
    if rows and needed > out_console.width:
        for r in rows:
            for h, v in zip(headers, r):
                out_console.print(f"{h}: {v}", markup=False, highlight=False, soft_wrap=True)
            out_console.print()
        return
    table = Table()
    for h in headers:
        if h in ids:
            table.add_column(h, no_wrap=True, min_width=id_width[h])
        else:
            table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    out_console.print(table)


def _print_json(value: Any) -> None:
    """The one JSON document of a ``--json`` command, on stdout (rich would wrap and colour it)."""
    import json

    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def _version(value: bool) -> None:
    if value:
        import quant_batch

        out_console.print(f"quant-batch {quant_batch.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Batch embeddings and image rendering on the QuantCDN AI Inference API."""


_PREFECT_HELP = "Run the Prefect flow (--prefect) or in-process (--no-prefect); default: Prefect only if a Prefect API is configured."
_JSON_HELP = "Print one JSON document on stdout (logs and progress go to stderr)."


def _print_summary(summary: dict[str, Any], title: str, as_json: bool = False) -> int:
    from quant_batch.runs.summary import RunSummary

    s = RunSummary.from_dict(summary)
    if as_json:
        _print_json(s.to_dict())
        return s.exit_code
    table = Table(title=title, show_header=False)
    for k, v in s.table():
        table.add_row(k, v)
    out_console.print(table)
    return s.exit_code


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
    id_column: Annotated[str | None, typer.Option(help="Row id column of a table target (default id).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column of a table target (default text).")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=_PREFECT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Embed a corpus (config, folder, document, or .parquet/.csv/.jsonl table) into Parquet + DuckDB.

    Only new or changed chunks are sent.
    """
    import quant_batch.api as api

    if replay_run:
        with _errors_to_exit():
            from quant_batch.embed.config import resolve_corpus_config

            cfg = resolve_corpus_config(target, out=out, id_column=id_column, text_column=text_column)
            _check_replay_run(cfg.out, "embed", replay_run)

    with _errors_to_exit(), _progress_bar("embedding") as up:
        summary = api.embed(
            target,
            out=out,
            prefect=prefect,
            replay=replay_run or replay,
            id_column=id_column,
            text_column=text_column,
            on_progress=up,
            concurrency=concurrency,
            max_cost=max_cost,
        )
    raise typer.Exit(_print_summary(summary.to_dict(), "embed", as_json))


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
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=_PREFECT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Render every row of a prompt manifest to PNG files + Parquet + DuckDB."""
    import quant_batch.api as api

    defaults = {k: v for k, v in {"width": width, "height": height, "quality": quality, "region": region}.items() if v}
    params: dict[str, Any] = dict(
        concurrency=concurrency, skip_invalid=skip_invalid or None, max_cost=max_cost, defaults=defaults or None
    )
    with _errors_to_exit():
        from quant_batch.render.config import resolve_render_config

        cfg = resolve_render_config(target, out=out, **params)
        _check_replay_run(cfg.out, "render", replay_run)
        with _progress_bar("rendering") as up:
            summary = api.render(
                target, out=out, prefect=prefect, replay=replay_run or replay, on_progress=up, **params
            )
    code = _print_summary(summary.to_dict(), "render", as_json)
    sheet = Path(cfg.out) / "index.html"
    (console if as_json else out_console).print(f"contact sheet: {sheet}", highlight=False)
    raise typer.Exit(code)


@app.command()
def enrich(
    config: Annotated[Path, typer.Argument(help="Enrichment config (YAML with catalog, source, template).")],
    concurrency: Annotated[int | None, typer.Option(help="Chat requests in flight.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Spend cap in USD for this run.")] = None,
    replay: Annotated[bool, typer.Option(help="Also resend rows that failed or were truncated before.")] = False,
    replay_run: Annotated[str | None, typer.Option(help="Resend only what failed terminally in this run.")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=_PREFECT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Run a chat prompt over every row of a catalog table; answers land in a DuckDB table."""
    import quant_batch.api as api

    with _errors_to_exit():
        from quant_batch.enrich.config import load_enrich_config

        cfg = load_enrich_config(config, concurrency=concurrency, max_cost=max_cost)
        _check_replay_run(cfg.catalog, "enrich", replay_run)
        with _progress_bar("enriching") as up:
            summary = api.enrich(
                config,
                prefect=prefect,
                replay=replay_run or replay,
                on_progress=up,
                concurrency=concurrency,
                max_cost=max_cost,
            )
    code = _print_summary(summary.to_dict(), "enrich", as_json)
    (console if as_json else out_console).print(
        f"results: table {cfg.table} in {Path(cfg.catalog) / 'catalog.duckdb'}", highlight=False
    )
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
    """embed, render or enrich: the command a config, folder, table or manifest belongs to."""
    from quant_batch.targets import target_kind

    _is_render_yaml(target)  # broken YAML: exit 2 with file:line
    return {"corpus": "embed", "render": "render", "enrich": "enrich"}[target_kind(target)]


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
    source: Annotated[str | None, typer.Option(help="Only sources matching this glob, e.g. 'docs/**/*.md'.")] = None,
    where: Annotated[list[str] | None, typer.Option(help="Metadata equality KEY=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Print the chunks closest to QUERY, with score, document (a table row's file#id) and position."""
    with _errors_to_exit():
        import quant_batch.api as api
        from quant_batch.store.layout import Layout

        Layout(index).require_output()
        hits = api.search(index, query, k=k, source=source, where=_key_values(where or []))
    if as_json:
        from dataclasses import asdict

        _print_json([asdict(h) for h in hits])
        return
    table = Table("score")
    table.add_column("document", no_wrap=True, min_width=max((len(h.doc_id) for h in hits), default=8))
    table.add_column("pos")
    table.add_column("text")
    for h in hits:
        snippet = " ".join(h.text.split())[:110]
        table.add_row(f"{h.score:.3f}", h.doc_id, str(h.position), snippet)
    out_console.print(table)


def _key_values(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--where")
        out[key] = value
    return out


@app.command()
def plan(
    target: Annotated[
        Path, typer.Argument(help="Corpus config / folder, a manifest / render config, or an enrich config.")
    ],
    out: Annotated[Path | None, typer.Option(help="Output folder to compare against.")] = None,
    latency: Annotated[
        float | None, typer.Option(help="Assumed seconds per API call (default 0.5 embed, 20 image, 2 chat).")
    ] = None,
    id_column: Annotated[str | None, typer.Option(help="Row id column of a table target (default id).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column of a table target (default text).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Show what a run would do and cost, sending zero API requests.

    A table of texts (.parquet, or .csv/.jsonl with the text column and no image-request
    columns) plans an embedding; a manifest plans a render; an enrich config plans enrichment.
    """
    with _errors_to_exit():
        import quant_batch.api as api

        result = api.plan(target, out=out, latency=latency, id_column=id_column, text_column=text_column)
    if as_json:
        _print_json(result)
        return
    problems = result.pop("problems", [])
    result.pop("target")
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
        "messages": [{"role": "user", "content": prompt}],
        "modelId": model,
        "maxTokens": max_tokens,
        "temperature": temperature,
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
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """List recent runs: status, counts, cost, errors, wall time."""
    from quant_batch.runs.summary import list_runs
    from quant_batch.store.layout import Layout

    with _errors_to_exit():
        layout = Layout(out).require_output()
    if as_json:
        _print_json(list_runs(layout.runs, limit))
        return
    rows = [
        (
            r["run_id"],
            r.get("kind"),
            r.get("status"),
            r.get("api_calls"),
            r.get("errors"),
            r.get("cost_usd"),
            r.get("wall_s"),
            r.get("reason") or "",
        )
        for r in list_runs(layout.runs, limit)
    ]
    _print_rows(
        ("run", "kind", "status", "api calls", "errors", "cost $", "wall s", "reason"),
        [
            (r[0], str(r[1]), str(r[2]), str(r[3]), str(r[4]), f"{r[5] or 0:.6f}", f"{r[6] or 0:.1f}", r[7])
            for r in rows
        ],
        ids=("run",),
    )


@app.command()
def errors(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    run: Annotated[str | None, typer.Option("--run", help="Only the dead letters of this run id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """List the dead letters (failed records): key, stage, source/row, status, message.

    Read from the error part files, so it works while a run is writing.
    """
    from quant_batch.query.failures import list_errors, where

    records = list_errors(out, run)
    if as_json:
        _print_json(records)
        return
    rows = [
        (
            r["run_id"],
            r["stage"],
            r["key"] or "",
            where(r),
            str(r["status"] or "") + (" (retried next run)" if r["retryable"] else ""),
            r["message"],
        )
        for r in records
    ]
    _print_rows(("run", "stage", "key", "source/row", "status", "message"), rows, ids=("run", "key"))
    console.print(f"{len(records)} error record(s)", highlight=False)


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
def ui(
    outs: Annotated[list[Path], typer.Argument(help="Output folders (embed and/or render).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-loopback --host.")] = False,
) -> None:
    """Serve a read-only web page over OUTS: search, documents, images, runs, failures."""
    with _errors_to_exit():
        import uvicorn

        from quant_batch.ui import app as ui_app
        from quant_batch.ui.serve import check_host, check_outs, url

        warning = check_host(host, allow_remote)
        web = ui_app(check_outs(outs))
    if warning:
        console.print(f"[yellow]{warning}[/yellow]", highlight=False)
    out_console.print(f"quant-batch ui on {url(host, port)}  (Ctrl+C stops it)", highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="warning")


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
    query: Annotated[
        str, typer.Option(help="Search query to run after indexing.")
    ] = "when is the library open on sunday",
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
    return json.dumps(
        {
            "sources": [{"path": str(sample / "corpus")}, {"table": str(sample / "corpus_table" / "faq.jsonl")}],
            "out": str(out),
            "chunking": {"max_chars": 1200, "overlap_chars": 150},
        },
        indent=2,
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
