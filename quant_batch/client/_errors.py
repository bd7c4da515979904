"""The one boundary where HTTP answers and ``requests`` exceptions become quant-batch errors.

Messages are built from endpoint name, status and the server's own message only, e.g.
``"embeddings: 400 ValidationException: input[3]: expected maxLength..."``. Nothing here ever
raises while formatting, and nothing here ever carries the token: request objects are cut off
the ``requests`` exceptions we chain from, and the token is masked if a server echoes it.
"""

from __future__ import annotations

import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
import urllib3.exceptions

from quant_batch.errors import (
    ApiError,
    AuthError,
    ConnectionDropped,
    ContentBlocked,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    ServerError,
    ServiceUnreachable,
    Timeout,
)

from ._retry import parse_retry_after

MAX_SERVER_TEXT = 500
_INDEX = re.compile(r"\b(?:inputs?|texts?)\s*\[\s*(\d+)\s*\]|\bindex\s*[:#=]?\s*(\d+)", re.I)
_BLOCKED = "blocked by our content filters"
_REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-request-id", "x-amz-request-id", "request-id")
_ORG_PATH = re.compile(r"/organizations/[^/\s'\"]+")
_TRANSIENT_STATUS = {
    408: Timeout,
    424: ServerError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


def server_message(resp: requests.Response) -> tuple[str | None, str]:
    """``(error code, message)`` from an error body: JSON message/error/detail, else clipped text."""
    try:
        raw = resp.content or b""
    except Exception:  # body unreadable (connection cut mid-body)
        return None, ""
    try:
        body = orjson.loads(raw)
    except Exception:
        return None, _clip(raw.decode("utf-8", "replace"))
    if not isinstance(body, dict):
        return None, _clip(str(body))
    error = body.get("error")
    nested: dict[str, Any] = error if isinstance(error, dict) else {}
    code = error if isinstance(error, str) else nested.get("code")
    for value in (body.get("message"), nested.get("message"), body.get("detail"), body.get("Message")):
        if value:
            return _text_or_none(code), _clip(value if isinstance(value, str) else str(value))
    # {"error": "something went wrong"} alone: that string is the message
    return None, _clip(str(code or body))


def error_from_response(endpoint: str, resp: requests.Response, *, secret: str = "") -> ApiError:
    """The error for a non-2xx answer (or a 200 that carries a throttling code)."""
    try:
        code, text = server_message(resp)
        text = _mask(text, secret)
        status = resp.status_code
        request_id = request_id_of(resp)
        kind = _kind(status, code, text)
        label = code or resp.reason or "error"
        message = f"{endpoint}: {status} {label}: {text}" if text else f"{endpoint}: {status} {label}"
        kw: dict[str, Any] = dict(status=status, endpoint=endpoint, server_message=text, request_id=request_id)
        if kind is RateLimited:
            return RateLimited(message, retry_after=parse_retry_after(resp.headers.get("Retry-After")), **kw)
        if issubclass(kind, RequestRejected):
            return kind(message + _hint(kind), index=parse_index(text), **kw)
        return kind(message, **kw)
    except Exception as exc:  # formatting must never be the thing that fails
        return ApiError(f"{endpoint}: unreadable error answer ({type(exc).__name__})", endpoint=endpoint)


def _kind(status: int, code: str | None, text: str) -> type[ApiError]:
    if status == 429 or (code or "").startswith("ThrottlingException"):
        return RateLimited  # bedrock has sent throttles as 400 on some paths
    if status in _TRANSIENT_STATUS:
        return _TRANSIENT_STATUS[status]
    if status >= 500:
        return ServerError
    if status in (401, 403):
        return AuthError
    if status == 413:
        return PayloadTooLarge
    if _BLOCKED in text.lower():
        return ContentBlocked
    if 400 <= status < 500:
        return RequestRejected
    return ApiError


def _hint(kind: type[ApiError]) -> str:
    if kind is AuthError:
        return " (check QUANT_API_KEY and QUANT_ORGANIZATION)"
    if kind is PayloadTooLarge:
        return " (send fewer or smaller inputs per request)"
    return ""


def error_from_exception(endpoint: str, exc: BaseException, *, secret: str = "") -> ApiError:
    """Our transient error for a failed send/receive; scrubs ``exc`` before it is chained."""
    scrub(exc)
    try:
        # requests names the full URL path, organisation included: keep only its shape
        detail = _ORG_PATH.sub("/organizations/***", _mask(_clip(f"{type(exc).__name__}: {exc}", 300), secret))
    except Exception:
        detail = type(exc).__name__
    if isinstance(exc, requests.Timeout) or _is_read_timeout(exc):
        return Timeout(f"{endpoint}: no answer in time ({detail})", endpoint=endpoint)
    return ConnectionDropped(f"{endpoint}: connection failed or was cut ({detail})", endpoint=endpoint)


# what a connection can throw at us while sending or reading a body
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    ConnectionError,  # builtin: resets surfacing raw from socket reads
)


def connect_failure(exc: BaseException) -> str | None:
    """Why no connection was made (refused, unknown host, connect timeout, TLS), or None.

    None means a connection existed and failed later (reset, cut mid-answer, read timeout):
    only a failure to connect says anything about the base URL itself.
    """
    chain = _chain(exc)
    # most specific first: urllib3 makes NewConnectionError a ConnectTimeoutError subclass
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        return "unknown host"
    if any(isinstance(e, (requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError)) for e in chain):
        return "TLS handshake failed"
    if any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain):
        refused = any(isinstance(e, ConnectionRefusedError) for e in chain)
        return "connection refused" if refused else "could not connect"
    if any(isinstance(e, (urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout)) for e in chain):
        return "no connection within the connect timeout"
    return None


def unreachable_error(endpoint: str, base_url: str, reason: str) -> ServiceUnreachable:
    """The one message for a base URL that never answered: scheme://host:port, no path, no token."""
    return ServiceUnreachable(
        f"{endpoint}: cannot reach {origin(base_url)}: {reason}; check QUANT_BASE_URL and the network",
        endpoint=endpoint,
    )


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, dropping user info, path (organisation) and query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    except ValueError:  # a malformed port must not make the error itself fail
        return "the configured base URL"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, ``reason`` and exception ``args``."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    out: list[BaseException] = []
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
    return out


def _is_read_timeout(exc: BaseException) -> bool:
    # iter_lines wraps urllib3's ReadTimeoutError in requests.ConnectionError
    args = getattr(exc, "args", ())
    return isinstance(exc, urllib3.exceptions.TimeoutError) or any(
        isinstance(a, urllib3.exceptions.TimeoutError) for a in args
    )


def scrub(exc: BaseException | None) -> None:
    """Cut request objects and tracebacks out of a third-party error chain.

    A ``requests`` error keeps the PreparedRequest (with its Authorization header), and the
    tracebacks of urllib3 frames keep ``headers`` as a local that traceback-with-locals tools
    (rich, Sentry) would print. Messages and types stay, so the chain still says what happened.
    """
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        for attr in ("request", "response"):
            if getattr(e, attr, None) is not None:
                try:
                    setattr(e, attr, None)
                except Exception:
                    pass
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]


def parse_index(text: str | None) -> int | None:
    """The input index a server message names (``input[3]``, ``index 3``), if any."""
    match = _INDEX.search(text or "")
    return int(match.group(1) or match.group(2)) if match else None


def request_id_of(resp: requests.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if resp.headers.get(name):
            return resp.headers[name]
    return None


def _mask(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def _clip(text: str, limit: int = MAX_SERVER_TEXT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
