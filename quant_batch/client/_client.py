"""``QuantClient``: the one owner of the HTTP session for the AI Inference API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from quant_batch.client.ratelimit import NullRateLimiter, RateLimiter
from quant_batch.client.settings import ApiSettings
from quant_batch.errors import ApiError, RateLimited, ServerError, ServiceUnreachable
from quant_batch.tokens import estimate_text_tokens

from ._errors import (
    TRANSPORT_ERRORS,
    connect_failure,
    error_from_exception,
    error_from_response,
    request_id_of,
    scrub,
    unreachable_error,
)
from ._parse import chat_fields, embedding_fields, image_fields
from ._retry import RetryPolicy, build_retrying
from ._sse import StreamError, stream_events
from ._types import CallInfo, ChatResult, EmbeddingResult, ImageResult, StreamEvent, Timeouts

log = logging.getLogger("quant_batch.client")

_PATHS = {
    "embeddings": "embeddings",
    "image-generation": "image-generation",
    "chat": "chat",
    "chat-stream": "chat/stream",
}
_USER_AGENT = f"quant-batch/0.1 python-requests/{requests.__version__}"
UNREACHABLE_AFTER = 2
"""Failed connects, before any answer, after which the base URL counts as unreachable."""


class _BearerAuth(requests.auth.AuthBase):
    """Adds the token at send time, so no header dict of ours ever holds it."""

    def __init__(self, token: SecretStr):
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer " + self._token.get_secret_value()
        return r

    def __repr__(self) -> str:
        return "BearerAuth('**********')"


@dataclass
class _Call:
    """Bookkeeping for one client call across its attempts."""

    attempts: int = 0
    throttled: int = 0
    request_id: str | None = None
    started: float = field(default_factory=time.monotonic)

    def info(self) -> CallInfo:
        return CallInfo(self.attempts, time.monotonic() - self.started, self.throttled, self.request_id)


def _chat_cost(request: Mapping[str, Any]) -> int:
    # the output budget counts against a TPM quota too, so reserve maxTokens up front
    texts = [request.get("systemPrompt") or ""]
    for message in request.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str)]
    return estimate_text_tokens(texts) + int(request.get("maxTokens") or 1024)


class QuantClient:
    """Typed calls to the QuantCDN AI Inference API, with retries and pacing.

    One ``requests.Session`` per client, safe to share across threads; connections are pooled
    up to ``pool_size``. Every request carries an explicit (connect, read) timeout from
    ``timeouts``. Transient failures are retried here and only here, by ``retry``.

    Args:
        settings: credentials and base URL; None reads them with ``ApiSettings.from_env()``.
        timeouts: per-endpoint read timeouts and the connect timeout, in seconds.
        retry: the retry policy for every call.
        pool_size: connections kept per host; match it to the number of worker threads.
        rate_limiter: paces attempts; None means no pacing.
        sleep: how retries wait (tests inject ``list.append``).
    """

    def __init__(
        self,
        settings: ApiSettings | None = None,
        *,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        pool_size: int = 16,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings if settings is not None else ApiSettings.from_env()
        self.timeouts = timeouts
        self.retry = retry
        self.pool_size = pool_size
        self.rate_limiter = rate_limiter if rate_limiter is not None else NullRateLimiter()
        self._retrying = build_retrying(retry, sleep=sleep)
        self._root = f"{self.settings.base_url}/api/v3/organizations/{self.settings.organization}/ai/"
        self._session = self._new_session()
        self._answered = False  # any HTTP answer at all, whatever its status
        self._connect_failures = 0
        self._lock = threading.Lock()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # max_retries=0: urllib3 must not retry behind tenacity's back
        adapter = HTTPAdapter(pool_connections=self.pool_size, pool_maxsize=self.pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.auth = _BearerAuth(self.settings.api_key)
        session.trust_env = False  # no ~/.netrc auth or env proxies overriding ours
        session.headers.update({"User-Agent": _USER_AGENT, "Content-Type": "application/json"})
        return session

    def embed(
        self,
        texts: Sequence[str],
        *,
        model: str = "amazon.titan-embed-text-v2:0",
        dimensions: int = 1024,
        normalize: bool = True,
    ) -> EmbeddingResult:
        """Embed a batch of texts (the API takes up to 100) in one request.

        Returns:
            float32 vectors of shape ``(len(texts), dimension)``, in input order.

        Raises:
            RequestRejected: a text was refused; ``index`` names it when the server did.
            TransientError: retries ran out.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; wrap a single text in a list")
        texts = list(texts)
        if not texts:
            raise ValueError("embed() needs at least one text")
        body = {"input": texts, "modelId": model, "dimensions": dimensions, "normalize": normalize}
        fields, info = self._call(
            "embeddings", body, lambda r: embedding_fields(r, len(texts)), cost=estimate_text_tokens(texts)
        )
        return EmbeddingResult(**fields, info=info)

    def generate_image(self, request: Mapping[str, Any]) -> ImageResult:
        """Run one Nova Canvas request (an ``ImageGenerationRequest`` as a dict).

        Raises:
            ContentBlocked: the prompt was refused, or every generated image was blocked.
        """
        fields, info = self._call("image-generation", request, image_fields, cost=0)
        return ImageResult(**fields, info=info)

    def chat(self, request: Mapping[str, Any]) -> ChatResult:
        """Buffered chat inference (a ``ChatInferenceRequest`` as a dict)."""
        fields, info = self._call("chat", request, chat_fields, cost=_chat_cost(request))
        fields["request_id"] = fields["request_id"] or info.request_id
        return ChatResult(**fields, info=info)

    def chat_stream(self, request: Mapping[str, Any]) -> Iterator[StreamEvent]:
        """Stream chat deltas as they arrive, then one ``done`` event.

        Only the opening (up to and including the first event) is retried; once text has been
        handed out, a failure raises a ``TransientError`` for the caller to decide.
        """
        call = _Call()

        def open_stream() -> tuple[requests.Response, Iterator[StreamEvent], StreamEvent | None]:
            resp = self._attempt("chat-stream", request, call, _chat_cost(request), stream=True)
            events = self._events(resp)
            try:
                return resp, events, next(events, None)
            except BaseException:
                resp.close()
                raise

        resp, events, first = self._retrying(open_stream)
        try:
            if first is not None:
                yield first
            yield from events
        finally:
            resp.close()

    def _events(self, resp: requests.Response) -> Iterator[StreamEvent]:
        done = False
        try:
            for event in stream_events(resp.iter_lines()):
                done = event.kind == "done"
                yield event
        except TRANSPORT_ERRORS as exc:
            raise error_from_exception("chat-stream", exc, secret=self._secret) from exc
        except StreamError as exc:
            raise ServerError(
                f"chat-stream: error event: {exc.message}",
                endpoint="chat-stream",
                server_message=exc.message,
                status=resp.status_code,
            ) from None
        if not done:
            raise ServerError(
                "chat-stream: the stream ended before its final event", endpoint="chat-stream", status=resp.status_code
            )

    def _call(
        self, endpoint: str, body: Mapping[str, Any], parse: Callable[[requests.Response], dict[str, Any]], *, cost: int
    ) -> tuple[dict[str, Any], CallInfo]:
        """Run attempts under the retry policy; ``parse`` turns a 2xx into result fields."""
        call = _Call()

        def attempt() -> dict[str, Any]:
            resp = self._attempt(endpoint, body, call, cost)
            return parse(resp)

        fields: dict[str, Any] = self._retrying(attempt)
        return fields, call.info()

    def _attempt(
        self, endpoint: str, body: Mapping[str, Any], call: _Call, cost: int, *, stream: bool = False
    ) -> requests.Response:
        """One HTTP exchange: pace, send, read, translate failures into our errors."""
        call.attempts += 1
        self.rate_limiter.acquire(cost)
        read = self._read_timeout(endpoint)
        log.debug("%s: attempt %d (read timeout %.1fs)", endpoint, call.attempts, read)
        try:
            # always streamed: requests would read a buffered body in 10 kB pieces (200 reads
            # for a 2 MB batch of vectors); _read_body takes it in one piece instead
            resp = self._session.post(
                self._root + _PATHS[endpoint],
                data=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                headers={"Accept": "text/event-stream" if stream else "application/json"},
                timeout=(self.timeouts.connect, read),
                stream=True,
            )
        except TRANSPORT_ERRORS as exc:
            err = self._send_error(endpoint, call, exc)
            if isinstance(err, ServiceUnreachable):
                raise err from None  # one line: the chain would only repeat it with the path in
            raise err from exc
        self._answered = True
        call.request_id = request_id_of(resp) or call.request_id
        log.debug("%s: attempt %d: %d", endpoint, call.attempts, resp.status_code)
        ok = 200 <= resp.status_code < 300
        if not (ok and stream):
            self._read_body(endpoint, resp)
        if ok:
            self.rate_limiter.on_success()
            return resp
        err = error_from_response(endpoint, resp, secret=self._secret)
        resp.close()
        if isinstance(err, RateLimited):
            call.throttled += 1
            self.rate_limiter.on_throttle()
        raise err

    def _read_body(self, endpoint: str, resp: requests.Response) -> None:
        """Read the whole body in one call, under the same read timeout and error mapping."""
        try:
            resp._content = resp.raw.read(decode_content=True)
        except TRANSPORT_ERRORS as exc:
            resp.close()
            err = error_from_exception(endpoint, exc, secret=self._secret)
            raise err from exc
        finally:
            resp._content_consumed = True  # type: ignore[attr-defined]  # as requests marks a body it read itself
        resp.close()  # the body is in memory: hand the connection back to the pool

    def _send_error(self, endpoint: str, call: _Call, exc: BaseException) -> ApiError:
        """Our error for a request that got no answer; ``ServiceUnreachable`` for a dead URL."""
        reason = None if self._answered else connect_failure(exc)
        if reason is not None:
            with self._lock:
                self._connect_failures += 1
                failures = self._connect_failures
            if failures >= min(UNREACHABLE_AFTER, self.retry.max_attempts) and not self._answered:
                scrub(exc)  # raised from None, but still the context: no request objects in it
                log.debug("%s: attempt %d: base URL unreachable (%s)", endpoint, call.attempts, reason)
                return unreachable_error(endpoint, self.settings.base_url, reason)
        err = error_from_exception(endpoint, exc, secret=self._secret)
        log.debug("%s: attempt %d: %s", endpoint, call.attempts, type(err).__name__)
        return err

    def _read_timeout(self, endpoint: str) -> float:
        t = self.timeouts
        return {"embeddings": t.embeddings, "image-generation": t.image_generation}.get(endpoint, t.chat)

    @property
    def _secret(self) -> str:
        return self.settings.api_key.get_secret_value()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> QuantClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"QuantClient(base_url={self.settings.base_url!r}, "
            f"organization={self.settings.organization!r}, pool_size={self.pool_size})"
        )
