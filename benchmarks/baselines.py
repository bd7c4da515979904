"""Scenarios 1 and 2: what a user would write without quant-batch, on the same corpus.

``sdk``: the official ``quantcdn`` SDK, one ``embeddings`` call per 100 texts in a plain loop,
as its README shows (the request built with ``EmbeddingsRequest.from_dict``: the README's bare
dict fails the SDK's own validation). The loop is strictly sequential, so its rate per text is
constant; by default it embeds the first ``sdk_n`` texts and the full-corpus wall is projected.

``requests``: a hand-written ``requests.Session`` + ``ThreadPoolExecutor(concurrency)``, batches of
100, ``resp.json()``, all vectors written to one Parquet file at the end. No retries, no ledger,
no per-batch durability: the fastest thing that could work.

Both are compared with the library's run from the ``embed`` scenario (or a fresh one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import DIMS, MODEL, ORG, TOKEN, Outcome, Settings, emulator, endpoint_calls, measured, read_texts
from benchmarks.embed_corpus import RESULT_FILE, corpus_table, median_runs

TITLE_SDK = "Official SDK loop vs quant-batch"
TITLE_REQ = "Hand-written requests + ThreadPoolExecutor vs quant-batch"


def batched(items: Iterable[str], size: int = 100) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def write_vectors(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({"text": texts, "vector": pa.FixedSizeListArray.from_arrays(flat, DIMS)})
    pq.write_table(table, path)


def sdk_loop(base_url: str, texts: list[str], out: Path) -> None:
    import quantcdn
    from quantcdn.models.embeddings_request import EmbeddingsRequest

    configuration = quantcdn.Configuration(host=base_url, access_token=TOKEN)
    vectors: list[list[float]] = []
    with quantcdn.ApiClient(configuration) as api_client:
        api = quantcdn.AIInferenceApi(api_client)
        for batch in batched(texts):
            request = EmbeddingsRequest.from_dict(
                {"input": batch, "modelId": MODEL, "dimensions": DIMS, "normalize": True}
            )
            response = api.embeddings(ORG, request)
            vectors.extend(response.embeddings.actual_instance)
    write_vectors(out, texts, np.asarray(vectors, dtype=np.float32))


def requests_pool(base_url: str, texts: list[str], out: Path, workers: int) -> None:
    import requests
    from requests.adapters import HTTPAdapter

    url = f"{base_url}/api/v3/organizations/{ORG}/ai/embeddings"
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=workers, pool_maxsize=workers))
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def embed(batch: list[str]) -> np.ndarray:
        resp = session.post(
            url, json={"input": batch, "modelId": MODEL, "dimensions": DIMS, "normalize": True}, timeout=60
        )
        resp.raise_for_status()
        return np.asarray(resp.json()["embeddings"], dtype=np.float32)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        vectors = np.concatenate(list(pool.map(embed, batched(texts))))
    session.close()
    write_vectors(out, texts, vectors)


def library_figures(s: Settings, emu: Any) -> dict[str, Any]:
    """The embed scenario's library run if it matches these settings, else a fresh one."""
    path = s.root / RESULT_FILE
    if path.exists():
        res = json.loads(path.read_text())
        if (res["n"], res["latency"], res["concurrency"]) == (s.n, s.embed_latency, s.concurrency):
            return res
    return median_runs(s, emu, 1)


def run_sdk(s: Settings) -> Outcome:
    out = Outcome("sdk", TITLE_SDK)
    texts = read_texts(corpus_table(s))
    subset = texts[: s.sdk_n] if s.sdk_n else texts
    with emulator(embed_latency=s.embed_latency) as emu:
        lib = library_figures(s, emu)
        emu.reset()
        with measured() as m:
            sdk_loop(emu.base_url, subset, s.root / "sdk-vectors.parquet")
        calls = endpoint_calls(emu, "embeddings")
    projected = m.wall * len(texts) / len(subset)
    out.add(
        "SDK loop: texts embedded", len(subset), "texts", note=f"{calls} calls; first {len(subset)} of {len(texts)}"
    )
    out.add(
        "SDK loop: wall",
        m.wall,
        "s",
        note=f"{m.wall / calls:.3f} s per call at {s.embed_latency} s latency; "
        f"CPU {m.cpu:.2f} s ({m.cpu / (len(subset) / 1000):.3f} CPU-s/1k vectors)",
    )
    out.add(
        "SDK loop: projected wall for the corpus",
        projected,
        "s",
        note="measured" if len(subset) == len(texts) else f"linear in batches: {len(texts)} texts",
    )
    out.add("quant-batch: wall for the corpus", lib["wall"], "s")
    out.add("speed-up of quant-batch over the SDK loop", projected / lib["wall"], "×", at_least=10)
    (s.root / "sdk-vectors.parquet").unlink(missing_ok=True)
    return out


def run_requests(s: Settings) -> Outcome:
    out = Outcome("requests", TITLE_REQ)
    texts = read_texts(corpus_table(s))
    walls = []
    with emulator(embed_latency=s.embed_latency) as emu:
        lib = library_figures(s, emu)
        for _ in range(1 if s.quick else 3):
            emu.reset()
            with measured() as m:
                requests_pool(emu.base_url, texts, s.root / "requests-vectors.parquet", s.concurrency)
            walls.append((m.wall, m.cpu))
        calls = endpoint_calls(emu, "embeddings")
    wall, cpu = sorted(walls)[len(walls) // 2]
    out.add(
        "baseline: wall (median)",
        wall,
        "s",
        note=f"{calls} calls per run; runs: " + ", ".join(f"{w:.2f}" for w, _ in walls),
    )
    out.add("baseline: CPU per 1,000 vectors", cpu / (len(texts) / 1000), "CPU-s")
    out.add("quant-batch: wall", lib["wall"], "s")
    out.add(
        "baseline wall ÷ quant-batch wall",
        wall / lib["wall"],
        "",
        at_least=1.0,
        note="≥ 1 means quant-batch is at least as fast",
    )
    (s.root / "requests-vectors.parquet").unlink(missing_ok=True)
    return out
