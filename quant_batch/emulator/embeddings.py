"""The embeddings endpoint: Titan Text Embeddings v1/v2, validated like the service.

1-100 texts per request, each 1-50,000 characters and at most 8,192 tokens; v2 takes 256, 512,
1024 or 8192 dimensions, v1 always answers 1536. Vectors come from ``synth.embed_batch``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quant_batch.emulator import synth
from quant_batch.emulator.faults import FaultConfig
from quant_batch.emulator.responses import EmulatorState, Outcome, invalid, malformed

TITAN_V2, TITAN_V1 = "amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v1:0"
V2_DIMENSIONS = (256, 512, 1024, 8192)
V1_DIMENSION = 1536
MAX_BATCH, MAX_CHARS, MAX_TOKENS = 100, 50_000, 8192


def _embedding_settings(data: dict) -> tuple[str, int, bool]:
    model = data.get("modelId") or TITAN_V2
    dims, normalize = data.get("dimensions"), data.get("normalize", True)
    if model == TITAN_V2:
        dims = 1024 if dims is None else dims
        if dims not in V2_DIMENSIONS or isinstance(dims, bool):
            raise invalid(f"dimensions: {dims!r} is not supported by {TITAN_V2}; use one of 256, 512, 1024, 8192.")
    elif model == TITAN_V1:
        # v1 is fixed at 1536; the SDK always sends its default 1024, which we let through
        if dims not in (None, 1024, V1_DIMENSION):
            raise invalid(f"dimensions: {TITAN_V1} always returns {V1_DIMENSION} dimensions.")
        dims = V1_DIMENSION
    else:
        raise invalid(f"modelId: unknown embedding model {model!r}; use {TITAN_V2} or {TITAN_V1}.")
    if not isinstance(normalize, bool):
        raise invalid("normalize: must be true or false.")
    return model, dims, normalize


def _embedding_texts(data: dict) -> list[str]:
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise invalid("input: must be a string or a list of strings.")
    if not 1 <= len(texts) <= MAX_BATCH:
        raise invalid(f"input: must hold 1-{MAX_BATCH} texts, got {len(texts)}.")
    return texts


def _check_text(index: int, text: str, poison: str) -> int:
    if not text:
        raise malformed(index, "expected minLength: 1, actual: 0")
    if len(text) > MAX_CHARS:
        raise malformed(index, f"expected maxLength: {MAX_CHARS}, actual: {len(text)}")
    tokens = synth.estimate_tokens(text)
    if tokens > MAX_TOKENS:
        raise invalid(
            f"input[{index}]: Too many input tokens. Max input tokens: {MAX_TOKENS}, "
            f"request input token count: {tokens}"
        )
    if poison and poison in text:
        raise malformed(index, "the model could not process this text")
    return tokens


def _embed_body(data: Any, cfg: FaultConfig) -> tuple[bytes, int]:
    if not isinstance(data, dict):
        raise invalid("body: must be a JSON object.")
    model, dims, normalize = _embedding_settings(data)
    texts = _embedding_texts(data)
    tokens = sum(_check_text(i, t, cfg.poison_marker) for i, t in enumerate(texts))
    vectors = synth.embed_batch(texts, dims, normalize)
    bad = [i for i, t in enumerate(texts) if cfg.bad_vector_marker and cfg.bad_vector_marker in t]
    vectors[bad] = float("nan")
    payload: dict[str, Any] = {
        "embeddings": vectors[0] if isinstance(data["input"], str) else vectors,
        "model": model,
        "dimension": dims,
        "usage": {"inputTokens": tokens, "totalTokens": tokens},
    }
    if bad:
        # JSON has no NaN; like Python's json module we write the bare NaN token
        payload["embeddings"] = payload["embeddings"].tolist()
        return json.dumps(payload).encode(), len(texts)
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), len(texts)


async def handle(data: Any, state: EmulatorState) -> Outcome:
    body, count = await run_in_threadpool(_embed_body, data, state.injector.config)
    return Outcome(Response(body, 200, media_type="application/json"), 200, texts=count)
