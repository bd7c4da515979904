"""The web page at size: search answer time at 100k chunks, gallery first page at 10,000 images.

``python -m benchmarks.ui_pages [--chunks 100000] [--images 10000] [--workdir /tmp/ui-bench]``

Outputs are written straight in the published layout a run leaves (state files, vector parts of
1,000 rows, one image part per row, 1024×1024 PNGs from the emulator's picture maker), then the
app answers in-process (``TestClient``: server time, no browser). The query is embedded by the
emulator over loopback, exactly as a real search. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import SecretStr

from quant_batch.client import QuantClient
from quant_batch.client.settings import ApiSettings
from quant_batch.embed.plan import DOC_SCHEMA, LIVE_SCHEMA
from quant_batch.emulator import EmulatorServer
from quant_batch.emulator.synth import png_bytes, synth_image
from quant_batch.hashing import embedding_generation, sha256_hex
from quant_batch.render.run import IMAGE_SCHEMA
from quant_batch.store.layout import Layout
from quant_batch.store.records import vector_array

MODEL, DIMS = "amazon.titan-embed-text-v2:0", 1024
WORDS = "library opening hours sunday bicycle repair garden compost star party recipe bread".split()


def write_index(root: Path, n: int, part_rows: int = 1000) -> None:
    lay, gen = Layout(root), embedding_generation(MODEL, DIMS, True)
    rng = np.random.default_rng(1)
    live, docs = [], []
    for start in range(0, n, part_rows):
        rows = range(start, min(n, start + part_rows))
        vecs = rng.standard_normal((len(rows), DIMS), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        keys = [f"k{i:08d}" for i in rows]
        texts = [" ".join(rng.choice(WORDS, 80)) for _ in rows]
        lay.vector_parts(gen).mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table({"key": keys, "text": texts, "vector": vector_array(vecs)}),
            lay.vector_parts(gen) / f"bench-{start:08d}.parquet",
        )
        live += [
            {
                "chunk_id": f"c{i}",
                "doc_id": f"doc-{i // 10:06d}.md",
                "source_path": f"doc-{i // 10:06d}.md",
                "position": i % 10,
                "start_char": 0,
                "end_char": len(t),
                "text": t,
                "key": k,
                "context": None,
            }
            for i, k, t in zip(rows, keys, texts, strict=True)
        ]
    docs = [
        {
            "doc_id": f"doc-{d:06d}.md",
            "source_path": f"doc-{d:06d}.md",
            "content_hash": "x",
            "chunker": "x",
            "chunks": 10,
            "status": "ok",
            "message": None,
            "run_id": "embed-bench",
        }
        for d in range((n + 9) // 10)
    ]
    lay.state.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(live, schema=LIVE_SCHEMA), lay.live(gen))
    pq.write_table(pa.Table.from_pylist(docs, schema=DOC_SCHEMA), lay.documents(gen))
    lay.generation.write_text(json.dumps({"generation": gen, "model": MODEL, "dimensions": DIMS, "normalize": True}))


def write_renders(root: Path, n: int, distinct: int = 64) -> None:
    lay = Layout(root)
    lay.image_parts.mkdir(parents=True, exist_ok=True)
    pngs = [png_bytes(synth_image(1024, 1024, "TEXT_IMAGE", "bench", i)) for i in range(distinct)]
    for i in range(n):
        data = pngs[i % distinct]
        (root / f"img-{i:05d}_0.png").write_bytes(data)
        row = {
            "id": f"img-{i:05d}",
            "n": 0,
            "key": f"{i:064x}",
            "line": i + 1,
            "path": f"img-{i:05d}_0.png",
            "sha256": sha256_hex(data + str(i).encode()),
            "width": 1024,
            "height": 1024,
            "bytes": len(data),
            "seed": i,
            "task_type": "TEXT_IMAGE",
            "prompt": f"A lighthouse at dusk, study {i}",
            "model": "m",
            "region": "us-east-1",
            "quality": "standard",
            "params": json.dumps({"prompt": "x", "width": 1024}),
            "status": "ok",
            "error": None,
            "latency_s": 1.0,
            "attempts": 1,
            "cost_usd": 0.04,
            "run_id": "render-bench",
            "created_at": 1.0e9 + i,
        }
        pq.write_table(
            pa.Table.from_pylist([row], schema=IMAGE_SCHEMA), lay.image_parts / f"render-bench-{i:05d}.parquet"
        )


def _timed(tc, url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    r = tc.get(url)
    assert r.status_code == 200, (url, r.status_code)
    return time.perf_counter() - t0, r.content


def measure(work: Path, chunks: int, images: int) -> dict:
    from fastapi.testclient import TestClient

    from quant_batch.ui import app

    out: dict = {"chunks": chunks, "images": images}
    with (
        EmulatorServer(token="bench", port=0, mode="thread") as emu,
        QuantClient(ApiSettings(api_key=SecretStr("bench"), organization="bench", base_url=emu.base_url)) as client,
    ):
        tc = TestClient(app([work / "index", work / "renders"], client=client))
        out["search_first_s"], _ = _timed(tc, "/o/index/search?q=library+sunday+hours")  # builds the matrix
        warm = [_timed(tc, f"/o/index/search?q=library+{w}")[0] for w in WORDS]
        out["search_warm_median_s"] = statistics.median(warm)
        out["gallery_first_load_s"], _ = _timed(tc, "/o/renders/images")  # reads 10,000 parts once
        times, html = zip(*(_timed(tc, f"/o/renders/images?page={p}") for p in (1, 2, 3, 1, 2, 3, 1)), strict=True)
        out["gallery_page_median_s"] = statistics.median(times)
        out["gallery_html_bytes"] = len(html[0])
        thumbs = [s.split('"')[0] for s in html[0].decode().split('src="')[1:]]
        cold = [_timed(tc, t) for t in thumbs]
        out["thumbs_per_page"] = len(thumbs)
        out["thumbs_cold_total_s"] = sum(t for t, _ in cold)
        out["thumbs_warm_total_s"] = sum(_timed(tc, t)[0] for t in thumbs)
        out["thumbs_bytes"] = sum(len(b) for _, b in cold)
        out["gallery_first_page_bytes"] = out["gallery_html_bytes"] + out["thumbs_bytes"]
        out["full_png_bytes_per_page"] = sum((work / "renders" / Path(t).name).stat().st_size for t in thumbs)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/quant-batch-ui-bench"))
    p.add_argument("--keep", action="store_true", help="reuse and keep the generated outputs")
    a = p.parse_args()
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)
    if not (a.workdir / "index").exists():
        write_index(a.workdir / "index", a.chunks)
        write_renders(a.workdir / "renders", a.images)
    shutil.rmtree(a.workdir / "index" / ".ui-cache", ignore_errors=True)
    shutil.rmtree(a.workdir / "renders" / ".ui-cache", ignore_errors=True)
    print(json.dumps(measure(a.workdir, a.chunks, a.images)))
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
