"""Dry runs: what a run would send, cost and take, without one API request.

The estimates read the sources (or manifest) and the ledger exactly as a run would, but write
their scratch files to a temporary folder and never open a client.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from quant_batch.corpus.sources import require_documents
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.plan import plan_corpus
from quant_batch.enrich.config import EnrichConfig
from quant_batch.hashing import embedding_generation
from quant_batch.pricing import load_prices
from quant_batch.query.snapshot import Snapshot
from quant_batch.render.config import RenderConfig
from quant_batch.render.manifest import load_manifest
from quant_batch.render.run import estimate_row_cost
from quant_batch.store.catalog import Catalog
from quant_batch.store.files import committed_parquet
from quant_batch.store.keys import KeySet
from quant_batch.store.layout import Layout, open_output
from quant_batch.store.state import count_removed


def estimate_wall_s(
    requests: int,
    concurrency: int,
    latency_s: float,
    *,
    rpm: float | None = None,
    units: float = 0,
    units_per_minute: float | None = None,
) -> float:
    """The slowest of: the concurrency window, the request rate limit, the token/image limit."""
    bounds = [requests * latency_s / max(concurrency, 1)]
    if rpm:
        bounds.append(requests / rpm * 60)
    if units_per_minute:
        bounds.append(units / units_per_minute * 60)
    return max(bounds) if requests else 0.0


def plan_corpus_dry(cfg: CorpusConfig, *, latency_s: float = 0.5) -> dict[str, Any]:
    scan = require_documents(cfg.sources, cfg.storage)
    layout = open_output(cfg.out, cfg.storage, pull=True)
    gen = embedding_generation(cfg.model, cfg.dimensions, cfg.normalize)
    # the part files, not the catalog: a running run holds that
    done = KeySet.from_parts(committed_parquet(layout.vector_parts(gen)))
    prices = load_prices(cfg.pricing)
    with tempfile.TemporaryDirectory(prefix="quant-batch-plan-") as tmp:
        plan = plan_corpus(cfg, layout, "dry-run", done, scratch=Path(tmp))
        removed = count_removed(layout, gen, plan.live_tmp, plan.previous.carried_ids())
    st = plan.stats
    tokens = st.estimated_tokens
    return {
        "documents": st.documents,
        "documents_unreadable": st.documents_failed,
        "chunks_total": st.chunks_total,
        "chunks_new": st.chunks_pending,
        "chunks_unchanged": st.chunks_unchanged,
        "chunks_removed": removed,
        "files_skipped": scan.skipped() or "none",
        "requests": st.batches,
        "estimated_tokens": tokens,
        "estimated_cost_usd": round(prices.embedding_cost(cfg.model, tokens), 6),
        "estimated_wall_s": round(
            estimate_wall_s(
                st.batches,
                cfg.concurrency,
                latency_s,
                rpm=cfg.rate_limits.requests_per_minute,
                units=tokens,
                units_per_minute=cfg.rate_limits.tokens_per_minute,
            ),
            1,
        ),
    }


def plan_render_dry(cfg: RenderConfig, *, latency_s: float = 20.0) -> dict[str, Any]:
    layout = open_output(cfg.out, cfg.storage, pull=True)
    manifest = load_manifest(cfg.manifest, cfg.defaults, cfg.storage)
    with Snapshot(layout.root) as snap:
        done = (
            {r[0] for r in snap.rows("SELECT DISTINCT key FROM image_renders WHERE status = 'ok'")}
            if snap.has_images
            else set()
        )
    prices = load_prices(cfg.pricing)
    pending = [r for r in manifest.rows if r.key not in done]
    images = sum(int((r.request.get("imageGenerationConfig") or {}).get("numberOfImages", 1)) for r in pending)
    return {
        "rows": len(manifest.rows) + len(manifest.invalid_rows),
        "rows_invalid": len(manifest.invalid_rows),
        "rows_new": len(pending),
        "rows_unchanged": len(manifest.rows) - len(pending),
        "requests": len(pending),
        "estimated_images": images,
        "estimated_cost_usd": round(sum(estimate_row_cost(r, prices) for r in pending), 6),
        "estimated_wall_s": round(
            estimate_wall_s(len(pending), cfg.concurrency, latency_s, rpm=cfg.rate_limits.images_per_minute), 1
        ),
        "problems": [str(p) for p in manifest.problems],
    }


def plan_enrich_dry(cfg: EnrichConfig, *, latency_s: float = 2.0) -> dict[str, Any]:
    """Rows an enrichment would send, their input tokens (chars/4) and the most they could cost."""
    from quant_batch.enrich.prompt import Prompt
    from quant_batch.enrich.source import plan_enrich

    prompt = Prompt(cfg)
    cat = Catalog(Layout(Path(cfg.catalog)), read_only=True)
    try:
        done, truncated = cat.done_enrich_keys(cfg.table)
        plan = plan_enrich(cat.con, cfg, prompt, "dry-run", done=done, dead=set(), truncated=truncated)
    finally:
        cat.close()
    prices = load_prices(cfg.pricing)
    n = len(plan.items)
    tokens = plan.est_input_tokens
    return {
        "table": cfg.table,
        "rows": plan.rows,
        "rows_invalid": len(plan.errors),
        "rows_new": n,
        "rows_unchanged": plan.unchanged,
        "rows_truncated_before": plan.skipped_truncated,
        "requests": n,
        "estimated_input_tokens": tokens,
        "max_output_tokens": n * cfg.max_tokens,
        # an upper bound: every answer is charged its full max_tokens
        "estimated_cost_usd": round(prices.chat_cost(cfg.model, tokens, n * cfg.max_tokens), 6),
        "estimated_wall_s": round(
            estimate_wall_s(
                n,
                cfg.concurrency,
                latency_s,
                rpm=cfg.rate_limits.requests_per_minute,
                units=tokens + n * cfg.max_tokens,
                units_per_minute=cfg.rate_limits.tokens_per_minute,
            ),
            1,
        ),
        "problems": [str(e) for e in plan.errors[:20]],
    }
