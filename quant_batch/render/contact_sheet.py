"""``index.html``: a contact sheet of the latest render of every row, openable from disk."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

from quant_batch.runs.summary import RunSummary
from quant_batch.store.catalog import Catalog
from quant_batch.store.files import write_bytes_atomic

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem}
figure img{width:100%;height:auto;display:block;border-radius:4px;background:#eee}
figcaption{font-size:.8rem;line-height:1.3}
.params{color:#666;font-size:.72rem;word-break:break-word}
table{border-collapse:collapse;margin-top:1rem}td,th{border:1px solid #ddd;padding:.3rem .5rem;font-size:.85rem}
.failed{color:#a00}
"""


def _figure(row: dict) -> str:
    e = html.escape
    params = json.loads(row["params"] or "{}")
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("text", "prompt"))
    warn = f'<div class="failed">{e(row["error"])}</div>' if row.get("error") else ""
    seed = f" · seed {row['seed']}" if row.get("seed") is not None else ""
    return (
        f'<figure><a href="{e(row["path"])}"><img loading="lazy" src="{e(row["path"])}" '
        f'alt="{e(row["prompt"] or row["id"])}"></a><figcaption><b>{e(row["id"])}</b> #{row["n"]} '
        f"{seed} · {row['width']}×{row['height']}<br>{e(row['prompt'] or '')}"
        f'<div class="params">{e(row["task_type"])} · {e(shown)}</div>{warn}</figcaption></figure>'
    )


def _failed_rows(catalog: Catalog, run_id: str, still_failing: Mapping[str, tuple[str, int]]) -> list[tuple]:
    """This run's errors, plus the last error of each row an earlier run failed and this one skipped."""
    failed = catalog.con.execute(
        "SELECT coalesce(doc_id, ''), line, stage, message FROM errors WHERE run_id = ?", [run_id]
    ).fetchall()
    if still_failing:
        earlier = catalog.con.execute(
            "SELECT key, stage, message FROM errors WHERE stage = 'render' AND list_contains(?, key) "
            "QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC) = 1",
            [list(still_failing)],
        ).fetchall()
        # id and line from the current manifest: the key survives reordering and renaming
        failed += [(*still_failing[k], st, f"{m} (earlier run; --replay sends it again)") for k, st, m in earlier]
    return sorted(failed, key=lambda r: r[1] or 0)


def write_contact_sheet(
    catalog: Catalog, root: Path, summary: RunSummary, *, still_failing: Mapping[str, tuple[str, int]] | None = None
) -> Path:
    """Write ``root/index.html`` from the ``images`` view and the rows that failed.

    Args:
        still_failing: key -> (id, line) of rows this run skipped because an earlier run failed
            them terminally; their last error is listed with this run's.
    """
    con = catalog.con
    images: list[dict] = []
    if catalog._has_table("image_renders"):
        cur = con.execute("SELECT * FROM images ORDER BY id, n")
        cols = [d[0] for d in cur.description]
        images = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    failed = _failed_rows(catalog, summary.run_id, still_failing or {})
    e = html.escape
    fail_rows = "".join(
        f'<tr class="failed"><td>{e(str(i))}</td><td>{ln or ""}</td><td>{e(st)}</td><td>{e(m)}</td></tr>'
        for i, ln, st, m in failed
    )
    summary_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary.table())
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>quant-batch renders</title>"
        f"<style>{_STYLE}</style></head><body><h1>Renders</h1><table>{summary_rows}</table>"
        f"<h2>Images ({len(images)})</h2><div class='grid'>{''.join(_figure(r) for r in images)}</div>"
        + (
            f"<h2>Failed rows ({len(failed)})</h2><table><tr><th>id</th><th>line</th><th>stage</th>"
            f"<th>reason</th></tr>{fail_rows}</table>"
            if failed
            else ""
        )
        + "</body></html>"
    )
    path = root / "index.html"
    write_bytes_atomic(path, doc.encode("utf-8"))
    return path
