"""Nova Canvas request rules, shared by the manifest validator and the emulator.

Everything here is pure (no FastAPI, no network) so the pipeline can check a request before
paying for it. Limits come from AWS's Nova Canvas guide
(https://docs.aws.amazon.com/nova/latest/userguide/image-gen-req-resp-structure.html); the SDK's
pydantic models define the request shape.

``check_image_request`` returns every violation it finds rather than stopping at the first, so
a manifest row can be fixed in one pass. The emulator joins them with ``"; "`` into its 400
message.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

MODEL_ID = "amazon.nova-canvas-v1:0"
NOVA_REGIONS = ("us-east-1", "ap-northeast-1", "eu-west-1")
DEFAULT_REGION = "us-east-1"
TASK_TYPES = (
    "TEXT_IMAGE",
    "COLOR_GUIDED_GENERATION",
    "IMAGE_VARIATION",
    "INPAINTING",
    "OUTPAINTING",
    "BACKGROUND_REMOVAL",
    "VIRTUAL_TRY_ON",
)
PARAMS_KEY = {
    "TEXT_IMAGE": "textToImageParams",
    "COLOR_GUIDED_GENERATION": "colorGuidedGenerationParams",
    "IMAGE_VARIATION": "imageVariationParams",
    "INPAINTING": "inPaintingParams",
    "OUTPAINTING": "outPaintingParams",
    "BACKGROUND_REMOVAL": "backgroundRemovalParams",
    "VIRTUAL_TRY_ON": "virtualTryOnParams",
}
STYLES = (
    "3D_ANIMATED_FAMILY_FILM",
    "DESIGN_SKETCH",
    "FLAT_VECTOR_ILLUSTRATION",
    "GRAPHIC_NOVEL_ILLUSTRATION",
    "MAXIMALISM",
    "MIDCENTURY_RETRO",
    "PHOTOREALISM",
    "SOFT_DIGITAL_PAINTING",
)
CONTROL_MODES = ("CANNY_EDGE", "SEGMENTATION")
OUTPAINTING_MODES = ("DEFAULT", "PRECISE")
QUALITIES = ("standard", "premium")
TRY_ON_MASK_TYPES = ("IMAGE", "GARMENT", "PROMPT")
# the output of these tasks has the input image's size; width/height "should not be provided"
EDIT_TASKS = ("INPAINTING", "OUTPAINTING", "VIRTUAL_TRY_ON")

MAX_TEXT = 1024
MIN_SIDE, MAX_SIDE, SIDE_STEP = 320, 4096, 16
MAX_ASPECT = 4.0
MAX_PIXELS = 4_194_304  # exclusive: 2048x2048 itself is rejected
DEFAULT_SIDE = 1024
CFG_MIN, CFG_MAX = 1.1, 10.0
# The AWS doc copy says seed max 2,147,483,646 but AWS's own examples and the awslabs MCP server
# use 0..858,993,459; the true server-side maximum is unconfirmed, so we enforce the safe range.
SEED_MAX = 858_993_459
MAX_IMAGES = 5
MAX_COLORS = 10
MAX_VARIATION_IMAGES = 5
# the input byte limit is unconfirmed; 10 MB of image fits well inside the 25 MB request limit
MAX_INPUT_IMAGE_BYTES = 10 * 1024 * 1024
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")


@dataclass(frozen=True)
class RuleViolation:
    """One broken rule, located by its dotted API path."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(out: list, params: Mapping, path: str, key: str, *, required: bool) -> None:
    value = params.get(key)
    if value is None:
        if required:
            out.append(RuleViolation(f"{path}.{key}", "is required"))
        return
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        out.append(RuleViolation(f"{path}.{key}", f"must be 1-{MAX_TEXT} characters"))


def _check_range(out: list, params: Mapping, path: str, key: str, lo: float, hi: float) -> None:
    value = params.get(key)
    if value is not None and not (_is_number(value) and lo <= value <= hi):
        out.append(RuleViolation(f"{path}.{key}", f"must be a number from {lo} to {hi}"))


def _check_enum(out: list, params: Mapping, path: str, key: str, allowed: tuple) -> None:
    value = params.get(key)
    if value is not None and value not in allowed:
        out.append(RuleViolation(f"{path}.{key}", f"must be one of {', '.join(allowed)}"))


def decode_image_field(value: Any) -> bytes | None:
    """Base64-decode an image field; None when it is not valid base64 text."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _open(data: bytes) -> Image.Image | None:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _has_transparency(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "LA"):
        return img.getchannel("A").getextrema()[0] < 255
    return img.mode == "P" and "transparency" in img.info


def check_input_image(data: bytes, field: str) -> list[RuleViolation]:
    """Check one decoded input image: PNG/JPEG, size limits, no transparent pixels."""
    if len(data) > MAX_INPUT_IMAGE_BYTES:
        return [RuleViolation(field, f"image is {len(data)} bytes; the limit is {MAX_INPUT_IMAGE_BYTES}")]
    img = _open(data)
    if img is None or img.format not in ("PNG", "JPEG"):
        return [RuleViolation(field, "must be a base64-encoded PNG or JPEG image")]
    out = []
    w, h = img.size
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        out.append(RuleViolation(field, f"each side must be {MIN_SIDE}-{MAX_SIDE} px, got {w}x{h}"))
    if max(w / h, h / w) > MAX_ASPECT:
        out.append(RuleViolation(field, f"aspect ratio must be between 1:4 and 4:1, got {w}x{h}"))
    if w * h >= MAX_PIXELS:
        out.append(RuleViolation(field, f"must have fewer than {MAX_PIXELS} pixels, got {w}x{h}"))
    if _has_transparency(img):
        out.append(RuleViolation(field, "must not contain transparent or translucent pixels"))
    return out


class _Images:
    """Decodes the request's image fields once and remembers their sizes."""

    def __init__(self, decode: bool):
        self.decode = decode
        self.sizes: dict[str, tuple[int, int]] = {}

    def check(self, out: list, params: Mapping, path: str, key: str, *, required: bool) -> None:
        value = params.get(key)
        field = f"{path}.{key}"
        if value is None:
            if required:
                out.append(RuleViolation(field, "is required"))
            return
        if not isinstance(value, str) or not value:
            out.append(RuleViolation(field, "must be a base64-encoded PNG or JPEG image"))
            return
        if self.decode:
            self._check_bytes(out, value, field)

    def _check_bytes(self, out: list, value: str, field: str) -> None:
        data = decode_image_field(value)
        if data is None:
            out.append(RuleViolation(field, "is not valid base64"))
            return
        problems = check_input_image(data, field)
        out.extend(problems)
        if not problems:
            self.sizes[field] = Image.open(io.BytesIO(data)).size


def _check_mask_colours(out: list, value: str, field: str) -> None:
    img = _open(decode_image_field(value) or b"")
    if img is None:
        return
    colours = img.convert("RGB").getcolors(maxcolors=2)
    if colours is None or any(c not in ((0, 0, 0), (255, 255, 255)) for _, c in colours):
        out.append(RuleViolation(field, "must be pure black (edit) and pure white (keep) only"))


def _check_mask(out: list, params: Mapping, path: str, images: _Images) -> None:
    has_prompt = params.get("maskPrompt") is not None
    has_image = params.get("maskImage") is not None
    if has_prompt == has_image:
        out.append(RuleViolation(f"{path}.maskPrompt", "give exactly one of maskPrompt or maskImage"))
        return
    if has_prompt:
        _check_text(out, params, path, "maskPrompt", required=True)
        return
    images.check(out, params, path, "maskImage", required=True)
    mask_size = images.sizes.get(f"{path}.maskImage")
    image_size = images.sizes.get(f"{path}.image")
    if mask_size and image_size and mask_size != image_size:
        out.append(
            RuleViolation(
                f"{path}.maskImage",
                f"must be the same size as image ({image_size[0]}x{image_size[1]}), got {mask_size[0]}x{mask_size[1]}",
            )
        )
    elif mask_size:
        _check_mask_colours(out, params["maskImage"], f"{path}.maskImage")


def _task_rules(out: list, task: str, params: Mapping, images: _Images) -> None:
    path = PARAMS_KEY[task]
    if task == "TEXT_IMAGE":
        _check_text(out, params, path, "text", required=True)
        _check_text(out, params, path, "negativeText", required=False)
        _check_enum(out, params, path, "style", STYLES)
        images.check(out, params, path, "conditionImage", required=False)
        _check_enum(out, params, path, "controlMode", CONTROL_MODES)
        _check_range(out, params, path, "controlStrength", 0.0, 1.0)
    elif task == "COLOR_GUIDED_GENERATION":
        _check_text(out, params, path, "text", required=True)
        _check_text(out, params, path, "negativeText", required=False)
        _check_colors(out, params.get("colors"), f"{path}.colors")
        images.check(out, params, path, "referenceImage", required=False)
    elif task == "IMAGE_VARIATION":
        _check_variation(out, params, path, images)
    elif task in ("INPAINTING", "OUTPAINTING"):
        images.check(out, params, path, "image", required=True)
        _check_mask(out, params, path, images)
        _check_text(out, params, path, "text", required=False)
        _check_text(out, params, path, "negativeText", required=False)
        if task == "OUTPAINTING":
            _check_enum(out, params, path, "outPaintingMode", OUTPAINTING_MODES)
    elif task == "BACKGROUND_REMOVAL":
        images.check(out, params, path, "image", required=True)
    else:  # VIRTUAL_TRY_ON
        images.check(out, params, path, "sourceImage", required=True)
        images.check(out, params, path, "referenceImage", required=True)
        _check_enum(out, params, path, "maskType", TRY_ON_MASK_TYPES)


def _check_colors(out: list, colors: Any, field: str) -> None:
    if not isinstance(colors, list) or not 1 <= len(colors) <= MAX_COLORS:
        out.append(RuleViolation(field, f"must be a list of 1-{MAX_COLORS} colours"))
        return
    for i, colour in enumerate(colors):
        if not isinstance(colour, str) or not _COLOR_RE.match(colour):
            out.append(RuleViolation(f"{field}[{i}]", 'must be a "#RRGGBB" hex colour'))


def _check_variation(out: list, params: Mapping, path: str, images: _Images) -> None:
    found = params.get("images")
    if not isinstance(found, list) or not 1 <= len(found) <= MAX_VARIATION_IMAGES:
        out.append(RuleViolation(f"{path}.images", f"must be a list of 1-{MAX_VARIATION_IMAGES} images"))
    else:
        for i, value in enumerate(found):
            images.check(out, {f"images[{i}]": value}, path, f"images[{i}]", required=True)
    _check_range(out, params, path, "similarityStrength", 0.2, 1.0)
    _check_text(out, params, path, "text", required=False)
    _check_text(out, params, path, "negativeText", required=False)


def check_size(width: Any, height: Any, field: str = "imageGenerationConfig") -> list[RuleViolation]:
    """Check an output resolution against the Nova Canvas limits."""
    out = []
    for key, side in (("width", width), ("height", height)):
        if not _is_int(side) or not MIN_SIDE <= side <= MAX_SIDE:
            out.append(RuleViolation(f"{field}.{key}", f"must be an integer from {MIN_SIDE} to {MAX_SIDE}"))
        elif side % SIDE_STEP:
            out.append(RuleViolation(f"{field}.{key}", f"must be divisible by {SIDE_STEP}, got {side}"))
    if out:
        return out
    if max(width / height, height / width) > MAX_ASPECT:
        out.append(RuleViolation(field, f"aspect ratio must be between 1:4 and 4:1, got {width}x{height}"))
    if width * height >= MAX_PIXELS:
        out.append(RuleViolation(field, f"width*height must be below {MAX_PIXELS}, got {width}x{height}"))
    return out


def _config_rules(out: list, task: str, config: Any) -> None:
    path = "imageGenerationConfig"
    if config is None:
        return
    if not isinstance(config, Mapping):
        out.append(RuleViolation(path, "must be an object"))
        return
    has_size = config.get("width") is not None or config.get("height") is not None
    if task in EDIT_TASKS and has_size:
        out.append(
            RuleViolation(path, f"width/height must not be set for {task}; the output has the input image's size")
        )
    elif has_size:
        out.extend(check_size(config.get("width", DEFAULT_SIDE), config.get("height", DEFAULT_SIDE)))
    _check_enum(out, config, path, "quality", QUALITIES)
    _check_range(out, config, path, "cfgScale", CFG_MIN, CFG_MAX)
    for key, hi in (("seed", SEED_MAX), ("numberOfImages", MAX_IMAGES)):
        value, lo = config.get(key), 0 if key == "seed" else 1
        if value is not None and not (_is_int(value) and lo <= value <= hi):
            out.append(RuleViolation(f"{path}.{key}", f"must be an integer from {lo} to {hi}"))


def check_image_request(req: Mapping[str, Any], *, decode_images: bool = True) -> list[RuleViolation]:
    """Return every Nova Canvas rule the request breaks (empty list: the request is valid).

    Args:
        req: the JSON body of an image-generation request, as sent (API field names).
        decode_images: decode base64 input images and check format, size and masks; turn off to
            check only the shape of the request cheaply.
    """
    if not isinstance(req, Mapping):
        return [RuleViolation("body", "must be a JSON object")]
    out: list[RuleViolation] = []
    region = req.get("region", DEFAULT_REGION)
    if region not in NOVA_REGIONS:
        out.append(
            RuleViolation("region", f"Nova Canvas is not available in {region}; use one of {', '.join(NOVA_REGIONS)}")
        )
    if req.get("modelId", MODEL_ID) != MODEL_ID:
        out.append(RuleViolation("modelId", f"must be {MODEL_ID}"))
    task = req.get("taskType")
    if task not in TASK_TYPES:
        out.append(RuleViolation("taskType", f"must be one of {', '.join(TASK_TYPES)}"))
        return out
    params = req.get(PARAMS_KEY[task])
    if not isinstance(params, Mapping):
        out.append(RuleViolation(PARAMS_KEY[task], f"is required (an object) for taskType {task}"))
    else:
        _task_rules(out, task, params, _Images(decode_images))
    _config_rules(out, task, req.get("imageGenerationConfig"))
    return out


def _input_image_field(req: Mapping[str, Any]) -> str | None:
    task = req.get("taskType")
    if task in ("INPAINTING", "OUTPAINTING", "BACKGROUND_REMOVAL"):
        return "image"
    return "sourceImage" if task == "VIRTUAL_TRY_ON" else None


def output_size(req: Mapping[str, Any]) -> tuple[int, int]:
    """The (width, height) the service returns for a valid request.

    Edit tasks and background removal keep the input image's size; the others use
    ``imageGenerationConfig`` width/height, 1024 by default.
    """
    key = _input_image_field(req)
    if key is not None:
        params = req.get(PARAMS_KEY[req["taskType"]]) or {}
        data = decode_image_field(params.get(key))
        img = _open(data) if data else None
        if img is not None:
            return img.size
    config = req.get("imageGenerationConfig") or {}
    return config.get("width") or DEFAULT_SIDE, config.get("height") or DEFAULT_SIDE


def number_of_images(req: Mapping[str, Any]) -> int:
    """How many images the request asks for (BACKGROUND_REMOVAL always makes one)."""
    if req.get("taskType") == "BACKGROUND_REMOVAL":
        return 1
    return (req.get("imageGenerationConfig") or {}).get("numberOfImages") or 1


def prompt_texts(req: Mapping[str, Any]) -> list[str]:
    """Every free-text field of the task params (for content moderation)."""
    params = req.get(PARAMS_KEY.get(str(req.get("taskType")), ""), None)
    if not isinstance(params, Mapping):
        return []
    return [v for k in ("text", "negativeText", "maskPrompt") if isinstance(v := params.get(k), str)]
