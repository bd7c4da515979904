"""The flat fields of an image manifest row: where each goes in the API request, and its type.

``FIELDS`` maps each flat, CSV-friendly name to its dotted path in the nested Nova Canvas request,
per task type; :func:`_coerce` checks (and for CSV cells converts) one value against its kind.
The small tree helpers below walk and rebuild nested requests that hold ``{"$file": ...}``
placeholders in place of input images.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quant_batch.render.rules import DEFAULT_REGION, MODEL_ID, PARAMS_KEY, TASK_TYPES

FILE = "$file"  # placeholder key: {"$file": "<api path>"} stands for an input image in RenderRow.request
CONFIG = "imageGenerationConfig"
_GENERATE = ("TEXT_IMAGE", "COLOR_GUIDED_GENERATION", "IMAGE_VARIATION")
_EDIT = ("INPAINTING", "OUTPAINTING")
_CONFIGURED = tuple(t for t in TASK_TYPES if t != "BACKGROUND_REMOVAL")
_TRY_ON = "VIRTUAL_TRY_ON"
_VTO = PARAMS_KEY[_TRY_ON]


class RenderDefaults(BaseModel):
    """Values for fields a row leaves out (row > manifest ``defaults:`` > these)."""

    model_config = ConfigDict(extra="forbid")

    modelId: str = Field(MODEL_ID, description="Image model id.")
    region: str = Field(DEFAULT_REGION, description="AWS region the request runs in.")
    width: int = Field(1024, description="Output width in px (generation tasks only).")
    height: int = Field(1024, description="Output height in px (generation tasks only).")
    quality: str = Field("standard", description="'standard' or 'premium'.")
    cfgScale: float = Field(6.5, description="Prompt adherence, 1.1-10.")
    style: str | None = Field(None, description="Visual style preset for TEXT_IMAGE rows.")
    numberOfImages: int = Field(1, description="Images per request, 1-5.")
    negativeText: str | None = Field(None, description="What to keep out of every image.")


@dataclass(frozen=True)
class _Field:
    kind: str  # str | int | float | bool | colors | image | images
    paths: Mapping[str, str]  # task type -> dotted API path


def _params(tasks: tuple[str, ...], name: str) -> dict[str, str]:
    return {t: f"{PARAMS_KEY[t]}.{name}" for t in tasks}


def _config(tasks: tuple[str, ...], name: str) -> dict[str, str]:
    return {t: f"{CONFIG}.{name}" for t in tasks}


_ALL = {t: "" for t in TASK_TYPES}
_TEXT = _GENERATE + _EDIT
# flat name -> where it goes in the nested request, per task type ("{mask}" is resolved from maskType)
FIELDS: dict[str, _Field] = {
    "taskType": _Field("str", _ALL),
    "modelId": _Field("str", {t: "modelId" for t in TASK_TYPES}),
    "region": _Field("str", {t: "region" for t in TASK_TYPES}),
    "prompt": _Field("str", _params(_TEXT, "text")),
    "negativeText": _Field("str", _params(_TEXT, "negativeText")),
    "style": _Field("str", _params(("TEXT_IMAGE",), "style")),
    "conditionImage": _Field("image", _params(("TEXT_IMAGE",), "conditionImage")),
    "controlMode": _Field("str", _params(("TEXT_IMAGE",), "controlMode")),
    "controlStrength": _Field("float", _params(("TEXT_IMAGE",), "controlStrength")),
    "colors": _Field("colors", _params(("COLOR_GUIDED_GENERATION",), "colors")),
    "referenceImage": _Field("image", _params(("COLOR_GUIDED_GENERATION", _TRY_ON), "referenceImage")),
    "images": _Field("images", _params(("IMAGE_VARIATION",), "images")),
    "similarityStrength": _Field("float", _params(("IMAGE_VARIATION",), "similarityStrength")),
    "image": _Field("image", _params(_EDIT + ("BACKGROUND_REMOVAL",), "image")),
    "maskImage": _Field("image", {**_params(_EDIT, "maskImage"), _TRY_ON: f"{_VTO}.imageBasedMask.maskImage"}),
    "maskPrompt": _Field("str", {**_params(_EDIT, "maskPrompt"), _TRY_ON: f"{_VTO}.promptBasedMask.maskPrompt"}),
    "outPaintingMode": _Field("str", _params(("OUTPAINTING",), "outPaintingMode")),
    "sourceImage": _Field("image", _params((_TRY_ON,), "sourceImage")),
    "maskType": _Field("str", _params((_TRY_ON,), "maskType")),
    "garmentClass": _Field("str", {_TRY_ON: f"{_VTO}.garmentBasedMask.garmentClass"}),
    "maskShape": _Field("str", {_TRY_ON: f"{_VTO}.{{mask}}.maskShape"}),
    **{
        k: _Field("str", {_TRY_ON: f"{_VTO}.garmentBasedMask.garmentStyling.{k}"})
        for k in ("longSleeveStyle", "tuckingStyle", "outerLayerStyle")
    },
    **{
        k: _Field("str", {_TRY_ON: f"{_VTO}.maskExclusions.{k}"})
        for k in ("preserveBodyPose", "preserveHands", "preserveFace")
    },
    "mergeStyle": _Field("str", _params((_TRY_ON,), "mergeStyle")),
    "returnMask": _Field("bool", _params((_TRY_ON,), "returnMask")),
    "width": _Field("int", _config(_GENERATE, "width")),
    "height": _Field("int", _config(_GENERATE, "height")),
    "quality": _Field("str", _config(_CONFIGURED, "quality")),
    "cfgScale": _Field("float", _config(_CONFIGURED, "cfgScale")),
    "seed": _Field("int", _config(_CONFIGURED, "seed")),
    "numberOfImages": _Field("int", _config(_CONFIGURED, "numberOfImages")),
}
ALIASES = {"text": "prompt", "task": "taskType"}
_ORDER = {name: i for i, name in enumerate(FIELDS)}
_MASK_BRANCH = {"GARMENT": "garmentBasedMask", "PROMPT": "promptBasedMask"}
_KINDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "colors": "a list of colours",
    "image": "a file path",
    "images": "a list of file paths",
}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _api_paths(task: str) -> dict[str, str]:
    """API path -> flat name for one task type (both try-on mask branches for maskShape)."""
    out = {}
    for name, spec in FIELDS.items():
        path = spec.paths.get(task)
        if path and "{mask}" in path:
            out.update({path.format(mask=b): name for b in _MASK_BRANCH.values()})
        elif path:
            out[path] = name
    return out


_REVERSE = {task: _api_paths(task) for task in TASK_TYPES}


def _coerce(kind: str, value: Any, from_csv: bool) -> Any:
    """Check (and for CSV cells, convert) one value; ValueError says what was expected."""
    text = value.strip() if isinstance(value, str) else None
    try:
        if kind == "int" and not isinstance(value, bool):
            if from_csv and text is not None:
                return int(float(text)) if re.fullmatch(r"-?\d+(\.0*)?", text) else int(text)
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int):
                return value
        elif kind == "float" and not isinstance(value, bool):
            if from_csv and text is not None:
                return float(text)
            if isinstance(value, (int, float)):
                return float(value)
        elif kind == "bool":
            if from_csv and text is not None and text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            if isinstance(value, bool):
                return value
        elif kind == "colors":
            if isinstance(value, str):
                return [c for c in re.split(r"[\s,;]+", value) if c]
            if isinstance(value, list) and all(isinstance(c, str) for c in value):
                return list(value)
        elif kind == "images":
            if isinstance(value, str):
                return [p.strip() for p in value.split(";") if p.strip()]
            if isinstance(value, list) and value and all(isinstance(p, str) and p for p in value):
                return list(value)
        elif kind == "image" and isinstance(value, str) and text:
            return text
        elif kind == "str" and isinstance(value, str):
            return text if from_csv else value
    except ValueError:
        pass
    raise ValueError(f"expected {_KINDS[kind]}, got {_show(value)}")


def _replace_files(value: Any, new: Any) -> Any:
    """A copy of ``value`` with every {"$file": field} placeholder replaced by ``new(field)``."""
    if isinstance(value, dict):
        if set(value) == {FILE}:
            return new(value[FILE])
        return {k: _replace_files(v, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_files(v, new) for v in value]
    return value


def _leaves(value: Mapping[str, Any], stop: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf: lists, image placeholders and paths where ``stop`` says so."""
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and item and set(item) != {FILE} and not stop(path):
            yield from _leaves(item, stop, path + ".")
        else:
            yield path, item


def _set(request: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        request = request.setdefault(part, {})
    request[last] = value


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"unknown field '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
