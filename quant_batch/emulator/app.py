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

The endpoint families live beside this module: ``embeddings.py``, ``images.py``, ``chat.py``
(with the SSE format); ``responses.py`` holds what they share.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from quant_batch.emulator import chat, embeddings, images
from quant_batch.emulator.faults import FaultConfig, FaultInjector
from quant_batch.emulator.responses import EmulatorState, Outcome, Rejected, error_response, json_response

Handler = Callable[[Any, EmulatorState], Awaitable[Outcome]]

MAX_BODY_BYTES = 25 * 1024 * 1024
API_PREFIX = "/api/v3/organizations/{organisation}/ai"
THROTTLED = "Too many requests, please wait before trying again."


class _DropFilter(logging.Filter):
    """Hide uvicorn's complaint about the responses we cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


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
        return error_response(
            401,
            "UnauthorizedException",
            "Missing or malformed Authorization header; send 'Authorization: Bearer <token>'.",
        )
    if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
        return error_response(403, "AccessDeniedException", "The API token was not accepted for this organisation.")
    return None


def _fault_response(fault: str, retry_after: float | None, send_retry_after: bool) -> Response:
    if fault in ("rate_limited", "throttle"):
        headers = {"Retry-After": str(max(1, int((retry_after or 0) + 0.999)))} if send_retry_after else {}
        return error_response(429, "ThrottlingException", THROTTLED, headers)
    if fault == "error_500":
        return error_response(
            500, "InternalServerException", "The server encountered an internal error while processing the request."
        )
    return error_response(
        503, "ServiceUnavailableException", "The service is temporarily unavailable. Please try again later."
    )


async def _serve(request: Request, endpoint: str, handler: Handler) -> Response:
    state: EmulatorState = request.app.state.emulator
    arrived = time.time()
    request_id = str(uuid.uuid4())
    outcome = await _outcome(request, endpoint, handler, state)
    outcome.response.headers["x-amzn-RequestId"] = request_id
    state.stats.record(
        endpoint, outcome.status, arrived, fault=outcome.fault, texts=outcome.texts, images=outcome.images
    )
    return outcome.response


async def _outcome(request: Request, endpoint: str, handler: Handler, state: EmulatorState) -> Outcome:
    body, size = await _read_body(request)
    if body is None:
        return Outcome(
            error_response(
                413,
                "PayloadTooLargeException",
                f"Request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (25 MB).",
            ),
            413,
        )
    denied = _auth_error(request, state.token)
    if denied is not None:
        return Outcome(denied, denied.status_code)
    decision = state.injector.decide(endpoint)
    if decision.fault == "rate_limited":
        return Outcome(
            _fault_response("rate_limited", decision.retry_after, state.injector.config.retry_after),
            429,
            fault="rate_limited",
        )
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


async def _answer(body: bytes, handler: Handler, state: EmulatorState) -> Outcome:
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


def _add_control_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.post("/_emulator/faults")
    async def set_faults(request: Request) -> Response:
        try:
            config = FaultConfig.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return error_response(400, "ValidationException", str(exc))
        state.injector.configure(config)
        return json_response(config.model_dump())

    @app.get("/_emulator/faults")
    async def get_faults() -> Response:
        return json_response(state.injector.config.model_dump())

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        state.stats.reset()
        state.injector.configure(FaultConfig())
        return json_response({"ok": True})

    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return json_response(state.stats.snapshot())


def _route(endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
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
    routes: dict[str, Handler] = {
        "embeddings": embeddings.handle,
        "image-generation": images.handle,
        "chat": chat.handle,
        "chat/stream": chat.handle_stream,
    }
    for path, handler in routes.items():
        endpoint = path.replace("/", "-")
        app.add_api_route(f"{API_PREFIX}/{path}", _route(endpoint, handler), methods=["POST"], name=endpoint)
    _add_control_routes(app, state)
    return app
