"""The emulated QuantCDN AI Inference API as a FastAPI app (``create_app``).

Routes (POST, JSON, ``Authorization: Bearer <token>``)::

    /api/v3/organizations/{organisation}/ai/embeddings        Titan text embeddings
    /api/v3/organizations/{organisation}/ai/image-generation  Nova Canvas
    /api/v3/organizations/{organisation}/ai/chat              buffered chat
    /api/v3/organizations/{organisation}/ai/chat/stream       chat as server-sent events

Control routes, no auth: ``POST /_emulator/faults`` (body: a FaultConfig, replaces the current
one), ``GET /_emulator/faults``, ``POST /_emulator/reset`` (clears stats and faults),
``GET /_emulator/stats``.

Every request goes through the same steps: read the body (413 over 25 MB), check the token
(401 missing/malformed, 403 wrong), rate limit and random faults, simulated latency, parse JSON
(400), validate and answer. Errors are ``{"error": "<ExceptionName>", "message": "..."}`` with
an ``x-amzn-ErrorType`` header; every answer carries ``x-amzn-RequestId``.

Chat stream format (``text/event-stream``), one JSON object per ``data:`` line::

    data: {"delta": "Summary: the quick "}          several of these, in order
    data: {"delta": "brown fox"}
    data: {"finishReason": "stop", "model": "...", "requestId": "...",
           "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 21}}
    data: [DONE]

Events are separated by a blank line. Concatenating the deltas gives exactly the ``content`` the
buffered ``/ai/chat`` route returns for the same request. ``finishReason`` uses the SDK's enum:
``stop`` or ``length`` (the SDK rejects Bedrock's ``end_turn`` / ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from quant_batch.emulator import synth
from quant_batch.emulator.faults import FaultConfig, FaultInjector, Stats
from quant_batch.render import rules

MAX_BODY_BYTES = 25 * 1024 * 1024
API_PREFIX = "/api/v3/organizations/{organisation}/ai"
TITAN_V2, TITAN_V1 = "amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v1:0"
V2_DIMENSIONS = (256, 512, 1024, 8192)
V1_DIMENSION = 1536
MAX_BATCH, MAX_CHARS, MAX_TOKENS = 100, 50_000, 8192
DEFAULT_SEED = 12  # Nova Canvas's documented default
TOKENS_PER_ATTACHMENT = 300  # rough input-token charge for an image/video/document block
BLOCKED_PROMPT = ("This request has been blocked by our content filters. "
                  "Please adjust your text prompt to submit a new request.")
SOME_BLOCKED = "Some of the generated images have been blocked by our content filters."
ALL_BLOCKED = "All of the generated images have been blocked by our content filters."
THROTTLED = "Too many requests, please wait before trying again."
CHAT_ROLES = ("user", "assistant", "system")
BLOCK_FORMATS = {"image": ("png", "jpeg", "gif", "webp"), "video": ("mp4", "mov", "mkv", "webm"),
                 "document": ("pdf", "csv", "docx", "xlsx")}


class _DropFilter(logging.Filter):
    """Hide uvicorn's complaint about the responses we cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


@dataclass
class Outcome:
    """An endpoint's answer plus what the stats should count."""

    response: Response
    status: int
    texts: int = 0
    images: int = 0
    fault: str | None = None
    stream_events: list[bytes] | None = None  # set for SSE answers, so a drop can replay part


@dataclass
class EmulatorState:
    token: str | None
    injector: FaultInjector
    stats: Stats = field(default_factory=Stats)


class Rejected(Exception):
    """Raised inside a handler to answer with an error status."""

    def __init__(self, status: int, name: str, message: str):
        self.status, self.name, self.message = status, name, message
        super().__init__(message)


def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers=headers, media_type="application/json")


def error_response(status: int, name: str, message: str, headers: dict | None = None) -> Response:
    """The service's error body; never includes anything from the Authorization header."""
    return _json({"error": name, "message": message}, status, {"x-amzn-ErrorType": name, **(headers or {})})


class DroppedResponse(Response):
    """Declares the full Content-Length, sends half the body, then closes the connection."""

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        # returning now, unfinished, makes uvicorn close the socket: the client sees a short read


class DroppedStream(Response):
    """Starts an SSE stream (chunked), sends a couple of events, then closes the connection."""

    def __init__(self, events: list[bytes], headers: dict):
        super().__init__(b"", 200, headers=headers, media_type="text/event-stream")
        self.raw_headers = [h for h in self.raw_headers if h[0] != b"content-length"]
        self.events = events

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for event in self.events[: max(1, len(self.events) // 2)]:
            await send({"type": "http.response.body", "body": event, "more_body": True})


async def _read_body(request: Request) -> tuple[bytes | None, int]:
    """The body, or None when it is over the limit (always drained so the client can read a 413)."""
    declared = request.headers.get("content-length", "")
    too_big = declared.isdigit() and int(declared) > MAX_BODY_BYTES
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        too_big = too_big or size > MAX_BODY_BYTES
        if not too_big:
            chunks.append(chunk)
    size = max(size, int(declared) if declared.isdigit() else 0)
    return (None if too_big else b"".join(chunks)), size


def _auth_error(request: Request, token: str | None) -> Response | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return error_response(401, "UnauthorizedException",
                              "Missing or malformed Authorization header; send 'Authorization: Bearer <token>'.")
    if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
        return error_response(403, "AccessDeniedException",
                              "The API token was not accepted for this organisation.")
    return None


def _fault_response(fault: str, retry_after: float | None, send_retry_after: bool) -> Response:
    if fault in ("rate_limited", "throttle"):
        headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if send_retry_after else {}
        return error_response(429, "ThrottlingException", THROTTLED, headers)
    if fault == "error_500":
        return error_response(500, "InternalServerException",
                              "The server encountered an internal error while processing the request.")
    return error_response(503, "ServiceUnavailableException",
                          "The service is temporarily unavailable. Please try again later.")


async def _serve(request: Request, endpoint: str, handler: Callable[[Any, EmulatorState], Any]) -> Response:
    state: EmulatorState = request.app.state.emulator
    arrived = time.time()
    request_id = str(uuid.uuid4())
    outcome = await _outcome(request, endpoint, handler, state)
    outcome.response.headers["x-amzn-RequestId"] = request_id
    state.stats.record(endpoint, outcome.status, arrived, fault=outcome.fault,
                       texts=outcome.texts, images=outcome.images)
    return outcome.response


async def _outcome(request: Request, endpoint: str, handler, state: EmulatorState) -> Outcome:
    body, size = await _read_body(request)
    if body is None:
        return Outcome(error_response(413, "PayloadTooLargeException",
                                      f"Request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (25 MB)."), 413)
    denied = _auth_error(request, state.token)
    if denied is not None:
        return Outcome(denied, denied.status_code)
    decision = state.injector.decide(endpoint)
    if decision.fault == "rate_limited":
        return Outcome(_fault_response("rate_limited", decision.retry_after, state.injector.config.retry_after),
                       429, fault="rate_limited")
    delay = state.injector.delay(endpoint)
    if decision.fault == "hang":
        delay += state.injector.config.hang_seconds
    if delay:
        await asyncio.sleep(delay)
    if decision.fault in ("throttle", "error_500", "error_503"):
        response = _fault_response(decision.fault, decision.retry_after, state.injector.config.retry_after)
        return Outcome(response, response.status_code, fault=decision.fault)
    outcome = await _answer(body, handler, state)
    if decision.fault == "hang":
        outcome.fault = "hang"
    return _drop(outcome) if decision.fault == "drop" else outcome


async def _answer(body: bytes, handler, state: EmulatorState) -> Outcome:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Outcome(error_response(400, "ValidationException", f"Malformed JSON body: {exc}"), 400)
    try:
        return await handler(data, state)
    except Rejected as exc:
        return Outcome(error_response(exc.status, exc.name, exc.message), exc.status)


def _drop(outcome: Outcome) -> Outcome:
    response = outcome.response
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    if isinstance(response, StreamingResponse):
        dropped: Response = DroppedStream(outcome.stream_events or [], headers)
    else:
        dropped = DroppedResponse(response.body, response.status_code, headers, response.media_type)
    return Outcome(dropped, 0, fault="drop")


def _invalid(message: str) -> Rejected:
    return Rejected(400, "ValidationException", message)


def _malformed(index: int, detail: str) -> Rejected:
    return _invalid(f"Malformed input request: input[{index}]: {detail}, please reformat your input and try again.")


# --- embeddings -----------------------------------------------------------------------------

def _embedding_settings(data: dict) -> tuple[str, int, bool]:
    model = data.get("modelId") or TITAN_V2
    dims, normalize = data.get("dimensions"), data.get("normalize", True)
    if model == TITAN_V2:
        dims = 1024 if dims is None else dims
        if dims not in V2_DIMENSIONS or isinstance(dims, bool):
            raise _invalid(f"dimensions: {dims!r} is not supported by {TITAN_V2}; use one of 256, 512, 1024, 8192.")
    elif model == TITAN_V1:
        # v1 is fixed at 1536; the SDK always sends its default 1024, which we let through
        if dims not in (None, 1024, V1_DIMENSION):
            raise _invalid(f"dimensions: {TITAN_V1} always returns {V1_DIMENSION} dimensions.")
        dims = V1_DIMENSION
    else:
        raise _invalid(f"modelId: unknown embedding model {model!r}; use {TITAN_V2} or {TITAN_V1}.")
    if not isinstance(normalize, bool):
        raise _invalid("normalize: must be true or false.")
    return model, dims, normalize


def _embedding_texts(data: dict) -> list[str]:
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _invalid("input: must be a string or a list of strings.")
    if not 1 <= len(texts) <= MAX_BATCH:
        raise _invalid(f"input: must hold 1-{MAX_BATCH} texts, got {len(texts)}.")
    return texts


def _check_text(index: int, text: str, poison: str) -> int:
    if not text:
        raise _malformed(index, "expected minLength: 1, actual: 0")
    if len(text) > MAX_CHARS:
        raise _malformed(index, f"expected maxLength: {MAX_CHARS}, actual: {len(text)}")
    tokens = synth.estimate_tokens(text)
    if tokens > MAX_TOKENS:
        raise _invalid(f"input[{index}]: Too many input tokens. Max input tokens: {MAX_TOKENS}, "
                       f"request input token count: {tokens}")
    if poison and poison in text:
        raise _malformed(index, "the model could not process this text")
    return tokens


def _embed_body(data: Any, cfg: FaultConfig) -> tuple[bytes, int]:
    if not isinstance(data, dict):
        raise _invalid("body: must be a JSON object.")
    model, dims, normalize = _embedding_settings(data)
    texts = _embedding_texts(data)
    tokens = sum(_check_text(i, t, cfg.poison_marker) for i, t in enumerate(texts))
    vectors = synth.embed_batch(texts, dims, normalize)
    bad = [i for i, t in enumerate(texts) if cfg.bad_vector_marker and cfg.bad_vector_marker in t]
    vectors[bad] = float("nan")
    payload = {"embeddings": vectors[0] if isinstance(data["input"], str) else vectors,
               "model": model, "dimension": dims, "usage": {"inputTokens": tokens, "totalTokens": tokens}}
    if bad:
        # JSON has no NaN; like Python's json module we write the bare NaN token
        payload["embeddings"] = payload["embeddings"].tolist()
        return json.dumps(payload).encode(), len(texts)
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), len(texts)


async def _embeddings(data: Any, state: EmulatorState) -> Outcome:
    body, count = await run_in_threadpool(_embed_body, data, state.injector.config)
    return Outcome(Response(body, 200, media_type="application/json"), 200, texts=count)


# --- image generation -----------------------------------------------------------------------

def _render(data: dict, keep: int) -> dict:
    width, height = rules.output_size(data)
    task = data["taskType"]
    config = data.get("imageGenerationConfig") or {}
    seed = config.get("seed", DEFAULT_SEED)
    key = json.dumps(data.get(rules.PARAMS_KEY[task]), sort_keys=True)[:4096]
    alpha = task == "BACKGROUND_REMOVAL"
    images = [base64.b64encode(synth.png_bytes(synth.synth_image(width, height, task, key, seed, i, alpha=alpha)))
              .decode("ascii") for i in range(keep)]
    result: dict = {"images": images}
    if task == "VIRTUAL_TRY_ON":
        mask = synth.synth_image(width, height, "mask", key, seed).convert("L")
        result["maskImage"] = base64.b64encode(synth.png_bytes(mask)).decode("ascii")
    return result


def _cut_off(image_b64: str) -> str:
    """The first half of a PNG, still valid base64: a plausible header over a broken body."""
    data = base64.b64decode(image_b64)
    return base64.b64encode(data[: len(data) // 2]).decode("ascii")


async def _images(data: Any, state: EmulatorState) -> Outcome:
    cfg = state.injector.config
    violations = await run_in_threadpool(rules.check_image_request, data)
    if violations:
        raise _invalid("; ".join(str(v) for v in violations))
    prompts = rules.prompt_texts(data)
    if cfg.moderation_marker and any(cfg.moderation_marker in p for p in prompts):
        raise _invalid(BLOCKED_PROMPT)
    wanted = rules.number_of_images(data)
    partial = bool(cfg.partial_block_marker) and any(cfg.partial_block_marker in p for p in prompts)
    keep = wanted - 1 if partial else wanted
    result = await run_in_threadpool(_render, data, keep)
    if cfg.bad_image_marker and any(cfg.bad_image_marker in p for p in prompts):
        result["images"] = [_cut_off(image) for image in result["images"]]
    if partial:
        result["error"] = SOME_BLOCKED if keep else ALL_BLOCKED
    return Outcome(_json(result), 200, images=keep)


# --- chat -----------------------------------------------------------------------------------

def _is_base64(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(value) and bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False


def _block_problems(block: Any, path: str) -> list[str]:
    if not isinstance(block, dict) or len(block) != 1:
        return [f"{path}: must hold exactly one of text, image, video, document"]
    kind, value = next(iter(block.items()))
    if kind == "text":
        return [] if isinstance(value, str) and value else [f"{path}.text: must be a non-empty string"]
    if kind not in BLOCK_FORMATS or not isinstance(value, dict):
        return [f"{path}: unknown content block {kind!r}"]
    out = []
    if value.get("format") not in BLOCK_FORMATS[kind]:
        out.append(f"{path}.{kind}.format: must be one of {', '.join(BLOCK_FORMATS[kind])}")
    if kind == "document" and not (isinstance(value.get("name"), str) and value["name"]):
        out.append(f"{path}.document.name: is required")
    if not _is_base64((value.get("source") or {}).get("bytes") if isinstance(value.get("source"), dict) else None):
        out.append(f"{path}.{kind}.source.bytes: must be base64-encoded data")
    return out


def _message_problems(msg: Any, path: str) -> list[str]:
    if not isinstance(msg, dict):
        return [f"{path}: must be an object"]
    out = [] if msg.get("role") in CHAT_ROLES else [f"{path}.role: must be one of {', '.join(CHAT_ROLES)}"]
    content = msg.get("content")
    if isinstance(content, str):
        return out + ([] if content else [f"{path}.content: must not be empty"])
    if not isinstance(content, list) or not content:
        return out + [f"{path}.content: must be a string or a non-empty list of content blocks"]
    for j, block in enumerate(content):
        out.extend(_block_problems(block, f"{path}.content[{j}]"))
    return out


def _number_problem(data: dict, key: str, lo: float, hi: float, integer: bool = False) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    return [] if ok else [f"{key}: must be {'an integer' if integer else 'a number'} from {lo} to {hi}"]


def _chat_problems(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["body: must be a JSON object"]
    out = []
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        out.append("messages: must be a list of at least 1 message")
    else:
        for i, msg in enumerate(messages):
            out.extend(_message_problems(msg, f"messages[{i}]"))
    if not (isinstance(data.get("modelId"), str) and data["modelId"]):
        out.append("modelId: is required")
    out += _number_problem(data, "temperature", 0, 2) + _number_problem(data, "topP", 0, 1)
    out += _number_problem(data, "maxTokens", 1, 8192, integer=True)
    stops = data.get("stopSequences")
    if stops is not None and not (isinstance(stops, list) and len(stops) <= 4 and all(isinstance(s, str) for s in stops)):
        out.append("stopSequences: must be a list of at most 4 strings")
    fmt = data.get("responseFormat")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type", "json") == "json"
                                and isinstance(fmt.get("jsonSchema", {}), dict)):
        out.append('responseFormat: must be {"type": "json", "jsonSchema": {...}}')
    return out


def _message_text(msg: dict) -> tuple[str, int]:
    content = msg.get("content")
    if isinstance(content, str):
        return content, 0
    texts = [b["text"] for b in content if "text" in b]
    return " ".join(texts), len(content) - len(texts)


@dataclass
class ChatResult:
    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    fault: str | None = None


def _truncate(text: str, tokens: int) -> str:
    return text[: max(1, int(tokens * synth.CHARS_PER_TOKEN))]


def _chat_result(data: dict, fault: str | None) -> ChatResult:
    parsed = [_message_text(m) for m in data["messages"]]
    users = [p for m, p in zip(data["messages"], parsed) if m.get("role") == "user"] or parsed
    prompt, media = users[-1]
    fmt = data.get("responseFormat")
    if fmt is not None:
        schema = fmt.get("jsonSchema") or {"type": "object", "properties": {"answer": {"type": "string"}}}
        content = synth.json_answer(schema, prompt)
        if fault == "invalid_json":
            content = content[: len(content) // 2]
    else:
        content = synth.chat_answer(prompt, media)
        fault = None if fault == "invalid_json" else fault  # only JSON answers can be broken JSON
    finish = "stop"
    for stop in data.get("stopSequences") or []:
        if stop and stop in content:
            content = content[: content.index(stop)]
    max_tokens = data.get("maxTokens") or 1024
    if fault == "length" or synth.estimate_tokens(content) > max_tokens:
        limit = min(max_tokens, max(1, synth.estimate_tokens(content) // 2)) if fault == "length" else max_tokens
        content, finish = _truncate(content, limit), "length"
    all_text = " ".join(t for t, _ in parsed) + (data.get("systemPrompt") or "")
    tokens_in = synth.estimate_tokens(all_text) + TOKENS_PER_ATTACHMENT * sum(n for _, n in parsed)
    return ChatResult(content, finish, tokens_in, synth.estimate_tokens(content), fault)


def _usage(result: ChatResult) -> dict:
    return {"inputTokens": result.input_tokens, "outputTokens": result.output_tokens,
            "totalTokens": result.input_tokens + result.output_tokens}


def _validated_chat(data: Any, state: EmulatorState) -> ChatResult:
    problems = _chat_problems(data)
    if problems:
        raise _invalid("; ".join(problems))
    return _chat_result(data, state.injector.chat_fault())


async def _chat(data: Any, state: EmulatorState) -> Outcome:
    result = await run_in_threadpool(_validated_chat, data, state)
    body = {"response": {"role": "assistant", "content": result.content}, "model": data["modelId"],
            "requestId": str(uuid.uuid4()), "finishReason": result.finish_reason, "usage": _usage(result)}
    return Outcome(_json(body), 200, fault=result.fault)


def _sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


def _stream_events(result: ChatResult, model: str) -> list[bytes]:
    words = result.content.split(" ")
    pieces = [" ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "") for i in range(0, len(words), 4)]
    events = [_sse({"delta": p}) for p in pieces if p]
    final = {"finishReason": result.finish_reason, "model": model, "requestId": str(uuid.uuid4()),
             "usage": _usage(result)}
    return events + [_sse(final), _sse(b"[DONE]")]


async def _chat_stream(data: Any, state: EmulatorState) -> Outcome:
    result = await run_in_threadpool(_validated_chat, data, state)
    events = _stream_events(result, data["modelId"])

    async def produce():
        for event in events:
            yield event
            await asyncio.sleep(0.002)  # arrive as separate chunks, like a real token stream

    response = StreamingResponse(produce(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return Outcome(response, 200, fault=result.fault, stream_events=events)


# --- app ------------------------------------------------------------------------------------

def _add_control_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.post("/_emulator/faults")
    async def set_faults(request: Request) -> Response:
        try:
            config = FaultConfig.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return error_response(400, "ValidationException", str(exc))
        state.injector.configure(config)
        return _json(config.model_dump())

    @app.get("/_emulator/faults")
    async def get_faults() -> Response:
        return _json(state.injector.config.model_dump())

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        state.stats.reset()
        state.injector.configure(FaultConfig())
        return _json({"ok": True})

    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return _json(state.stats.snapshot())


def _route(endpoint: str, handler) -> Callable:
    async def route(request: Request) -> Response:
        return await _serve(request, endpoint, handler)

    return route


def create_app(*, token: str | None = None, faults: FaultConfig | None = None) -> FastAPI:
    """Build the emulator app.

    Args:
        token: the only bearer token accepted (403 for others); None accepts any token.
        faults: initial fault configuration (all off by default).
    """
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in logger.filters):
        logger.addFilter(_DropFilter())
    app = FastAPI(title="QuantCDN AI Inference emulator", docs_url=None, redoc_url=None, openapi_url=None)
    state = EmulatorState(token=token, injector=FaultInjector(faults))
    app.state.emulator = state
    routes = {"embeddings": _embeddings, "image-generation": _images, "chat": _chat, "chat/stream": _chat_stream}
    for path, handler in routes.items():
        endpoint = path.replace("/", "-")
        app.add_api_route(f"{API_PREFIX}/{path}", _route(endpoint, handler), methods=["POST"], name=endpoint)
    _add_control_routes(app, state)
    return app
