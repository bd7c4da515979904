"""A render run: validate the manifest → skip rendered rows → render → PNGs + parts → catalog.

Like the corpus run, the single-writer side (:class:`RenderRun`) owns the lock and DuckDB, and
:func:`render_rows` is plain work any executor can run. Every image is written atomically under
the output folder with a sanitised name; a row's Parquet part is written only after its images,
so a part always points at files that exist.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
from PIL import Image

from quant_batch.client import ImageResult, QuantClient
from quant_batch.errors import RUN_STOPPERS, InputError, QuantError, RequestRejected, TransientError, stop_reason
from quant_batch.hashing import sha256_hex
from quant_batch.pricing import Budget, PriceTable, load_prices
from quant_batch.render.config import RenderConfig
from quant_batch.render.contact_sheet import write_contact_sheet
from quant_batch.render.manifest import Manifest, RenderRow, build_request, load_manifest
from quant_batch.render.rules import output_size
from quant_batch.runs.executor import interleaved_shards, run_in_threads, sum_results
from quant_batch.runs.session import RunSession
from quant_batch.runs.summary import RunSummary
from quant_batch.store.commit import parquet_bytes
from quant_batch.store.layout import Layout
from quant_batch.store.output import OutputRef
from quant_batch.store.records import ErrorRecord, commit_errors, write_errors

SEED_MAX = 858_993_459  # the range AWS's own examples use; valid whatever the true maximum is

# explicit types: inferred from one row, an all-None column (error, seed) becomes Arrow null, and
# the first part loaded fixes the catalog's column types for every later part
IMAGE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("n", pa.int64()),
        ("key", pa.string()),
        ("line", pa.int64()),
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("bytes", pa.int64()),
        ("seed", pa.int64()),
        ("task_type", pa.string()),
        ("prompt", pa.string()),
        ("model", pa.string()),
        ("region", pa.string()),
        ("quality", pa.string()),
        ("params", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int64()),
        ("cost_usd", pa.float64()),
        ("run_id", pa.string()),
        ("created_at", pa.float64()),
    ]
)


@dataclass(frozen=True)
class RenderContext:
    """Plain settings a render worker needs (pickles to any executor)."""

    output: OutputRef
    run_id: str
    embed_images: bool = False


@dataclass
class RenderResult:
    parts: list[str] = field(default_factory=list)
    error_part: str | None = None
    rendered: int = 0
    images: int = 0
    failed: int = 0
    api_calls: int = 0
    attempts: int = 0
    throttled: int = 0
    cost_usd: float = 0.0
    image_sizes: dict[str, int] = field(default_factory=dict)
    skipped_cap: int = 0
    duplicates_avoided: int = 0
    budget_halt: str | None = None
    """A run-level failure met by this shard (refused token, unreachable service)."""


def safe_output_path(root: Path, row_id: str, n: int) -> Path:
    """``root/{id}_{n}.png``, refusing any name that would land outside ``root``."""
    name = image_key(row_id, n)
    path = (root / name).resolve()
    if path.parent != root.resolve():
        raise InputError(f"output {name!r} would be written outside {root}")
    return path


def image_key(row_id: str, n: int) -> str:
    """The key of a row's ``n``-th image, ``{id}_{n}.png``, refusing names that are not one plain file."""
    name = f"{row_id}_{n}.png"
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise InputError(f"unsafe output name {name!r}")
    return name


def _checked_key(ctx: RenderContext, row_id: str, n: int) -> str:
    local = Path(ctx.output.location) if ctx.output.is_local else None
    # a local folder also refuses a planted symlink that would lead the write elsewhere
    return safe_output_path(local, row_id, n).name if local is not None else image_key(row_id, n)


def _png_info(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def _failure(row: RenderRow, ctx: RenderContext, exc: QuantError) -> ErrorRecord:
    return ErrorRecord(
        ctx.run_id,
        "render",
        getattr(exc, "server_message", None) or str(exc),
        source_path=None,
        line=row.line,
        doc_id=row.id,
        key=row.key,
        status=getattr(exc, "status", None),
        kind=type(exc).__name__,
        retryable=isinstance(exc, TransientError),
    )


def _render_one(
    row: RenderRow,
    client: QuantClient,
    ctx: RenderContext,
    prices: PriceTable,
    res: RenderResult,
    errors: list[ErrorRecord],
) -> None:
    seed = row.seed if row.seed is not None else secrets.randbelow(SEED_MAX + 1)
    t0 = time.monotonic()
    try:
        request = build_request(row, seed)
        res.api_calls += 1
        out = client.generate_image(request)
        latency = time.monotonic() - t0
        res.attempts += out.info.attempts
        res.throttled += out.info.throttled
        # inside the try: an output name refused here (a planted symlink) fails this row only
        rows = _write_images(row, request, out, ctx, prices, res, latency)
    except RUN_STOPPERS as exc:  # not the row's fault: it stays pending for the next run
        res.budget_halt = stop_reason(exc)
        return
    except (RequestRejected, TransientError, InputError) as exc:
        res.failed += 1
        errors.append(_failure(row, ctx, exc))
        return
    if not rows:
        res.failed += 1
        errors.append(
            ErrorRecord(
                ctx.run_id,
                "render",
                out.error or "no images returned",
                line=row.line,
                doc_id=row.id,
                key=row.key,
                kind="ContentBlocked",
            )
        )
        return
    part = f"parts/images/{ctx.run_id}-{row.key[:16]}.parquet"
    schema = IMAGE_SCHEMA.append(pa.field("png", pa.binary())) if ctx.embed_images else IMAGE_SCHEMA
    out_writer = ctx.output.open()
    table = pa.Table.from_pylist(rows, schema=schema)
    if not out_writer.commit(part, parquet_bytes(table, {"run_id": ctx.run_id})):
        res.duplicates_avoided += 1
    _remove_stale_images(ctx, row.id, len(rows))
    res.parts.append(part)
    res.rendered += 1
    res.images += len(rows)


def _remove_stale_images(ctx: RenderContext, row_id: str, keep: int) -> None:
    """After a re-render with fewer images, delete the old ``{id}_{n}.png`` beyond the new count.

    Runs after the new part is committed, so the catalog never points at a file removed early.
    """
    out = ctx.output.open()
    n = keep
    while out.exists(stale := _checked_key(ctx, row_id, n)):
        out.delete(stale)
        n += 1


def _write_images(
    row: RenderRow,
    request: dict,
    out: ImageResult,
    ctx: RenderContext,
    prices: PriceTable,
    res: RenderResult,
    latency: float,
) -> list[dict]:
    """Write each returned PNG atomically and return its catalog rows."""
    params = orjson.dumps(row.params(), default=str).decode()
    cfg = request.get("imageGenerationConfig") or {}
    seed = cfg.get("seed")  # the seed actually sent; background removal takes none
    quality = cfg.get("quality", "standard")
    model = request.get("modelId", "amazon.nova-canvas-v1:0")
    rows = []
    # every name and size first: a row that fails here leaves no file behind
    sized = [(_checked_key(ctx, row.id, n), data, *_png_info(data)) for n, data in enumerate(out.images)]
    writer = ctx.output.open()
    for n, (name, data, width, height) in enumerate(sized):
        writer.replace(name, data)  # a re-render under new settings replaces the image of that name
        cost = prices.image_cost(model, width, height, quality)
        res.cost_usd += cost
        size_key = f"{width}x{height}/{quality}"
        res.image_sizes[size_key] = res.image_sizes.get(size_key, 0) + 1
        rows.append(
            {
                "id": row.id,
                "n": n,
                "key": row.key,
                "line": row.line,
                "path": name,
                "sha256": sha256_hex(data),
                "width": width,
                "height": height,
                "bytes": len(data),
                "seed": seed,
                "task_type": row.task_type,
                "prompt": row.prompt,
                "model": model,
                "region": request.get("region"),
                "quality": quality,
                "params": params,
                "status": "ok",
                "error": out.error,
                "latency_s": latency,
                "attempts": out.info.attempts,
                "cost_usd": cost,
                "run_id": ctx.run_id,
                "created_at": time.time(),
                **({"png": data} if ctx.embed_images else {}),
            }
        )
    return rows


def render_rows(
    rows: Sequence[RenderRow],
    client: QuantClient,
    ctx: RenderContext,
    *,
    prices: PriceTable | None = None,
    budget: Budget | None = None,
    on_row: Callable[[], None] | None = None,
) -> RenderResult:
    """Render ``rows`` one after another; failures become error records, never exceptions.

    Each row's estimated cost is reserved from ``budget`` before it is sent (the spend cap), and
    a refused token or an unreachable service halts the budget, so every shard stops sending.
    """
    prices = prices or load_prices()
    budget = budget if budget is not None else Budget(None)
    res = RenderResult()
    errors: list[ErrorRecord] = []
    for row in rows:
        est = estimate_row_cost(row, prices)
        if not budget.reserve(est):
            res.skipped_cap += 0 if budget.halted else 1
            continue
        before = res.cost_usd
        _render_one(row, client, ctx, prices, res, errors)
        budget.settle(est, res.cost_usd - before)
        if res.budget_halt:
            budget.halt(res.budget_halt)
        if on_row:
            on_row()
    if errors:
        name = f"{ctx.run_id}-render-{(errors[0].key or '')[:16]}"
        res.error_part = commit_errors(ctx.output.open(), Layout.error_part_key(name), errors)
    return res


def estimate_row_cost(row: RenderRow, prices: PriceTable) -> float:
    req = row.request
    cfg = req.get("imageGenerationConfig") or {}
    try:
        w, h = output_size(req)
    except (QuantError, KeyError, TypeError, ValueError):
        w, h = 1024, 1024
    return prices.image_cost(
        req.get("modelId", "amazon.nova-canvas-v1:0"),
        w,
        h,
        cfg.get("quality", "standard"),
        cfg.get("numberOfImages", 1),
    )


class RenderRun(RunSession):
    """The single-writer side of one render run; use as a context manager."""

    def __init__(self, config: RenderConfig, *, lock_wait: float = 0.0):
        # read and check the manifest before the session opens: a mistyped path or an invalid
        # manifest leaves no catalog and no run record behind
        self.manifest: Manifest = load_manifest(config.manifest, config.defaults)
        if self.manifest.problems and not config.skip_invalid:
            self.manifest.raise_for_problems()
        super().__init__(config.out, "render", lock_wait=lock_wait, storage=config.storage)
        self.config = config
        self.prices = load_prices(config.pricing)
        self.pending: list[RenderRow] = []
        self.budget = Budget(config.max_cost)
        self.skipped_failed: list[RenderRow] = []  # failed terminally before; only replay resends them
        self.results: list[RenderResult] = []
        self.unchanged = 0

    @property
    def context(self) -> RenderContext:
        return RenderContext(self.layout.ref(), self.summary.run_id, self.config.embed_images)

    def make_plan(self, *, replay: bool | str = False) -> list[RenderRow]:
        """Pick the rows of the (already validated) manifest to render."""
        assert self.catalog is not None
        models = [r.request.get("modelId", "amazon.nova-canvas-v1:0") for r in self.manifest.rows]
        self.check_prices(self.prices, "images", models, self.config.max_cost)
        done = self.catalog.done_image_keys()
        dead = self.catalog.dead_letter_keys(("render",), replay=replay) - done
        for row in self.manifest.rows:
            if row.key in done:
                self.unchanged += 1
            elif row.key in dead:
                self.skipped_failed.append(row)
            else:
                self.pending.append(row)
        return self.pending

    def shards(self) -> list[list[RenderRow]]:
        return interleaved_shards(self.pending, self.config.concurrency)

    def absorb(self, result: RenderResult) -> None:
        assert self.catalog is not None
        self.results.append(result)
        if result.budget_halt:
            self.budget.halt(result.budget_halt)
        self.catalog.load_image_parts(self.layout.fetch(result.parts))
        if result.error_part:
            self.catalog.load_error_parts(self.layout.fetch([result.error_part]))

    def finish(self) -> RunSummary:
        assert self.catalog is not None
        s, cat = self.summary, self.catalog
        invalid = [
            ErrorRecord(s.run_id, "validate", r.reason, source_path=str(self.manifest.path), line=r.line, doc_id=r.id)
            for r in self.manifest.invalid_rows
        ]
        part = write_errors(self.layout.error_parts, f"{s.run_id}-validate", invalid)
        if part:
            self.layout.push(part, once=True)
            cat.load_error_parts([part])
        cat.sync()
        tot = sum_results(self.results, RenderResult)
        s.api_calls = tot.api_calls
        s.errors = tot.failed + len(invalid)
        s.cost_usd = round(tot.cost_usd, 6)
        s.stats |= {
            "rows": len(self.manifest.rows) + len(self.manifest.invalid_rows),
            "rendered": tot.rendered,
            "skipped_unchanged": self.unchanged,
            "failed": tot.failed,
            "invalid": len(invalid),
            "retried": max(0, tot.attempts - (tot.api_calls - tot.failed)),
            "throttled": tot.throttled,
            "images": tot.images,
            "images_by_size": tot.image_sizes,
            "skipped_cap": tot.skipped_cap,
            "skipped_failed": len(self.skipped_failed),
            "duplicates_avoided": tot.duplicates_avoided,
        }
        status, reason, code = self.outcome(
            failed=s.errors, skipped=tot.skipped_cap, dead=len(self.skipped_failed), unit="rows"
        )
        s.finish(status, reason, exit_code=code)
        self.save_summary()
        cat.sync()
        sheet = write_contact_sheet(
            cat, self.layout.root, s, still_failing={r.key: (r.id, r.line) for r in self.skipped_failed}
        )
        self.layout.push(sheet)
        return s


def render_manifest(
    config: RenderConfig,
    client: QuantClient,
    *,
    replay: bool | str = False,
    on_row: Callable[[], None] | None = None,
    lock_wait: float = 0.0,
) -> RunSummary:
    """Run a whole render job in this process with a thread pool (no Prefect)."""
    with RenderRun(config, lock_wait=lock_wait) as run:
        run.make_plan(replay=replay)
        run_in_threads(
            run,
            run.shards(),
            lambda shard: render_rows(shard, client, run.context, prices=run.prices, budget=run.budget, on_row=on_row),
            config.concurrency,
        )
        return run.finish()
