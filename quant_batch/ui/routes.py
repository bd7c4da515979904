"""The web page's routes: server-rendered HTML over :mod:`quant_batch.ui.data`, no script at all.

Every value reaches the page through Jinja2 autoescaping, and the Content-Security-Policy allows
no script, so a document or prompt holding ``<script>`` shows as text and cannot run. File routes
answer only for PNGs the image parts list, resolved under the output folder; everything else is
404. Pages show output folders by short name, never by machine path.
"""

from __future__ import annotations

import json
import math
import shlex
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from quant_batch.client import QuantClient
from quant_batch.errors import QuantError
from quant_batch.store.location import is_uri
from quant_batch.ui.data import OutputData, manifest_row, out_names, public_path
from quant_batch.ui.thumbs import thumbnail

PER_PAGE = 48
PageNo = Annotated[int, Query(alias="page", ge=1, le=1_000_000)]
CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("quant_batch.ui", "templates"), autoescape=select_autoescape(default=True))
    env.filters["when"] = _when
    env.filters["public"] = public_path
    env.globals["query"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")})
    return env


class _Searcher:
    """Embeds queries with one API client, made from the environment on first use unless given."""

    def __init__(self, client: QuantClient | None):
        self.client, self._own = client, client is None
        self._lock = threading.Lock()

    def get(self) -> QuantClient:
        with self._lock:
            if self.client is None:
                self.client = QuantClient()
            return self.client

    def close(self) -> None:
        if self._own and self.client is not None:
            self.client.close()


def create_app(outs: Sequence[Path | str], *, client: QuantClient | None = None) -> FastAPI:
    """The web app over the output folders ``outs`` (read-only). ``client`` embeds search queries;
    without one, a client is built from ``QUANT_*`` on the first search."""
    named = out_names(outs)
    folders = {name: OutputData(root, name) for name, root in named}
    # how replay commands name a folder: as the user typed it, unless that is a machine path
    shown = {
        name: (str(o) if is_uri(o) or not Path(o).is_absolute() else name)
        for (name, _), o in zip(named, outs, strict=True)
    }
    searcher = _Searcher(client)
    env = _templates()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # read the parts in the background from the start: 10,000 one-row image parts take
        # seconds, which the first page would otherwise wait for
        for data in folders.values():
            threading.Thread(target=data.refresh, daemon=True).start()
        yield
        searcher.close()

    app = FastAPI(title="quant-batch", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(packages=[("quant_batch.ui", "static")]), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def render(template: str, out: OutputData | None, tab: str, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(out=out, outs=list(folders), tab=tab, **ctx)
        return HTMLResponse(html)

    def folder(name: str, refresh: bool = True) -> OutputData:
        data = folders.get(name)
        if data is None:
            raise HTTPException(404)
        if refresh:
            data.refresh()
        return data

    @app.get("/", response_class=HTMLResponse)
    def index() -> Any:
        if len(folders) == 1:
            return RedirectResponse(f"/o/{next(iter(folders))}/runs", status_code=303)
        return render("index.html", None, "")

    @app.get("/o/{name}/search", response_class=HTMLResponse)
    def search(name: str, q: str = "", k: int = 10, source: str = "", where: str = "") -> HTMLResponse:
        data, k = folder(name), max(1, min(k, 100))
        hits, error, elapsed = [], None, None
        if q.strip():
            t0 = time.perf_counter()
            try:
                hits = _search(data, searcher, q, k, source, _key_values(where))
            except QuantError as exc:
                error = public_path(str(exc))
            elapsed = time.perf_counter() - t0
        return render(
            "search.html", data, "search", q=q, k=k, source=source, where=where, hits=hits, error=error, elapsed=elapsed
        )

    @app.get("/o/{name}/documents", response_class=HTMLResponse)
    def documents(name: str, page_no: PageNo = 1) -> HTMLResponse:
        data = folder(name)
        p = _paging(page_no)
        docs = data.documents(p * PER_PAGE, PER_PAGE)
        return render("documents.html", data, "documents", docs=docs, page_no=p + 1, pages=_pages(docs.total))

    @app.get("/o/{name}/document", response_class=HTMLResponse)
    def document(name: str, id: str) -> HTMLResponse:
        data = folder(name)
        chunks = data.document_chunks(id)
        if not chunks:
            raise HTTPException(404)
        return render("document.html", data, "documents", doc_id=id, chunks=chunks)

    @app.get("/o/{name}/images", response_class=HTMLResponse)
    def images(
        name: str, page_no: PageNo = 1, run_id: str = "", task_type: str = "", status: str = "", q: str = ""
    ) -> HTMLResponse:
        data, p = folder(name), _paging(page_no)
        filters = {"run_id": run_id, "task_type": task_type, "status": status, "q": q}
        items = data.gallery(filters, p * PER_PAGE, PER_PAGE)
        return render(
            "images.html",
            data,
            "images",
            items=items,
            filters=filters,
            facets=data.gallery_facets(),
            page_no=p + 1,
            pages=_pages(items.total),
        )

    @app.get("/o/{name}/image", response_class=HTMLResponse)
    def image(name: str, id: str, n: int = 0) -> HTMLResponse:
        data = folder(name)
        row = data.image(id, n)
        if row is None:
            raise HTTPException(404)
        return render(
            "image.html",
            data,
            "images",
            row=row,
            manifest=manifest_row(row),
            errors=data.row_errors(row["key"]),
            inputs=_input_images(row),
        )

    @app.get("/o/{name}/failed", response_class=HTMLResponse)
    def failed(name: str, key: str) -> HTMLResponse:
        data = folder(name)
        row = data.failed_row(key)
        if row is None:
            raise HTTPException(404)
        return render("failed.html", data, "images", row=row, errors=data.row_errors(key))

    @app.get("/o/{name}/runs", response_class=HTMLResponse)
    def runs(name: str) -> HTMLResponse:
        data = folder(name)
        return render("runs.html", data, "runs", runs=[_run_view(r) for r in data.runs()])

    @app.get("/o/{name}/failures", response_class=HTMLResponse)
    def failures(name: str, page_no: PageNo = 1) -> HTMLResponse:
        data, p = folder(name), _paging(page_no)
        rows = data.failures(p * PER_PAGE, PER_PAGE)
        targets = {r["run_id"]: r.get("target") for r in data.runs()}
        for r in rows.rows:
            r["replay"] = replay_command(shown[name], r, targets.get(r.get("run_id")))
        return render("failures.html", data, "failures", rows=rows, page_no=p + 1, pages=_pages(rows.total))

    @app.get("/o/{name}/img/{file}")
    def img(name: str, file: str) -> FileResponse:
        found = folder(name, refresh=False).image_file(file)
        if found is None:
            raise HTTPException(404)
        return FileResponse(found[0], media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/o/{name}/thumb/{file}")
    def thumb(name: str, file: str) -> FileResponse:
        data = folder(name, refresh=False)
        found = data.image_file(file)
        if found is None:
            raise HTTPException(404)
        # named by the image's sha256: a re-rendered image gets a new thumbnail
        return FileResponse(
            thumbnail(data.cache, *found), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
        )

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)

    return app


def _key_values(text: str) -> dict[str, str]:
    """``lang=en, team=ops`` → ``{"lang": "en", "team": "ops"}``; a pair without ``=`` is an error."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if any("=" not in p for p in pairs):
        raise QuantError("metadata filters are key=value pairs separated by commas, e.g. lang=en, team=ops")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def _search(data: OutputData, searcher: _Searcher, q: str, k: int, source: str, where: dict[str, str]) -> list:
    gen = data.generation
    if gen is None:
        raise QuantError("no complete index in this folder yet; run `quant-batch embed` first")
    # the query is embedded exactly as `quant-batch search` does: the index's own model and space
    res = searcher.get().embed([q], model=gen["model"], dimensions=gen["dimensions"], normalize=gen["normalize"])
    return data.rank(res.vectors[0], k, source or None, where or None)


def _paging(page_no: int) -> int:
    return max(0, page_no - 1)


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PER_PAGE))


def _input_images(row: dict) -> list[str]:
    """File names of the row's input images (conditionImage, images, maskImage ...)."""
    names: list[str] = []
    for v in json.loads(row.get("params") or "{}").values():
        values = v if isinstance(v, list) else [v]
        names += [
            public_path(x) for x in values if isinstance(x, str) and x.lower().endswith((".png", ".jpg", ".jpeg"))
        ]
    return names


def _run_view(run: dict) -> dict:
    stats = run.get("stats") or {}
    work, unit = next(
        (
            (stats[k], u)
            for k, u in (("embedded", "vectors"), ("images", "images"), ("answered", "answers"))
            if isinstance(stats.get(k), int)
        ),
        (run.get("api_calls") or 0, "calls"),
    )
    wall = run.get("wall_s") or 0
    counts = {k: v for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool) and v}
    return {**run, "work": work, "unit": unit, "rate": (work / wall) if wall else None, "counts": counts}


def replay_command(out: str, err: dict, target: str | None = None) -> str:
    """The command that resends this dead letter with the other terminal failures of its run.

    ``target`` is what the run was started on (its summary records it); a machine path is cut to
    its file name, like every path on these pages.
    """
    stage = err.get("stage") or ""
    if target:
        shown = shlex.quote(public_path(target) if Path(target).is_absolute() else target)
    else:
        shown = (
            "MANIFEST" if stage in ("render", "validate") else "ENRICH_CONFIG" if stage == "enrich" else "CORPUS_CONFIG"
        )
    if stage == "enrich":  # an enrich config names its own catalog folder
        return f"quant-batch replay {shown} --run {err['run_id']}"
    return f"quant-batch replay {shown} --out {out} --run {err['run_id']}"
