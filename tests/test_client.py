"""QuantClient against the real emulator over loopback, plus its pure parts (retry policy,
error translation, SSE parsing).

Retries run with ``sleep=waits.append`` (tenacity's own testing trick), so waits are recorded
rather than slept; the few tests that need real time say so and stay around a second.
"""

from __future__ import annotations

import io
import logging
import random
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import numpy as np
import pytest
import requests
from PIL import Image
from pydantic import SecretStr

from quant_batch.client import (
    QuantClient,
    RetryPolicy,
    StreamEvent,
    Timeouts,
    parse_retry_after,
)
from quant_batch.client._errors import error_from_response, parse_index
from quant_batch.client._retry import wait_retry_after_or_backoff
from quant_batch.client._sse import stream_events
from quant_batch.client.ratelimit import AdaptiveRateLimiter
from quant_batch.client.settings import ApiSettings
from quant_batch.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConnectionDropped,
    ContentBlocked,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    ServerError,
    ServiceUnreachable,
    Timeout,
    TransientError,
)
from quant_batch.tokens import estimate_text_tokens

TOKEN = "test-token-SECRET-123"  # the token conftest's emulator accepts
ORG = "test-org"
CHAT_MODEL = "amazon.nova-lite-v1:0"
FAST = RetryPolicy(max_attempts=4, backoff_initial=0.5, jitter=0.0)


def settings_for(emulator, token: str = TOKEN) -> ApiSettings:
    return ApiSettings.from_env(api_key=token, organization=ORG, base_url=emulator.base_url)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(emulator, waits):
    with QuantClient(settings_for(emulator), retry=FAST, sleep=waits.append) as c:
        yield c


def counts(emulator, endpoint: str = "embeddings") -> dict[str, int]:
    return emulator.stats()["by_endpoint"].get(endpoint, {})


def seed_for(pattern: str, rate: float) -> int:
    """A fault seed whose first requests fault ("x") or pass (".") in this order.

    The emulator draws one ``random.Random(seed).random()`` per request and faults when it is
    below the (single) fault rate; see ``quant_batch/emulator/faults.py``.
    """
    for seed in range(100_000):
        rng = random.Random(seed)
        if all((rng.random() < rate) == (c == "x") for c in pattern):
            return seed
    raise AssertionError(f"no seed gives {pattern}")


def wait_for_requests(emulator, n: int, timeout: float = 10.0) -> dict:
    """Stats once ``n`` requests have finished (hung requests are counted when they answer)."""
    deadline = time.monotonic() + timeout
    while (stats := emulator.stats())["total_requests"] < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


def chat_request(text: str = "Summarise the quick brown fox jumping over the lazy dog") -> dict:
    return {"modelId": CHAT_MODEL, "messages": [{"role": "user", "content": text}], "maxTokens": 200}


def image_request(prompt: str = "a lighthouse at dusk", n: int = 1) -> dict:
    return {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": prompt},
        "imageGenerationConfig": {"width": 512, "height": 384, "numberOfImages": n},
    }


# --- round trips -----------------------------------------------------------------------------


def test_embed_round_trip(client, emulator):
    result = client.embed(["the cat sat", "a dog barked", "the cat sat"], dimensions=256)
    v = result.vectors
    assert v.dtype == np.float32 and v.shape == (3, 256) and v.flags.c_contiguous
    assert result.dimension == 256 and result.model == "amazon.titan-embed-text-v2:0"
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[2])
    assert result.usage.input_tokens > 0 and result.usage.total_tokens == result.usage.input_tokens
    assert result.info.attempts == 1 and result.info.throttled == 0 and result.info.request_id
    assert counts(emulator) == {"200": 1} and emulator.stats()["texts_embedded"] == 3


def test_embed_one_text_is_sent_as_a_batch_of_one(client):
    assert client.embed(["only me"]).vectors.shape == (1, 1024)


def test_embed_refuses_a_bare_string_and_an_empty_batch(client):
    with pytest.raises(TypeError):
        client.embed("not a list")
    with pytest.raises(ValueError):
        client.embed([])


def test_bad_vectors_come_back_as_nan_rows(client, emulator):
    v = client.embed(["fine", "broken __NAN__ text"], dimensions=256).vectors
    assert np.isfinite(v[0]).all() and np.isnan(v[1]).all()


def test_chat_round_trip(client):
    result = client.chat(chat_request())
    assert result.text and result.finish_reason == "stop" and result.model == CHAT_MODEL
    assert result.usage.output_tokens > 0 and result.request_id and result.info.attempts == 1


def test_chat_stream_yields_deltas_then_done(client, emulator):
    events = list(client.chat_stream(chat_request()))
    deltas = [e for e in events if e.kind == "delta"]
    assert len(deltas) >= 2 and events[-1].kind == "done"
    assert [e.kind for e in events].count("done") == 1
    assert events[-1].finish_reason == "stop" and events[-1].usage.output_tokens > 0
    # the stream's text is exactly the buffered answer
    assert "".join(e.text for e in deltas) == client.chat(chat_request()).text
    assert counts(emulator, "chat-stream") == {"200": 1}


def test_chat_stream_yields_before_the_stream_ends(client):
    stream = client.chat_stream(chat_request("word " * 200))
    first = next(stream)
    assert first.kind == "delta"
    stream.close()  # leaving early closes the response; nothing hangs


def test_generate_image_returns_png_bytes_of_the_requested_size(client, emulator):
    result = client.generate_image(image_request(n=2))
    assert len(result.images) == 2 and result.error is None and result.mask_image is None
    for png in result.images:
        assert png.startswith(b"\x89PNG")
        assert Image.open(io.BytesIO(png)).size == (512, 384)
    assert emulator.stats()["images_generated"] == 2


def test_partially_blocked_images_keep_the_service_message(client):
    result = client.generate_image(image_request("a __PARTIAL_BLOCK__ scene", n=3))
    assert len(result.images) == 2 and "Some of the generated images" in result.error


def test_all_images_blocked_raises_content_blocked(client, emulator):
    with pytest.raises(ContentBlocked, match="All of the generated images"):
        client.generate_image(image_request("a __PARTIAL_BLOCK__ scene", n=1))
    assert counts(emulator, "image-generation") == {"200": 1}


# --- terminal errors: never retried ----------------------------------------------------------


def test_moderated_prompt_raises_content_blocked_once(client, emulator, waits):
    with pytest.raises(ContentBlocked) as info:
        client.generate_image(image_request("a __BLOCKED__ thing"))
    assert info.value.status == 400 and "content filters" in str(info.value)
    assert counts(emulator, "image-generation") == {"400": 1} and waits == []


def test_poison_text_names_its_index(client, emulator):
    with pytest.raises(RequestRejected) as info:
        client.embed(["fine", "also fine", "bad __POISON__ text", "fine"])
    err = info.value
    assert err.index == 2 and err.status == 400 and err.endpoint == "embeddings"
    assert str(err).startswith("embeddings: 400 ValidationException: ")
    assert counts(emulator) == {"400": 1}


def test_400_is_not_retried(client, emulator, waits):
    with pytest.raises(RequestRejected) as info:
        client.embed(["x"], dimensions=333)
    assert not isinstance(info.value, TransientError) and "dimensions" in str(info.value)
    assert counts(emulator) == {"400": 1} and waits == []


@pytest.mark.parametrize("token, status", [("", 401), ("not-the-token", 403)])
def test_auth_errors_are_not_retried(emulator, waits, token, status):
    # model_construct skips validation so an empty token reaches the wire (-> 401)
    settings = ApiSettings.model_construct(api_key=SecretStr(token), organization=ORG, base_url=emulator.base_url)
    with QuantClient(settings, retry=FAST, sleep=waits.append) as c, pytest.raises(AuthError) as info:
        c.embed(["x"])
    assert info.value.status == status and "QUANT_API_KEY" in str(info.value)
    assert counts(emulator) == {str(status): 1} and waits == []


# --- transient errors: retried ---------------------------------------------------------------


def test_429_with_retry_after_waits_what_the_header_says(client, emulator, waits):
    emulator.set_faults(throttle_rate=0.5, seed=seed_for("xx.", 0.5))
    result = client.embed(["a", "b"])
    assert waits == [1.0, 1.0]  # the emulator's Retry-After: 1
    assert result.info.attempts == 3 and result.info.throttled == 2
    assert counts(emulator) == {"429": 2, "200": 1}


def test_429_without_retry_after_backs_off_exponentially(client, emulator, waits):
    emulator.set_faults(throttle_rate=1.0, retry_after=False)
    with pytest.raises(RateLimited) as info:
        client.embed(["a"])
    assert info.value.retry_after is None
    assert waits == [0.5, 1.0, 2.0]  # FAST: 4 attempts, no jitter
    assert counts(emulator) == {"429": 4}


def test_retry_after_is_really_honoured(emulator):
    emulator.set_faults(rate_limit_rps=1)  # one request per second, then 429 + Retry-After: 1
    with QuantClient(settings_for(emulator), retry=FAST) as c:
        c.embed(["first"])
        start = time.monotonic()
        result = c.embed(["second"])
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3.0
    assert result.info.attempts == 2 and result.info.throttled == 1
    assert counts(emulator) == {"200": 2, "429": 1}


@pytest.mark.parametrize("fault, status", [("error_500_rate", "500"), ("error_503_rate", "503")])
def test_server_errors_are_retried_until_success(client, emulator, waits, fault, status):
    emulator.set_faults(**{fault: 0.5, "seed": seed_for("xx.", 0.5)})
    result = client.embed(["a"])
    assert result.info.attempts == 3 and waits == [0.5, 1.0]
    assert counts(emulator) == {status: 2, "200": 1}


def test_dropped_connections_are_retried(client, emulator):
    emulator.set_faults(drop_rate=0.5, seed=seed_for("xx.", 0.5))
    result = client.chat(chat_request())
    assert result.text and result.info.attempts == 3
    assert emulator.stats()["faults"] == {"drop": 2}


def test_server_errors_exhaust_to_the_last_error(client, emulator):
    emulator.set_faults(error_503_rate=1.0)
    with pytest.raises(ServerError) as info:
        client.embed(["a"])
    assert info.value.status == 503 and "ServiceUnavailableException" in str(info.value)
    assert counts(emulator) == {"503": 4}


def test_hang_times_out_after_max_attempts(emulator, waits):
    emulator.set_faults(hang_rate=1.0, hang_seconds=2)
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01, jitter=0.0)
    with QuantClient(settings_for(emulator), timeouts=Timeouts(embeddings=0.4), retry=policy, sleep=waits.append) as c:
        start = time.monotonic()
        with pytest.raises(Timeout) as info:
            c.embed(["a"])
        assert time.monotonic() - start < 1.5  # two 0.4 s read timeouts, not two 2 s hangs
    assert "embeddings" in str(info.value) and len(waits) == 1
    stats = wait_for_requests(emulator, 2)  # the hung requests are counted when they finish
    assert stats["faults"] == {"hang": 2}


def test_retry_budget_stops_a_call(emulator):
    emulator.set_faults(error_503_rate=1.0)
    # real sleeps: 0.1 then 0.2; the next wait (0.4) would end past 0.6 s, so no 4th attempt
    policy = RetryPolicy(max_attempts=100, max_elapsed=0.6, backoff_initial=0.1, jitter=0.0)
    with QuantClient(settings_for(emulator), retry=policy) as c, pytest.raises(ServerError):
        c.embed(["a"])
    assert counts(emulator) == {"503": 3}


def test_retry_after_beyond_the_budget_is_not_waited(emulator, waits):
    emulator.set_faults(throttle_rate=1.0)  # Retry-After: 1
    with QuantClient(settings_for(emulator), retry=RetryPolicy(max_elapsed=0.5), sleep=waits.append) as c:
        with pytest.raises(RateLimited):
            c.embed(["a"])
    assert waits == [] and counts(emulator) == {"429": 1}


def test_stream_is_retried_before_its_first_event(client, emulator, waits):
    emulator.set_faults(throttle_rate=0.5, seed=seed_for("x.", 0.5))
    events = list(client.chat_stream(chat_request()))
    assert events[-1].kind == "done" and waits == [1.0]
    assert counts(emulator, "chat-stream") == {"429": 1, "200": 1}


def test_stream_cut_after_its_first_event_is_not_retried(client, emulator):
    emulator.set_faults(drop_rate=1.0)
    seen: list[StreamEvent] = []
    with pytest.raises(ConnectionDropped):
        for event in client.chat_stream(chat_request("word " * 40)):
            seen.append(event)
    assert seen and all(e.kind == "delta" for e in seen)
    assert emulator.stats()["total_requests"] == 1


def test_rate_limiter_hooks_see_every_attempt(emulator, waits):
    class Recorder:
        def __init__(self):
            self.acquired, self.throttles, self.successes = [], 0, 0

        def acquire(self, tokens: int = 0) -> None:
            self.acquired.append(tokens)

        def on_throttle(self) -> None:
            self.throttles += 1

        def on_success(self) -> None:
            self.successes += 1

    rec = Recorder()
    emulator.set_faults(throttle_rate=0.5, seed=seed_for("xx.", 0.5))
    texts = ["some words here", "and a few more"]
    with QuantClient(settings_for(emulator), retry=FAST, rate_limiter=rec, sleep=waits.append) as c:
        c.embed(texts)
    assert rec.acquired == [estimate_text_tokens(texts)] * 3
    assert (rec.throttles, rec.successes) == (2, 1)


def test_adaptive_limiter_slows_down_on_429(emulator, waits):
    limiter = AdaptiveRateLimiter(requests_per_minute=6000)
    emulator.set_faults(throttle_rate=0.5, seed=seed_for("x.", 0.5))
    with QuantClient(settings_for(emulator), retry=FAST, rate_limiter=limiter, sleep=waits.append) as c:
        c.embed(["a"])
    assert limiter.effective_rpm < 6000


def test_one_client_serves_many_threads(emulator):
    with QuantClient(settings_for(emulator), pool_size=8) as c, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: c.embed([f"text {i}"], dimensions=256), range(32)))
    assert all(r.vectors.shape == (1, 256) for r in results)
    assert counts(emulator) == {"200": 32}


# --- settings --------------------------------------------------------------------------------


def test_settings_come_from_the_environment(api_env):
    with QuantClient() as c:
        assert c.settings.organization == ORG and c.embed(["x"]).vectors.shape == (1, 1024)


@pytest.mark.parametrize("missing", ["QUANT_API_KEY", "QUANT_ORGANIZATION"])
def test_missing_env_var_is_a_config_error_naming_it(api_env, monkeypatch, missing):
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=f"{missing} is not set"):
        QuantClient()


def test_explicit_arguments_win_over_the_environment(api_env):
    s = ApiSettings.from_env(organization="other-org", base_url="http://127.0.0.1:1/")
    assert (s.organization, s.base_url, s.api_key.get_secret_value()) == ("other-org", "http://127.0.0.1:1", TOKEN)


# --- token hygiene ---------------------------------------------------------------------------


def _chain(exc: BaseException):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def test_the_token_never_shows(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    few = RetryPolicy(max_attempts=2, backoff_initial=0.01, jitter=0.0)
    failures: list[BaseException] = []

    def capture(fn, *args, settings=None, timeouts=Timeouts(), **faults):
        emulator.set_faults(**faults)
        with QuantClient(settings or settings_for(emulator), retry=few, timeouts=timeouts) as c:
            try:
                fn(c, *args)
            except ApiError as exc:
                failures.append(exc)
            else:
                raise AssertionError("expected a failure")
            texts.append(repr(c))

    texts = []
    empty = ApiSettings.model_construct(api_key=SecretStr(""), organization=ORG, base_url=emulator.base_url)
    wrong = settings_for(emulator, token=TOKEN + "-wrong")
    capture(QuantClient.embed, ["x"], settings=empty)  # 401
    capture(QuantClient.embed, ["x"], settings=wrong)  # 403
    capture(QuantClient.embed, ["bad __POISON__"])  # 400
    capture(QuantClient.embed, ["x"], throttle_rate=1.0)  # 429 exhausted
    capture(QuantClient.chat, chat_request(), error_500_rate=1.0)  # 500 exhausted
    capture(QuantClient.embed, ["x"], drop_rate=1.0)  # dropped
    capture(lambda c: list(c.chat_stream(chat_request())), drop_rate=1.0)  # dropped mid-stream
    capture(QuantClient.embed, ["x"], timeouts=Timeouts(embeddings=0.2), hang_rate=1.0, hang_seconds=0.6)
    wait_for_requests(emulator, 1 + 1 + 1 + 2 + 2 + 2 + 1 + 2)

    kinds = {type(e) for e in failures}
    assert {AuthError, RequestRejected, RateLimited, ServerError, ConnectionDropped, Timeout} <= kinds
    for exc in failures:
        texts.append("".join(traceback.format_exception(exc)))
        # with every frame's locals, as rich/Sentry-style reporters print them
        texts.append("".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()))
        for link in _chain(exc):
            texts += [str(link), repr(link), repr(vars(link))]
            assert getattr(link, "request", None) is None  # no PreparedRequest (with headers) kept
    texts += [caplog.text, repr(settings_for(emulator)), str(settings_for(emulator))]
    leaked = [t for t in texts if TOKEN in t]
    assert not leaked, leaked[0][:2000]


def test_a_token_echoed_by_a_server_is_masked():
    resp = _response(400, b'{"error": "ValidationException", "message": "bad token test-token-SECRET-123"}')
    err = error_from_response("chat", resp, secret=TOKEN)
    assert TOKEN not in str(err) and "***" in str(err)


# --- pure parts: retry policy, error translation, SSE ----------------------------------------


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    for junk in (None, "", "soon", "Mon, 99 Foo"):
        assert parse_retry_after(junk) is None


class _State:
    """The two things a tenacity wait reads from a RetryCallState."""

    def __init__(self, attempt: int, exc: BaseException):
        import concurrent.futures

        self.attempt_number = attempt
        self.outcome = concurrent.futures.Future()
        self.outcome.set_exception(exc)


def test_wait_uses_retry_after_capped_else_backoff():
    wait = wait_retry_after_or_backoff(RetryPolicy(retry_after_cap=10, backoff_initial=1, backoff_max=5, jitter=0))
    assert wait(_State(1, RateLimited("x", retry_after=3))) == 3
    assert wait(_State(1, RateLimited("x", retry_after=500))) == 10
    assert [wait(_State(n, RateLimited("x"))) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    assert wait(_State(2, ServerError("x"))) == 2
    ignore = wait_retry_after_or_backoff(RetryPolicy(respect_retry_after=False, backoff_initial=1, jitter=0))
    assert ignore(_State(1, RateLimited("x", retry_after=30))) == 1


def test_full_jitter_stays_under_the_backoff():
    wait = wait_retry_after_or_backoff(RetryPolicy(backoff_initial=1, backoff_max=60, jitter=1.0))
    draws = [wait(_State(4, ServerError("x"))) for _ in range(200)]
    assert all(0 <= d <= 8 for d in draws) and len(set(draws)) > 100


def _response(status: int, body: bytes = b"", headers: dict | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content, resp.reason = status, body, "Reason"
    resp.headers.update(headers or {})
    return resp


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (408, b"", Timeout),
        (424, b"", ServerError),
        (502, b"<html>bad gateway</html>", ServerError),
        (504, b"", ServerError),
        (413, b'{"message": "too big"}', PayloadTooLarge),
        (400, b'{"error": "ThrottlingException", "message": "Too many tokens"}', RateLimited),
        (400, b'{"message": "This request has been blocked by our content filters."}', ContentBlocked),
        (404, b'{"detail": "Not Found"}', RequestRejected),
        (422, b'{"detail": [{"loc": ["x"]}]}', RequestRejected),
    ],
)
def test_statuses_map_to_error_types(status, body, kind):
    err = error_from_response("chat", _response(status, body))
    assert type(err) is kind and err.status == status and str(err).startswith(f"chat: {status} ")


def test_error_bodies_are_read_defensively():
    long = error_from_response("embeddings", _response(500, b"x" * 5000))
    assert len(long.server_message) <= 500
    nested = error_from_response("chat", _response(400, b'{"error": {"code": "Bad", "message": "deep"}}'))
    assert str(nested) == "chat: 400 Bad: deep"
    binary = error_from_response("chat", _response(503, bytes(range(256))))
    assert isinstance(binary, ServerError)
    throttled = error_from_response("chat", _response(429, b"{}", {"Retry-After": "7"}))
    assert throttled.retry_after == 7
    broken = _response(400)
    broken.headers = None  # a response this broken must still give an error, not raise
    assert isinstance(error_from_response("chat", broken), ApiError)


@pytest.mark.parametrize(
    "text, index",
    [
        ("Malformed input request: input[3]: expected maxLength: 50000", 3),
        ("texts[12] is empty", 12),
        ("bad text at index 7", 7),
        ("index: 0 too long", 0),
        ("no position", None),
    ],
)
def test_parse_index(text, index):
    assert parse_index(text) == index


def test_sse_parser_is_lenient():
    lines = [
        ": comment",
        "event: message",
        'data: {"delta": "a"}',
        "",
        'data: {"text": "b"}',
        "",
        'data: {"delta": {"text": "c"}}',
        "",
        "data: plain",
        "",
        "",
        'data: {"finishReason": "stop", "usage": {"inputTokens": 1, "outputTokens": 2}}',
        "",
        "data: [DONE]",
        "",
        'data: {"delta": "after done"}',
        "",
    ]
    events = list(stream_events(lines))
    assert [e.text for e in events[:-1]] == ["a", "b", "c", "plain"]
    assert events[-1] == StreamEvent("done", finish_reason="stop", usage=events[-1].usage)
    assert events[-1].usage.total_tokens == 3
    assert list(stream_events([b"data: [DONE]", b""])) == [StreamEvent("done")]


# --- a base URL that never answers -----------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_client(base_url: str, waits: list[float], **kw) -> QuantClient:
    settings = ApiSettings.from_env(api_key=TOKEN, organization=ORG, base_url=base_url)
    policy = RetryPolicy(max_attempts=8, backoff_initial=0.5, jitter=0.0)
    return QuantClient(settings, retry=policy, sleep=waits.append, timeouts=Timeouts(connect=3), **kw)


@pytest.mark.parametrize(
    "base_url, origin, reason",
    [
        ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}", "connection refused"),
        ("http://nonexistent.invalid", "http://nonexistent.invalid:80", "unknown host"),
    ],
)
def test_a_url_that_never_answered_is_unreachable_after_two_quick_attempts(waits, base_url, origin, reason):
    port = closed_port()
    with unreachable_client(base_url.format(port=port), waits) as c, pytest.raises(ServiceUnreachable) as info:
        c.embed(["x"])
    err = info.value
    assert waits == [0.5]  # two attempts and one short wait, not 8 attempts and their backoff
    assert not isinstance(err, (TransientError, RequestRejected))
    text = str(err)
    assert origin.format(port=port) in text and reason in text and "QUANT_BASE_URL" in text
    assert ORG not in text and TOKEN not in text and "/api" not in text
    assert err.__cause__ is None and err.__suppress_context__  # one line, no chained URL path


def test_a_later_call_to_an_unreachable_url_fails_at_once(waits):
    with unreachable_client(f"http://127.0.0.1:{closed_port()}", waits) as c:
        with pytest.raises(ServiceUnreachable):
            c.embed(["x"])
        with pytest.raises(ServiceUnreachable):
            c.chat(chat_request())
    assert waits == [0.5]  # the second call did not wait at all


def test_one_attempt_policy_still_says_unreachable(waits):
    settings = ApiSettings.from_env(api_key=TOKEN, organization=ORG, base_url=f"http://127.0.0.1:{closed_port()}")
    with QuantClient(settings, retry=RetryPolicy(max_attempts=1), sleep=waits.append) as c:
        with pytest.raises(ServiceUnreachable):
            c.embed(["x"])
    assert waits == []


class _OneShotServer:
    """A loopback HTTP server that answers every POST with a 400, until it is shut down."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"message": "no"}'
                self.send_response(400)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()  # the port now refuses connections
        self.thread.join(5)


def test_connect_failures_after_a_first_answer_stay_transient(waits):
    server = _OneShotServer()
    try:
        with unreachable_client(server.base_url, waits) as c:
            with pytest.raises(RequestRejected):
                c.embed(["x"])  # an answer: the URL is right
            server.stop()
            with pytest.raises(ConnectionDropped) as info:
                c.embed(["x"])  # a blip mid-run: retried on the full budget
    finally:
        server.stop()
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]  # all 8 attempts
    assert ORG not in str(info.value) and "/organizations/***" in str(info.value)


def _raw_server(reply: bytes, *, then_wait: float = 0.0) -> tuple[socket.socket, str]:
    """A one-connection server that sends ``reply`` whatever it is asked, then waits and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        for _ in range(4):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)
                time.sleep(then_wait)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    "reply, then_wait, kind",
    [
        (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"embeddings": [[0.1',
            0.0,
            ConnectionDropped,
        ),
        (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"embeddings": [[0.1',
            1.5,
            Timeout,
        ),
    ],
)
def test_a_body_cut_or_stalled_mid_answer_is_transient(waits, reply, then_wait, kind):
    listener, url = _raw_server(reply, then_wait=then_wait)
    settings = ApiSettings.from_env(api_key=TOKEN, organization=ORG, base_url=url)
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.01, jitter=0.0)
    try:
        with QuantClient(settings, retry=policy, sleep=waits.append, timeouts=Timeouts(embeddings=0.5)) as c:
            with pytest.raises(kind):
                c.embed(["x"])
    finally:
        listener.close()
    assert waits == [0.01]  # transient: retried, and never taken for an unreachable URL


def test_connect_failure_reasons():
    import ssl
    from http.client import RemoteDisconnected

    import urllib3.exceptions as u3

    from quant_batch.client._errors import connect_failure

    def wrapped(reason):
        return requests.ConnectionError(u3.MaxRetryError(None, "/api/v3/organizations/o/ai/x", reason))

    assert connect_failure(wrapped(u3.NameResolutionError("h", None, OSError("x")))) == "unknown host"
    refused = u3.NewConnectionError(None, "refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert connect_failure(wrapped(refused)) == "connection refused"
    assert (
        connect_failure(requests.ConnectTimeout(u3.MaxRetryError(None, "/", u3.ConnectTimeoutError())))
        == "no connection within the connect timeout"
    )
    assert (
        connect_failure(requests.exceptions.SSLError(u3.MaxRetryError(None, "/", u3.SSLError(ssl.SSLError()))))
        == "TLS handshake failed"
    )
    assert connect_failure(wrapped(u3.ProtocolError("Connection aborted.", RemoteDisconnected("closed")))) is None
    assert connect_failure(requests.ReadTimeout(u3.ReadTimeoutError(None, "/", "read timed out"))) is None


def _png(fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("data", [b"not an image at all", _png()[:40], _png("GIF")], ids=["junk", "cut-off", "gif"])
def test_image_bytes_that_are_not_a_whole_png_or_jpeg_are_a_bad_response(data):
    from base64 import b64encode

    from quant_batch.client._parse import image_fields
    from quant_batch.errors import BadResponse

    body = b'{"images": ["' + b64encode(data) + b'"]}'
    with pytest.raises(BadResponse, match="PNG/JPEG") as info:
        image_fields(_response(200, body))
    assert isinstance(info.value, TransientError)  # retried, and a retryable error row
    ok = image_fields(_response(200, b'{"images": ["' + b64encode(_png("JPEG")) + b'"]}'))
    assert ok["images"][0][:2] == b"\xff\xd8"


# --- embeddings answers decoded row by row -----------------------------------------------------


def _embeddings_body(rows: list[list[float]], *, sep: bytes = b", ", head: bytes = b"", tail: bytes = b"") -> bytes:
    array = b"[" + sep.join(b"[" + sep.join(repr(x).encode() for x in r) + b"]" for r in rows) + b"]"
    usage = b'"usage": {"inputTokens": 7, "totalTokens": 7}'
    return b"{" + head + b'"embeddings": ' + array + b', "dimension": %d, ' % len(rows[0]) + usage + tail + b"}"


@pytest.mark.parametrize(
    "sep, head, tail",
    [
        (b",", b"", b""),
        (b", ", b'"model": "amazon.titan-embed-text-v2:0", ', b""),
        (b",\n    ", b"", b', "model": "amazon.titan-embed-text-v2:0"'),
    ],
    ids=["compact", "spaces", "pretty-printed"],
)
def test_embeddings_are_read_row_by_row_and_match_the_whole_parse(sep, head, tail):
    from quant_batch.client._parse import _vectors_by_row, _vectors_whole, embedding_fields

    rows = np.random.default_rng(1).standard_normal((3, 8)).tolist()
    resp = _response(200, _embeddings_body(rows, sep=sep, head=head, tail=tail))
    fast = _vectors_by_row(resp.content, 3)
    assert fast is not None  # the plain shape never builds a whole answer of Python floats
    body, vectors = fast
    whole_body, whole = _vectors_whole(resp, 3)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous and np.array_equal(vectors, whole)
    assert body == {**whole_body, "embeddings": []}
    fields = embedding_fields(resp, 3)
    assert fields["dimension"] == 8 and fields["usage"].input_tokens == 7 and np.array_equal(fields["vectors"], whole)


@pytest.mark.parametrize(
    "body, n, match",
    [
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]])[:-30], 2, "not JSON"),  # cut off
        (_embeddings_body([[0.5, 0.5], [0.5]]), 2, "numeric lists"),  # ragged
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]]), 3, "2 vectors for 3 texts"),
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]]), 1, "2 vectors for 1 texts"),
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]]).replace(b"0.5]", b"0.5x]", 1), 2, "not JSON"),
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]]).replace(b"0.5]", b'"a"]', 1), 2, "numeric lists"),
        (_embeddings_body([[0.5, 0.5], [0.5, 0.5]]).replace(b"], [", b"] [", 1), 2, "not JSON"),  # no comma
        (
            _embeddings_body([[0.5, 0.5], [0.5, 0.5]]).replace(b"[[", b"[[[", 1).replace(b"]]", b"]]]", 1),
            2,
            "1 vectors for 2 texts",
        ),
        (b'{"data": {"embeddings": [[0.5, 0.5]]}}', 1, "0 vectors for 1 texts"),  # not the top-level key
        (b'{"data": {"embeddings": [[0.5, 0.5]]}, "embeddings": []}', 1, "0 vectors for 1 texts"),
        (_embeddings_body([[0.5, 0.5]]).replace(b'"dimension": 2', b'"dimension": 3'), 1, "dimension 3"),
    ],
    ids=[
        "cut-off",
        "ragged",
        "too-few",
        "too-many",
        "bad-number",
        "string",
        "no-comma",
        "nested",
        "nested-key",
        "nested-key-beside-empty",
        "wrong-dimension",
    ],
)
def test_malformed_embeddings_answers_are_still_a_bad_response(body, n, match):
    from quant_batch.client._parse import embedding_fields
    from quant_batch.errors import BadResponse

    with pytest.raises(BadResponse, match=match) as info:
        embedding_fields(_response(200, body), n)
    assert isinstance(info.value, TransientError)


def test_a_nan_vector_still_decodes_through_the_whole_parse():
    from quant_batch.client._parse import embedding_fields

    body = _embeddings_body([[0.6, 0.8], [0.6, 0.8]]).replace(b"[0.6, 0.8]]", b"[NaN, NaN]]")
    v = embedding_fields(_response(200, body), 2)["vectors"]
    assert np.allclose(v[0], [0.6, 0.8]) and np.isnan(v[1]).all()
