"""The emulator over real loopback sockets: the official SDK, plain requests, fault injection."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import quantcdn
import requests
from PIL import Image
from quantcdn.exceptions import BadRequestException, ForbiddenException, UnauthorizedException
from quantcdn.models.chat_inference200_response import ChatInference200Response
from quantcdn.models.chat_inference_request import ChatInferenceRequest
from quantcdn.models.chat_inference_stream_request import ChatInferenceStreamRequest
from quantcdn.models.embeddings200_response import Embeddings200Response
from quantcdn.models.embeddings_request import EmbeddingsRequest
from quantcdn.models.embeddings_request_input import EmbeddingsRequestInput
from quantcdn.models.image_generation200_response import ImageGeneration200Response
from quantcdn.models.image_generation_request import ImageGenerationRequest
from quantcdn.models.image_generation_request_image_generation_config import (
    ImageGenerationRequestImageGenerationConfig as ImageConfig,
)
from quantcdn.models.image_generation_request_text_to_image_params import (
    ImageGenerationRequestTextToImageParams as TextParams,
)

from quant_batch.emulator import EmulatorServer, FaultConfig

TEST_TOKEN = "test-token-SECRET-123"  # the token conftest's emulator_server accepts
TEST_ORG = "test-org"
CHAT_MODEL = "amazon.nova-lite-v1:0"


class Sdk:
    """The official SDK client; dict requests are turned into the SDK's models with from_dict."""

    MODELS = {
        "embeddings": EmbeddingsRequest,
        "image_generation": ImageGenerationRequest,
        "chat_inference": ChatInferenceRequest,
        "chat_inference_stream": ChatInferenceStreamRequest,
    }

    def __init__(self, base_url: str, token: str | None):
        config = quantcdn.Configuration(host=base_url, access_token=token)
        self.api = quantcdn.AIInferenceApi(quantcdn.ApiClient(config))

    def __getattr__(self, name: str):
        method, model = getattr(self.api, name), self.MODELS[name]
        return lambda org, req: method(org, model.from_dict(req) if isinstance(req, dict) else req)


def _api(base_url: str, token: str | None) -> Sdk:
    return Sdk(base_url, token)


@pytest.fixture
def sdk(emulator):
    return _api(emulator.base_url, TEST_TOKEN)


def url(emulator, path: str) -> str:
    return f"{emulator.base_url}/api/v3/organizations/{TEST_ORG}/ai/{path}"


def post(emulator, path: str, body, *, token: str | None = TEST_TOKEN, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, (bytes, str)):
        return requests.post(
            url(emulator, path), data=body, headers={**headers, "Content-Type": "application/json"}, **kw
        )
    return requests.post(url(emulator, path), json=body, headers=headers, **kw)


def embed_request(**fields) -> EmbeddingsRequest:
    """An EmbeddingsRequest that skips the SDK's client-side checks, to reach the server's."""
    fields.setdefault("model_id", "amazon.titan-embed-text-v2:0")
    fields.setdefault("normalize", True)
    fields["input"] = EmbeddingsRequestInput(fields["input"])
    return EmbeddingsRequest.model_construct(**fields)


def image_request(config: dict | None = None, text: str = "a red kite over hills", **fields) -> ImageGenerationRequest:
    """An ImageGenerationRequest built without SDK validation (server-side rules are under test)."""
    fields.setdefault("task_type", "TEXT_IMAGE")
    fields.setdefault("region", "us-east-1")
    fields.setdefault("text_to_image_params", TextParams.model_construct(text=text))
    if config is not None:
        fields["image_generation_config"] = ImageConfig.model_construct(**config)
    return ImageGenerationRequest.model_construct(**fields)


def png_size(b64: str | bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert img.format == "PNG"
    return img.size


def vec(emulator, text: str, **kw) -> np.ndarray:
    r = post(emulator, "embeddings", {"input": text, **kw})
    assert r.status_code == 200, r.text
    return np.array(r.json()["embeddings"])


# --- the SDK sees a real service ------------------------------------------------------------


def test_sdk_embeddings_batch(sdk, emulator):
    res = sdk.embeddings(TEST_ORG, {"input": ["the cat sat", "on the mat"], "dimensions": 256})
    assert isinstance(res, Embeddings200Response)
    vectors = res.embeddings.actual_instance
    assert len(vectors) == 2 and all(len(v) == 256 for v in vectors)
    assert res.dimension == 256 and res.model == "amazon.titan-embed-text-v2:0"
    assert res.usage.input_tokens == res.usage.total_tokens > 0
    assert emulator.stats()["texts_embedded"] == 2


def test_sdk_embeddings_single_string_gives_one_vector(sdk):
    res = sdk.embeddings(TEST_ORG, {"input": "hello world"})
    assert len(res.embeddings.actual_instance) == 1024
    assert isinstance(res.embeddings.actual_instance[0], float)


def test_sdk_embeddings_v1_is_1536(sdk):
    res = sdk.embeddings(TEST_ORG, {"input": ["x"], "modelId": "amazon.titan-embed-text-v1:0"})
    assert res.dimension == 1536 and len(res.embeddings.actual_instance[0]) == 1536


def test_sdk_image_generation(sdk, emulator):
    req = {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a lighthouse", "style": "PHOTOREALISM"},
        "imageGenerationConfig": {"width": 512, "height": 768, "numberOfImages": 2, "seed": 7},
    }
    res = sdk.image_generation(TEST_ORG, req)
    assert isinstance(res, ImageGeneration200Response) and res.error is None
    assert [png_size(i) for i in res.images] == [(512, 768), (512, 768)]
    assert res.images[0] != res.images[1]
    assert sdk.image_generation(TEST_ORG, req).images == res.images  # deterministic
    assert emulator.stats()["images_generated"] == 4


def test_default_image_size_and_edit_task_size(sdk, emulator):
    res = sdk.image_generation(TEST_ORG, {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"}})
    assert png_size(res.images[0]) == (1024, 1024)
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (9, 9, 9)).save(buf, format="PNG")
    source = base64.b64encode(buf.getvalue()).decode()
    r = post(
        emulator,
        "image-generation",
        {"taskType": "INPAINTING", "inPaintingParams": {"image": source, "maskPrompt": "the sky"}},
    )
    assert r.status_code == 200, r.text
    assert png_size(r.json()["images"][0]) == (640, 480)
    r = post(
        emulator, "image-generation", {"taskType": "BACKGROUND_REMOVAL", "backgroundRemovalParams": {"image": source}}
    )
    img = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert img.size == (640, 480) and img.mode == "RGBA"


def test_sdk_chat(sdk):
    res = sdk.chat_inference(
        TEST_ORG, {"modelId": CHAT_MODEL, "messages": [{"role": "user", "content": "Explain the tides briefly"}]}
    )
    assert isinstance(res, ChatInference200Response)
    assert res.response.role == "assistant" and "tides" in res.response.content
    assert res.finish_reason == "stop" and res.model == CHAT_MODEL and res.request_id
    assert res.usage.total_tokens == res.usage.input_tokens + res.usage.output_tokens


def test_sdk_chat_multimodal_blocks(sdk):
    # the SDK's from_dict loses content blocks (its oneOf parsing yields None), so build the models
    from quantcdn.models.chat_inference_request_messages_inner import ChatInferenceRequestMessagesInner as Msg
    from quantcdn.models.chat_inference_request_messages_inner_content import (
        ChatInferenceRequestMessagesInnerContent as Content,
    )
    from quantcdn.models.chat_inference_request_messages_inner_content_one_of_inner import (
        ChatInferenceRequestMessagesInnerContentOneOfInner as Block,
    )
    from quantcdn.models.chat_inference_request_messages_inner_content_one_of_inner_one_of import (
        ChatInferenceRequestMessagesInnerContentOneOfInnerOneOf as TextBlock,
    )
    from quantcdn.models.chat_inference_request_messages_inner_content_one_of_inner_one_of1 import (
        ChatInferenceRequestMessagesInnerContentOneOfInnerOneOf1 as ImageBlock,
    )

    png = base64.b64encode(b"\x89PNG fake").decode()
    image = ImageBlock.from_dict({"image": {"format": "png", "source": {"bytes": png}}})
    content = Content([Block(image), Block(TextBlock(text="Describe image 1"))])
    req = ChatInferenceRequest(modelId=CHAT_MODEL, messages=[Msg(role="user", content=content)])
    res = sdk.chat_inference(TEST_ORG, req)
    assert "Describe image 1" in res.response.content and "attachment" in res.response.content


def parse_sse(text: str) -> list:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_sdk_chat_stream_matches_buffered_chat(sdk):
    req = {
        "modelId": CHAT_MODEL,
        "messages": [{"role": "user", "content": "one two three four five six seven eight nine"}],
    }
    text = sdk.chat_inference_stream(TEST_ORG, req)
    assert isinstance(text, str)
    events = parse_sse(text)
    deltas = [e["delta"] for e in events if "delta" in e]
    assert len(deltas) > 1
    final = events[-1]
    assert final["finishReason"] == "stop" and final["usage"]["totalTokens"] > 0
    assert "".join(deltas) == sdk.chat_inference(TEST_ORG, req).response.content


def test_chat_json_mode_follows_schema(sdk):
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "type": "object",
        "required": ["title", "tags", "score", "ok", "kind"],
        "properties": {
            "title": {"type": "string", "minLength": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "ok": {"type": "boolean"},
            "kind": {"enum": ["a", "b"]},
            "ratio": {"type": "number", "maximum": 0.5},
            "nested": {"type": "object", "properties": {"n": {"type": ["null", "integer"]}}},
        },
    }
    res = sdk.chat_inference(
        TEST_ORG,
        {
            "modelId": CHAT_MODEL,
            "messages": [{"role": "user", "content": "tag this text"}],
            "responseFormat": {"type": "json", "jsonSchema": schema},
        },
    )
    jsonschema.validate(json.loads(res.response.content), schema)


def test_chat_max_tokens_truncates_with_length(sdk):
    long = " ".join(f"word{i}" for i in range(40))
    res = sdk.chat_inference(
        TEST_ORG, {"modelId": CHAT_MODEL, "maxTokens": 3, "messages": [{"role": "user", "content": long}]}
    )
    assert res.finish_reason == "length" and res.usage.output_tokens <= 3


def test_chat_faults_invalid_json_and_length(emulator, sdk):
    req = {
        "modelId": CHAT_MODEL,
        "messages": [{"role": "user", "content": "a b c d e f g"}],
        "responseFormat": {"type": "json", "jsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    emulator.set_faults(invalid_json_rate=1.0)
    with pytest.raises(ValueError):
        json.loads(sdk.chat_inference(TEST_ORG, req).response.content)
    emulator.set_faults(length_rate=1.0)
    assert sdk.chat_inference(TEST_ORG, req).finish_reason == "length"


# --- rejections, through the SDK where it can send them ----------------------------------------


def test_missing_token_is_401(emulator):
    with pytest.raises(UnauthorizedException) as exc:
        _api(emulator.base_url, None).embeddings(TEST_ORG, {"input": "x"})
    assert exc.value.status == 401
    assert post(emulator, "embeddings", {"input": "x"}, token=None).status_code == 401
    r = requests.post(url(emulator, "embeddings"), json={"input": "x"}, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_wrong_token_is_403_and_never_echoed(emulator):
    with pytest.raises(ForbiddenException) as exc:
        _api(emulator.base_url, "wrong-SECRET-token").embeddings(TEST_ORG, {"input": "x"})
    assert exc.value.status == 403
    assert "wrong-SECRET-token" not in exc.value.body and "SECRET" not in exc.value.body
    assert json.loads(exc.value.body)["error"] == "AccessDeniedException"


@pytest.mark.parametrize(
    "request_fields,fragment",
    [
        ({"input": []}, "1-100"),
        ({"input": ["t"] * 101}, "1-100"),
        ({"input": ["t"], "dimensions": 300}, "dimensions"),
        ({"input": ["ok", "fine", "x" * 50_001]}, "input[2]: expected maxLength: 50000, actual: 50001"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": ["x"], "model_id": "amazon.titan-embed-text-v9:0"}, "modelId"),
    ],
)
def test_embedding_rejections(sdk, request_fields, fragment):
    with pytest.raises(BadRequestException) as exc:
        sdk.embeddings(TEST_ORG, embed_request(**request_fields))
    body = json.loads(exc.value.body)
    assert exc.value.status == 400 and body["error"] == "ValidationException"
    assert fragment in body["message"]


def test_too_many_tokens_names_index(emulator):
    r = post(emulator, "embeddings", {"input": ["fine", "y" * 45_000]})
    assert r.status_code == 400 and "input[1]: Too many input tokens" in r.json()["message"]


@pytest.mark.parametrize(
    "build,fragment",
    [
        (lambda: image_request(region="ap-southeast-2"), "region"),
        (lambda: image_request(task_type="INPAINTING"), "inPaintingParams"),
        (lambda: image_request({"width": 1000, "height": 1024}), "imageGenerationConfig.width"),
        (lambda: image_request({"width": 2048, "height": 2048}), "4194304"),
        (lambda: image_request({"cfg_scale": 11}), "cfgScale"),
        (lambda: image_request({"number_of_images": 6}), "numberOfImages"),
        (lambda: image_request(text="p" * 1025), "textToImageParams.text"),
    ],
)
def test_image_rejections(sdk, build, fragment):
    with pytest.raises(BadRequestException) as exc:
        sdk.image_generation(TEST_ORG, build())
    assert exc.value.status == 400 and fragment in json.loads(exc.value.body)["message"]


def test_malformed_json_is_400(emulator):
    r = post(emulator, "embeddings", b'{"input": ["unterminated"')
    assert r.status_code == 400 and r.json()["error"] == "ValidationException"
    r = post(emulator, "chat", b"not json at all")
    assert r.status_code == 400


def test_body_over_25_mb_is_413(emulator):
    body = b'{"input": "' + b"a" * (25 * 1024 * 1024) + b'"}'
    r = post(emulator, "embeddings", body)
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLargeException"


def test_chat_rejections(emulator):
    ok = {"modelId": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    bad = [
        {**ok, "messages": []},
        {**ok, "messages": [{"role": "robot", "content": "hi"}]},
        {**ok, "temperature": 2.5},
        {**ok, "maxTokens": 0},
        {**ok, "maxTokens": 8193},
        {**ok, "messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]}]},
        {"messages": ok["messages"]},
    ]
    for body in bad:
        for path in ("chat", "chat/stream"):
            assert post(emulator, path, body).status_code == 400, (path, body)


def test_moderation_blocks_prompt(sdk, emulator):
    with pytest.raises(BadRequestException) as exc:
        sdk.image_generation(TEST_ORG, {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a __BLOCKED__ scene"}})
    assert json.loads(exc.value.body) == {
        "error": "ValidationException",
        "message": "This request has been blocked by our content filters. "
        "Please adjust your text prompt to submit a new request.",
    }


def test_partial_block_returns_fewer_images(sdk):
    res = sdk.image_generation(
        TEST_ORG,
        {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": "x __PARTIAL_BLOCK__"},
            "imageGenerationConfig": {"numberOfImages": 3, "width": 320, "height": 320},
        },
    )
    assert len(res.images) == 2
    assert res.error == "Some of the generated images have been blocked by our content filters."


def test_poison_text_is_rejected_by_index(emulator):
    r = post(emulator, "embeddings", {"input": ["a", "b", "c __POISON__"]})
    assert r.status_code == 400 and "input[2]" in r.json()["message"]


def test_nan_marker_gives_nan_vector(emulator):
    r = post(emulator, "embeddings", {"input": ["fine", "bad __NAN__"]})
    vectors = r.json()["embeddings"]  # requests parses the bare NaN token
    assert not np.isnan(vectors[0]).any() and np.isnan(vectors[1]).all()


# --- vectors --------------------------------------------------------------------------------


def test_vectors_are_deterministic_normalised_and_semantic(emulator):
    a = vec(emulator, "the cat sat on the mat")
    assert np.array_equal(a, vec(emulator, "the cat sat on the mat"))
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    near, far = vec(emulator, "a cat on a mat"), vec(emulator, "quarterly tax filing deadline")
    assert a @ near > 0.3 > a @ far
    raw = vec(emulator, "the cat sat on the mat", normalize=False)
    assert abs(np.linalg.norm(raw) - 1) > 0.1
    assert np.allclose(raw / np.linalg.norm(raw), a, atol=1e-5)


def test_batch_and_single_vectors_agree(emulator):
    batch = post(emulator, "embeddings", {"input": ["alpha beta", "gamma"], "dimensions": 512}).json()["embeddings"]
    assert np.allclose(batch[1], vec(emulator, "gamma", dimensions=512))


# --- fault injection ------------------------------------------------------------------------


def test_throttle_has_retry_after_unless_disabled(emulator):
    emulator.set_faults(throttle_rate=1.0)
    r = post(emulator, "embeddings", {"input": "x"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json() == {
        "error": "ThrottlingException",
        "message": "Too many requests, please wait before trying again.",
    }
    emulator.set_faults(throttle_rate=1.0, retry_after=False)
    r = post(emulator, "embeddings", {"input": "x"})
    assert r.status_code == 429 and "Retry-After" not in r.headers


def test_rate_limit_holds_in_every_one_second_window(emulator):
    emulator.set_faults(rate_limit_rps=5)
    codes = [post(emulator, "embeddings", {"input": "x"}).status_code for _ in range(12)]
    assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}
    stats = emulator.stats()
    admitted = sorted(e["t"] for e in stats["events"] if e["status"] == 200)
    assert all(sum(1 for t in admitted if s <= t < s + 1) <= 5 for s in admitted)
    assert stats["by_status"] == {"200": 5, "429": 7}


@pytest.mark.parametrize(
    "field,status,name",
    [("error_500_rate", 500, "InternalServerException"), ("error_503_rate", 503, "ServiceUnavailableException")],
)
def test_server_errors(emulator, field, status, name):
    emulator.set_faults(**{field: 1.0})
    r = post(emulator, "chat", {"modelId": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == status and r.json()["error"] == name


def test_dropped_connection_raises(emulator):
    emulator.set_faults(drop_rate=1.0)
    for path, body in (
        ("embeddings", {"input": ["some text"] * 3}),
        ("chat/stream", {"modelId": CHAT_MODEL, "messages": [{"role": "user", "content": "a b c d e f g h i"}]}),
    ):
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            post(emulator, path, body)
    assert emulator.stats()["faults"] == {"drop": 2}


def test_hang_exceeds_client_timeout(emulator):
    emulator.set_faults(hang_rate=1.0, hang_seconds=1.5)
    with pytest.raises(requests.Timeout):
        post(emulator, "embeddings", {"input": "x"}, timeout=0.3)


def test_faults_limited_to_endpoints_and_stats_exact(emulator):
    emulator.set_faults(error_500_rate=1.0, endpoints=["image-generation"])
    for _ in range(3):
        assert post(emulator, "embeddings", {"input": ["a", "b"]}).status_code == 200
    assert (
        post(emulator, "image-generation", {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"}}).status_code
        == 500
    )
    assert post(emulator, "embeddings", {"input": "x"}, token="nope").status_code == 403
    stats = emulator.stats()
    assert stats["total_requests"] == 5 and stats["texts_embedded"] == 6 and stats["images_generated"] == 0
    assert stats["by_endpoint"] == {"embeddings": {"200": 3, "403": 1}, "image-generation": {"500": 1}}
    assert stats["faults"] == {"error_500": 1}
    assert {"t", "endpoint", "status"} <= set(stats["events"][0])


def test_seeded_faults_repeat(emulator):
    def run() -> list[int]:
        emulator.set_faults(seed=42, error_500_rate=0.3, error_503_rate=0.3)
        return [post(emulator, "embeddings", {"input": "x"}).status_code for _ in range(12)]

    first = run()
    assert first == run() and len(set(first)) > 1


def test_reset_clears_faults_and_stats(emulator):
    emulator.set_faults(error_500_rate=1.0)
    assert post(emulator, "embeddings", {"input": "x"}).status_code == 500
    emulator.reset()
    assert post(emulator, "embeddings", {"input": "x"}).status_code == 200
    assert emulator.stats()["total_requests"] == 1


def test_latency_and_concurrency(emulator):
    emulator.set_faults(latency={"embeddings": 0.4})
    start = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: post(emulator, "embeddings", {"input": "x"}).status_code, range(10)))
    elapsed = time.monotonic() - start
    assert codes == [200] * 10 and 0.4 <= elapsed < 1.5


def test_process_mode():
    faults = FaultConfig(error_503_rate=1.0, endpoints=["chat"])
    with EmulatorServer(token="proc-token", faults=faults, mode="process") as emu:
        assert post(emu, "embeddings", {"input": "x"}, token="proc-token").status_code == 200
        assert (
            post(
                emu, "chat", {"modelId": "m", "messages": [{"role": "user", "content": "x"}]}, token="proc-token"
            ).status_code
            == 503
        )
        emu.set_faults(throttle_rate=1.0)
        assert post(emu, "embeddings", {"input": "x"}, token="proc-token").status_code == 429
        assert emu.stats()["by_status"] == {"200": 1, "503": 1, "429": 1}
