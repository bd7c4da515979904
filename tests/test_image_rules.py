"""Boundary values of the Nova Canvas request rules (pure, no server)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from quant_batch.render.rules import (
    PARAMS_KEY,
    TASK_TYPES,
    RuleViolation,
    check_image_request,
    check_input_image,
    output_size,
)


def _png(width: int, height: int, colour=(200, 10, 10), mode: str = "RGB", fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _mask(width: int, height: int) -> str:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, width // 2, height // 2))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def text_image(**config) -> dict:
    req = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a lighthouse at dusk"}}
    if config:
        req["imageGenerationConfig"] = config
    return req


def fields(violations: list[RuleViolation]) -> list[str]:
    return [v.field for v in violations]


def test_minimal_request_is_valid():
    assert check_image_request(text_image()) == []


def test_violation_str_is_field_then_message():
    assert str(RuleViolation("imageGenerationConfig.width", "bad")) == "imageGenerationConfig.width: bad"


@pytest.mark.parametrize("side,ok", [(319, False), (320, True), (336, True), (4080, True), (4112, False)])
def test_width_bounds(side, ok):
    assert (check_image_request(text_image(width=side, height=1024)) == []) is ok


def test_side_4096_is_in_range_but_never_fits_aspect_and_area():
    # 4:1 needs height >= 1024, and 4096x1024 equals the (exclusive) pixel limit
    assert fields(check_image_request(text_image(width=4096, height=1024))) == ["imageGenerationConfig"]
    assert fields(check_image_request(text_image(width=4096, height=1008))) == ["imageGenerationConfig"]
    assert fields(check_image_request(text_image(width=4112, height=1024))) == ["imageGenerationConfig.width"]


@pytest.mark.parametrize("side", [1000, 330, 1025])
def test_sides_must_be_divisible_by_16(side):
    assert fields(check_image_request(text_image(width=side, height=1024))) == ["imageGenerationConfig.width"]


@pytest.mark.parametrize(
    "width,height,ok", [(1280, 320, True), (320, 1280, True), (1600, 320, False), (320, 1600, False)]
)
def test_aspect_ratio_between_1_4_and_4_1(width, height, ok):
    assert (check_image_request(text_image(width=width, height=height)) == []) is ok


@pytest.mark.parametrize(
    "width,height,ok", [(2048, 2048, False), (2000, 2000, True), (512, 2048, True), (2048, 512, True)]
)
def test_total_pixels_strictly_below_limit(width, height, ok):
    assert (check_image_request(text_image(width=width, height=height)) == []) is ok


def test_size_is_checked_against_default_for_missing_side():
    assert check_image_request(text_image(width=4096)) != []  # 4096x1024 is exactly the pixel limit
    assert check_image_request(text_image(height=2048)) == []


@pytest.mark.parametrize("seed,ok", [(-1, False), (0, True), (858_993_459, True), (858_993_460, False), (1.5, False)])
def test_seed_bounds(seed, ok):
    assert (check_image_request(text_image(seed=seed)) == []) is ok


@pytest.mark.parametrize("cfg,ok", [(1.0, False), (1.1, True), (10, True), (10.1, False), (True, False)])
def test_cfg_scale_bounds(cfg, ok):
    assert (check_image_request(text_image(cfgScale=cfg)) == []) is ok


@pytest.mark.parametrize("n,ok", [(0, False), (1, True), (5, True), (6, False)])
def test_number_of_images(n, ok):
    assert (check_image_request(text_image(numberOfImages=n)) == []) is ok


def test_quality_enum():
    assert check_image_request(text_image(quality="premium")) == []
    assert fields(check_image_request(text_image(quality="ultra"))) == ["imageGenerationConfig.quality"]


@pytest.mark.parametrize("length,ok", [(0, False), (1, True), (1024, True), (1025, False)])
def test_prompt_length(length, ok):
    req = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x" * length}}
    assert (check_image_request(req) == []) is ok


def test_negative_text_length_and_style():
    req = {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "cat", "negativeText": "y" * 1025, "style": "CUBISM"},
    }
    assert fields(check_image_request(req)) == ["textToImageParams.negativeText", "textToImageParams.style"]


def test_control_mode_and_strength():
    params = {"text": "cat", "conditionImage": _png(512, 512), "controlMode": "SEGMENTATION", "controlStrength": 1}
    assert check_image_request({"taskType": "TEXT_IMAGE", "textToImageParams": params}) == []
    params.update(controlMode="DEPTH", controlStrength=1.2)
    assert fields(check_image_request({"taskType": "TEXT_IMAGE", "textToImageParams": params})) == [
        "textToImageParams.controlMode",
        "textToImageParams.controlStrength",
    ]


@pytest.mark.parametrize(
    "region,ok",
    [
        ("us-east-1", True),
        ("ap-northeast-1", True),
        ("eu-west-1", True),
        ("ap-southeast-2", False),
        ("us-west-2", False),
    ],
)
def test_regions(region, ok):
    assert (check_image_request({**text_image(), "region": region}) == []) is ok


def test_task_type_and_params_object():
    assert fields(check_image_request({"taskType": "SKETCH"})) == ["taskType"]
    assert fields(check_image_request({"taskType": "INPAINTING", "textToImageParams": {"text": "x"}})) == [
        "inPaintingParams"
    ]
    assert set(PARAMS_KEY) == set(TASK_TYPES)


@pytest.mark.parametrize(
    "colors,ok",
    [
        (["#FF0000"], True),
        (["#ff00aa"] * 10, True),
        ([], False),
        (["#FF0000"] * 11, False),
        (["red"], False),
        (["#FF00"], False),
        (["#GG0000"], False),
    ],
)
def test_colors(colors, ok):
    req = {"taskType": "COLOR_GUIDED_GENERATION", "colorGuidedGenerationParams": {"text": "sky", "colors": colors}}
    assert (check_image_request(req) == []) is ok


def test_image_variation_rules():
    params = {"images": [_png(512, 512)], "similarityStrength": 0.2, "text": "cat"}
    assert check_image_request({"taskType": "IMAGE_VARIATION", "imageVariationParams": params}) == []
    params.update(images=[_png(512, 512)] * 6, similarityStrength=0.1)
    assert fields(check_image_request({"taskType": "IMAGE_VARIATION", "imageVariationParams": params})) == [
        "imageVariationParams.images",
        "imageVariationParams.similarityStrength",
    ]


def inpaint(**params) -> dict:
    return {"taskType": "INPAINTING", "inPaintingParams": {"image": _png(512, 512), **params}}


def test_inpainting_needs_exactly_one_mask():
    assert check_image_request(inpaint(maskPrompt="the dog")) == []
    assert check_image_request(inpaint(maskImage=_mask(512, 512))) == []
    assert fields(check_image_request(inpaint())) == ["inPaintingParams.maskPrompt"]
    both = inpaint(maskPrompt="dog", maskImage=_mask(512, 512))
    assert fields(check_image_request(both)) == ["inPaintingParams.maskPrompt"]


def test_mask_must_match_image_size_and_be_black_and_white():
    assert fields(check_image_request(inpaint(maskImage=_mask(512, 528)))) == ["inPaintingParams.maskImage"]
    grey = _png(512, 512, colour=(128, 128, 128))
    assert fields(check_image_request(inpaint(maskImage=grey))) == ["inPaintingParams.maskImage"]


def test_edit_tasks_take_size_from_input_image():
    req = inpaint(maskPrompt="dog")
    assert output_size(req) == (512, 512)
    req["imageGenerationConfig"] = {"width": 1024, "height": 1024}
    assert fields(check_image_request(req)) == ["imageGenerationConfig"]


def test_outpainting_mode():
    req = {
        "taskType": "OUTPAINTING",
        "outPaintingParams": {"image": _png(512, 512), "maskPrompt": "sky", "outPaintingMode": "PRECISE"},
    }
    assert check_image_request(req) == []
    req["outPaintingParams"]["outPaintingMode"] = "FAST"
    assert fields(check_image_request(req)) == ["outPaintingParams.outPaintingMode"]


def test_background_removal_needs_image():
    assert (
        check_image_request({"taskType": "BACKGROUND_REMOVAL", "backgroundRemovalParams": {"image": _png(400, 400)}})
        == []
    )
    assert fields(check_image_request({"taskType": "BACKGROUND_REMOVAL", "backgroundRemovalParams": {}})) == [
        "backgroundRemovalParams.image"
    ]


def test_input_images_are_decoded_and_checked():
    assert fields(check_image_request(inpaint(image="not base64!", maskPrompt="x"))) == ["inPaintingParams.image"]
    gif = base64.b64encode(b"GIF89a" + b"\0" * 20).decode()
    assert fields(check_image_request(inpaint(image=gif, maskPrompt="x"))) == ["inPaintingParams.image"]
    # without decoding only the shape is checked
    assert check_image_request(inpaint(image="not base64!", maskPrompt="x"), decode_images=False) == []


def test_check_input_image_limits():
    def raw(*args, **kw):
        return base64.b64decode(_png(*args, **kw))

    assert check_input_image(raw(320, 320), "f") == []
    assert check_input_image(raw(400, 400, fmt="JPEG"), "f") == []
    assert check_input_image(raw(319, 400), "f") != []
    assert check_input_image(raw(1600, 336), "f") != []  # aspect above 4:1
    assert check_input_image(raw(400, 400, colour=(1, 2, 3, 100), mode="RGBA"), "f") != []
    assert check_input_image(raw(400, 400, colour=(1, 2, 3, 255), mode="RGBA"), "f") == []
    assert check_input_image(b"junk", "f")[0].field == "f"


def test_all_violations_are_reported_at_once():
    req = {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": ""},
        "region": "ap-southeast-2",
        "imageGenerationConfig": {"width": 1000, "cfgScale": 11, "numberOfImages": 6},
    }
    assert fields(check_image_request(req)) == [
        "region",
        "textToImageParams.text",
        "imageGenerationConfig.width",
        "imageGenerationConfig.cfgScale",
        "imageGenerationConfig.numberOfImages",
    ]
