"""The image-generation endpoint: Nova Canvas requests checked by ``render.rules``, real PNGs back.

The same rule table validates manifests before any call and requests here, so the emulator and
the pipeline cannot disagree. Fault markers in a prompt block it whole or in part.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.concurrency import run_in_threadpool

from quant_batch.emulator import synth
from quant_batch.emulator.responses import EmulatorState, Outcome, invalid, json_response
from quant_batch.render import rules

DEFAULT_SEED = 12  # Nova Canvas's documented default
BLOCKED_PROMPT = (
    "This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."
)
SOME_BLOCKED = "Some of the generated images have been blocked by our content filters."
ALL_BLOCKED = "All of the generated images have been blocked by our content filters."


def _render(data: dict, keep: int) -> dict:
    width, height = rules.output_size(data)
    task = data["taskType"]
    config = data.get("imageGenerationConfig") or {}
    seed = config.get("seed", DEFAULT_SEED)
    key = json.dumps(data.get(rules.PARAMS_KEY[task]), sort_keys=True)[:4096]
    alpha = task == "BACKGROUND_REMOVAL"
    images = [
        base64.b64encode(synth.png_bytes(synth.synth_image(width, height, task, key, seed, i, alpha=alpha))).decode(
            "ascii"
        )
        for i in range(keep)
    ]
    result: dict = {"images": images}
    if task == "VIRTUAL_TRY_ON":
        mask = synth.synth_image(width, height, "mask", key, seed).convert("L")
        result["maskImage"] = base64.b64encode(synth.png_bytes(mask)).decode("ascii")
    return result


def _cut_off(image_b64: str) -> str:
    """The first half of a PNG, still valid base64: a plausible header over a broken body."""
    data = base64.b64decode(image_b64)
    return base64.b64encode(data[: len(data) // 2]).decode("ascii")


async def handle(data: Any, state: EmulatorState) -> Outcome:
    cfg = state.injector.config
    violations = await run_in_threadpool(rules.check_image_request, data)
    if violations:
        raise invalid("; ".join(str(v) for v in violations))
    prompts = rules.prompt_texts(data)
    if cfg.moderation_marker and any(cfg.moderation_marker in p for p in prompts):
        raise invalid(BLOCKED_PROMPT)
    wanted = rules.number_of_images(data)
    partial = bool(cfg.partial_block_marker) and any(cfg.partial_block_marker in p for p in prompts)
    keep = wanted - 1 if partial else wanted
    result = await run_in_threadpool(_render, data, keep)
    if cfg.bad_image_marker and any(cfg.bad_image_marker in p for p in prompts):
        result["images"] = [_cut_off(image) for image in result["images"]]
    if partial:
        result["error"] = SOME_BLOCKED if keep else ALL_BLOCKED
    return Outcome(json_response(result), 200, images=keep)
