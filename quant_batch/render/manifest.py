"""Image manifests: one Nova Canvas request per row, read from .jsonl, .csv or .yaml.

A row is either the API's nested request or a flat, CSV-friendly dict (``FIELDS``), or a mix.
Every row is resolved to the nested request (defaults filled in), checked against the service
rules in :mod:`quant_batch.render.rules` and against the files it names, and keyed. Nothing is
sent anywhere: :func:`load_manifest` reports *all* problems at once, each with its line.

The row key is the sha256 of the canonical JSON of the resolved request (model and region
included) with every input image replaced by ``{"sha256": ...}`` of its bytes, and ``seed`` set
to ``"auto"`` when the row gives none. So editing any parameter or any input image's bytes
gives a new key, while renaming or moving an input image, reordering rows or changing the
row's ``id`` does not: the key names the output, the id only names the file it is written to.
"""

from __future__ import annotations

import base64
import csv
import difflib
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quant_batch.errors import InputError
from quant_batch.hashing import canonical_json
from quant_batch.render.rules import (
    DEFAULT_REGION,
    MODEL_ID,
    PARAMS_KEY,
    TASK_TYPES,
    check_image_request,
    check_input_image,
)

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
    **{k: _Field("str", {_TRY_ON: f"{_VTO}.garmentBasedMask.garmentStyling.{k}"})
       for k in ("longSleeveStyle", "tuckingStyle", "outerLayerStyle")},
    **{k: _Field("str", {_TRY_ON: f"{_VTO}.maskExclusions.{k}"})
       for k in ("preserveBodyPose", "preserveHands", "preserveFace")},
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
_KINDS = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
          "colors": "a list of colours", "image": "a file path", "images": "a list of file paths"}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}")


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


@dataclass(frozen=True)
class InputImage:
    """An input image a row names, checked and hashed at load time."""

    field: str  # API path, e.g. "inPaintingParams.image" or "imageVariationParams.images[1]"
    path: Path  # resolved absolute path
    sha256: str
    relative: str = ""  # POSIX path from the manifest's folder: what output files record


@dataclass(frozen=True)
class RenderRow:
    """One valid manifest row, resolved to an API request with images left as placeholders."""

    id: str
    line: int
    key: str
    task_type: str
    prompt: str | None
    seed: int | None  # None: the pipeline picks one at render time and records it
    request: dict[str, Any]  # each input image is {"$file": "<field>"}; no image bytes in memory
    inputs: tuple[InputImage, ...]

    def params(self) -> dict[str, Any]:
        """The request as flat fields (``FIELDS`` names) for a results table; images as paths."""
        # relative to the manifest, so an output folder can be moved or published
        files = {i.field: i.relative or str(i.path) for i in self.inputs}
        reverse = _REVERSE[self.task_type]
        return {reverse.get(path, path): _replace_files(value, files.get)
                for path, value in _leaves(self.request, stop=reverse.__contains__)}


@dataclass(frozen=True)
class ManifestProblem:
    """Something to fix in the manifest, located by file, line and API field."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class InvalidRow:
    """A row that cannot be rendered, kept so the pipeline can write it to its errors table."""

    line: int | None
    id: str | None
    raw: Any  # the row as read (a dict), or the text of a line that did not parse
    problems: list[ManifestProblem]

    @property
    def reason(self) -> str:
        return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in self.problems)


@dataclass
class Manifest:
    """Rows ready to render plus every problem found; ``problems`` empty means all rows are valid."""

    path: Path
    rows: list[RenderRow]
    problems: list[ManifestProblem]
    invalid_rows: list[InvalidRow] = field(default_factory=list)

    @property
    def invalid_lines(self) -> list[int]:
        return sorted({r.line for r in self.invalid_rows if r.line})

    @property
    def file_problems(self) -> list[ManifestProblem]:
        """Problems that belong to no row: ``defaults:``, a CSV header, the YAML structure."""
        in_rows = {id(p) for r in self.invalid_rows for p in r.problems}
        return [p for p in self.problems if id(p) not in in_rows]

    def raise_for_problems(self) -> None:
        """Raise one InputError listing every problem, if there are any."""
        if self.problems:
            shown = "\n".join(f"  {p}" for p in self.problems[:50])
            more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
            raise InputError(f"{len(self.problems)} problem(s) in the manifest; fix them and run "
                             f"again:\n{shown}{more}", path=str(self.path))


@dataclass
class _RawRow:
    line: int | None
    data: Any  # dict when it parsed
    error: str | None = None
    from_csv: bool = False


def load_manifest(path: Path | str, defaults: RenderDefaults | None = None) -> Manifest:
    """Read, resolve and check every row of a manifest without calling the API.

    Args:
        path: a ``.jsonl``, ``.csv`` or ``.yaml``/``.yml`` file; input image paths in it are
            relative to its folder.
        defaults: values for fields neither the row nor the manifest's ``defaults:`` give.

    Returns:
        The valid rows, and every problem (invalid rows are listed in ``invalid_rows``).

    Raises:
        InputError: the file cannot be read or its type is not supported.
    """
    shown = str(path)
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"unsupported manifest type '{path.suffix}': use .jsonl, .csv or .yaml", path=shown)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("manifest not found; check the path", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest: {exc}", path=shown) from exc
    resolver = _Resolver(shown, path.resolve().parent, defaults or RenderDefaults())
    for raw in reader(text, resolver):
        resolver.add(raw)
    problems = sorted(resolver.problems, key=lambda p: p.line or 0)
    return Manifest(path=path, rows=resolver.rows, problems=problems, invalid_rows=resolver.invalid)


def build_request(row: RenderRow, seed: int | None) -> dict[str, Any]:
    """The request body to send: input images read, checked against their hash and base64-encoded.

    Args:
        row: a row from :func:`load_manifest`.
        seed: the seed to render with; None keeps the row's own seed (or the service default).
            For a row with its own seed pass None or ``row.seed``: its key was made with it.

    Raises:
        InputError: an input image is gone or its bytes changed since the manifest was loaded.
    """
    encoded = {}
    for image in row.inputs:
        try:
            data = image.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read input image {image.field}: {exc}", path=str(image.path)) from exc
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise InputError(f"input image {image.field} changed after the manifest was checked; "
                             "load the manifest again", path=str(image.path))
        encoded[image.field] = base64.b64encode(data).decode("ascii")
    request = _replace_files(row.request, encoded.__getitem__)
    seed = row.seed if seed is None else seed
    if seed is not None and CONFIG in request:
        request[CONFIG]["seed"] = seed
    return request


class _Resolver:
    """Turns raw rows into RenderRows or problems, remembering ids, keys and file checks."""

    def __init__(self, shown: str, base: Path, defaults: RenderDefaults):
        self.shown, self.base, self.defaults = shown, base, defaults
        self.rows: list[RenderRow] = []
        self.problems: list[ManifestProblem] = []
        self.invalid: list[InvalidRow] = []
        self._ids: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._files: dict[tuple[Path, str], tuple[str | None, list[tuple[str, str]]]] = {}
        self._masks: dict[tuple, list[tuple[str, str]]] = {}

    def problem(self, line: int | None, fld: str | None, message: str) -> ManifestProblem:
        found = ManifestProblem(self.shown, line, fld, message)
        self.problems.append(found)
        return found

    def set_defaults(self, data: Any, line: int | None) -> None:
        """Apply a manifest-level ``defaults:`` mapping on top of the caller's defaults."""
        if not isinstance(data, Mapping):
            self.problem(line, "defaults", "must be a mapping of field: value")
            return
        allowed = list(RenderDefaults.model_fields)
        good = {}
        for key, value in data.items():
            if key not in allowed:
                self.problem(line, f"defaults.{key}", _unknown(str(key), allowed))
            elif value is not None:
                good[key] = value
        try:
            checked = RenderDefaults.model_validate(good)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                self.problem(line, f"defaults.{loc}", err["msg"])
                good.pop(err["loc"][0], None)
            checked = RenderDefaults.model_validate(good)
        self.defaults = self.defaults.model_copy(update={k: getattr(checked, k) for k in good})

    def add(self, raw: _RawRow) -> None:
        before = len(self.problems)
        if raw.error is not None:
            self.problem(raw.line, None, raw.error)
            row = None
        else:
            row = self._resolve(raw)
        if row is not None and len(self.problems) == before:
            # only valid rows can clash: the ledger would treat the second as already rendered
            if (first := self._keys.setdefault(row.key, row.line)) != row.line:
                self.problem(row.line, None, f"same request as line {first}; each request is rendered "
                             "once (change a parameter or the seed, or raise numberOfImages)")
        if row is None or len(self.problems) > before:
            row_id = raw.data.get("id") if isinstance(raw.data, Mapping) else None
            self.invalid.append(InvalidRow(raw.line, None if row_id is None else str(row_id),
                                           raw.data, self.problems[before:]))
        else:
            self.rows.append(row)

    def _resolve(self, raw: _RawRow) -> RenderRow | None:
        line, data = raw.line, raw.data
        if not isinstance(data, Mapping):
            self.problem(line, None, f"a row must be a mapping of field: value, got {type(data).__name__}")
            return None
        flat = _Flattener(self, line, raw.from_csv).flatten(data)
        if flat is None:
            return None
        task = flat["taskType"]
        for name, value in self.defaults.model_dump().items():
            if name not in flat and value is not None and task in FIELDS[name].paths:
                flat[name] = value
        request, inputs = self._build(flat, line)
        # the files were checked above; the rules only need a non-empty string in their place
        checked = _replace_files(request, lambda f: "file")
        for v in check_image_request(checked, decode_images=False):
            self.problem(line, v.field, v.message)
        self._check_mask_pair(task, inputs, line)
        key = _row_key(request, inputs)
        row_id = self._row_id(data.get("id"), key, line)
        if row_id is None:
            return None
        return RenderRow(id=row_id, line=line, key=key, task_type=task, prompt=flat.get("prompt"),
                         seed=flat.get("seed"), request=request, inputs=tuple(inputs))

    def _build(self, flat: dict[str, Any], line: int) -> tuple[dict[str, Any], list[InputImage]]:
        task = flat["taskType"]
        if task == _TRY_ON and "maskType" not in flat:
            inferred = [t for t, n in (("IMAGE", "maskImage"), ("GARMENT", "garmentClass"),
                                       ("PROMPT", "maskPrompt")) if n in flat]
            if len(inferred) == 1:
                flat["maskType"] = inferred[0]
        request: dict[str, Any] = {"taskType": task}
        inputs: list[InputImage] = []
        for name, value in sorted(flat.items(), key=lambda kv: _ORDER[kv[0]]):
            path = FIELDS[name].paths[task]
            if not path:
                continue
            if "{mask}" in path:
                branch = _MASK_BRANCH.get(flat.get("maskType"))
                if branch is None:
                    self.problem(line, name, "applies only with maskType GARMENT or PROMPT")
                    continue
                path = path.format(mask=branch)
            if FIELDS[name].kind == "image":
                value = self._input(path, value, line, inputs)
            elif FIELDS[name].kind == "images":
                value = [self._input(f"{path}[{i}]", v, line, inputs) for i, v in enumerate(value)]
            _set(request, path, value)
        return request, inputs

    def _input(self, fld: str, value: str, line: int, inputs: list[InputImage]) -> dict[str, str]:
        placeholder = {FILE: fld}
        if value.startswith("data:") or (len(value) >= 64 and "." not in value and _BASE64.fullmatch(value)):
            self.problem(line, fld, "give a file path relative to the manifest, not inline image data")
            return placeholder
        try:
            path = (self.base / Path(value).expanduser()).resolve()
        except (OSError, ValueError, RuntimeError):
            self.problem(line, fld, f"not a usable file path: {_show(value)}")
            return placeholder
        if (path, fld) not in self._files:
            self._files[path, fld] = _check_file(path, value, fld)
        sha, problems = self._files[path, fld]
        for where, message in problems:
            self.problem(line, where, message)
        inputs.append(InputImage(fld, path, sha or "", _relative(path, self.base)))
        return placeholder

    def _check_mask_pair(self, task: str, inputs: list[InputImage], line: int) -> None:
        """Mask size and colours need both images decoded: ask the rules once per (image, mask)."""
        files = {i.field.rsplit(".", 1)[-1]: i for i in inputs}
        if task not in _EDIT or "image" not in files or "maskImage" not in files:
            return
        pair = (task, files["image"].sha256, files["maskImage"].sha256)
        if not all(pair[1:]):  # a file problem was already reported
            return
        if pair not in self._masks:
            params = {k: base64.b64encode(files[k].path.read_bytes()).decode() for k in ("image", "maskImage")}
            found = check_image_request({"taskType": task, PARAMS_KEY[task]: params})
            self._masks[pair] = [(v.field, v.message) for v in found if v.field.endswith(".maskImage")]
        for where, message in self._masks[pair]:
            self.problem(line, where, message)

    def _row_id(self, given: Any, key: str, line: int) -> str | None:
        if given is None or given == "":
            # identical rows share this id; the duplicate-request check reports them instead
            self._ids.setdefault(f"img-{key[:12]}", line)
            return f"img-{key[:12]}"
        if isinstance(given, bool) or not isinstance(given, (str, int)):
            self.problem(line, "id", f"must be a string, got {_show(given)}")
            return None
        if any(bad in str(given) for bad in ("/", "\\", "..")) or Path(str(given)).is_absolute():
            self.problem(line, "id", f"id must be a plain name; got '{given}'")
            return None
        row_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(given)).lstrip(".")[:100]
        if not row_id:
            self.problem(line, "id", f"id has no usable characters; got '{given}'")
            return None
        if (first := self._ids.setdefault(row_id, line)) != line:
            self.problem(line, "id", f"duplicate id '{row_id}' (first used on line {first})")
            return None
        return row_id


class _Flattener:
    """Maps one row (nested API form, flat form, or a mix) onto ``FIELDS`` names, type-checked."""

    def __init__(self, resolver: _Resolver, line: int, from_csv: bool):
        self.r, self.line, self.from_csv = resolver, line, from_csv
        self.flat: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def flatten(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        task = self._task(data)
        if task is None:
            return None
        self.flat["taskType"], self.origin["taskType"] = task, "taskType"
        for key, value in data.items():
            key = str(key)
            if value is None or key in ("id", "taskType", "task"):
                continue
            if key == CONFIG or key in PARAMS_KEY.values():
                self._nested(task, key, value)
            elif (name := ALIASES.get(key, key)) in FIELDS:
                if task in FIELDS[name].paths:
                    self._put(name, key, value)
                else:
                    self.r.problem(self.line, key, f"does not apply to taskType {task}")
            else:
                known = [*FIELDS, *ALIASES, "id", CONFIG, *PARAMS_KEY.values()]
                self.r.problem(self.line, key, _unknown(key, known))
        return self.flat

    def _task(self, data: Mapping[str, Any]) -> str | None:
        given = [(k, data[k]) for k in ("taskType", "task") if data.get(k) not in (None, "")]
        if len(given) == 2 and given[0][1] != given[1][1]:
            self.r.problem(self.line, "taskType", "given twice: 'taskType' and 'task' differ")
            return None
        task = given[0][1] if given else "TEXT_IMAGE"
        task = task.strip() if isinstance(task, str) else task
        if task not in TASK_TYPES:
            close = difflib.get_close_matches(str(task).upper(), TASK_TYPES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(TASK_TYPES)}"
            self.r.problem(self.line, given[0][0], f"unknown task type {_show(task)} ({hint})")
            return None
        return task

    def _nested(self, task: str, key: str, value: Any) -> None:
        if key != CONFIG and key != PARAMS_KEY[task]:
            self.r.problem(self.line, key, f"does not apply to taskType {task} (use '{PARAMS_KEY[task]}')")
        elif not isinstance(value, Mapping):
            self.r.problem(self.line, key, f"must be a mapping, got {_show(value)}")
        else:
            reverse = _REVERSE[task]
            for path, leaf in _leaves({key: value}, stop=lambda p: p in reverse):
                if path in reverse:
                    self._put(reverse[path], path, leaf)
                elif any(p.startswith(path + ".") for p in reverse) and leaf == {}:
                    continue  # an empty branch, e.g. "maskExclusions": {}
                elif path.startswith(CONFIG) and path[len(CONFIG) + 1:] in FIELDS:
                    self.r.problem(self.line, path, f"does not apply to taskType {task}")
                else:
                    self.r.problem(self.line, path, _unknown(path, [p for p in reverse if "." in p]))

    def _put(self, name: str, origin: str, value: Any) -> None:
        if self.from_csv and isinstance(value, str) and value.strip() == "":
            return
        if name in self.flat:
            self.r.problem(self.line, origin, f"given twice: '{self.origin[name]}' and '{origin}'")
            return
        try:
            self.flat[name] = _coerce(FIELDS[name].kind, value, self.from_csv)
            self.origin[name] = origin
        except ValueError as exc:
            self.r.problem(self.line, origin, str(exc))


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


def _check_file(path: Path, given: str, fld: str) -> tuple[str | None, list[tuple[str, str]]]:
    """sha256 of an input image and its problems (read once per file and field)."""
    try:
        if path.is_dir():
            return None, [(fld, f"is a folder, not a file: {given}")]
        data = path.read_bytes()
    except FileNotFoundError:
        return None, [(fld, f"file not found: {given} (looked at {path})")]
    except OSError as exc:
        return None, [(fld, f"cannot read {_show(given)}: {exc.strerror or exc}")]
    found = check_input_image(data, fld)
    problems = [(v.field, f"{v.message.replace('a base64-encoded ', 'a ')} ({given})") for v in found]
    return (None if problems else hashlib.sha256(data).hexdigest()), problems


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return str(path)


def _row_key(request: dict[str, Any], inputs: list[InputImage]) -> str:
    shas = {i.field: i.sha256 for i in inputs}
    keyed = _replace_files(request, lambda f: {"sha256": shas.get(f)})
    if CONFIG in keyed:
        keyed[CONFIG].setdefault("seed", "auto")
    return hashlib.sha256(canonical_json(keyed)).hexdigest()


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


def _read_jsonl(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield _RawRow(number, json.loads(line))
        except json.JSONDecodeError as exc:
            yield _RawRow(number, line, f"invalid JSON: {exc.msg} (column {exc.colno})")


def _read_csv(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    for name in {h for h in header if header.count(h) > 1 or not h}:
        resolver.problem(1, name or None, "column names must be unique and not empty")
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _RawRow(start, None, f"unreadable CSV: {exc}")
            return
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield _RawRow(start, cells, f"row has {len(cells)} cells but the header has {len(header)}")
            continue
        yield _RawRow(start, {h: c for h, c in zip(header, cells) if h and c.strip()}, from_csv=True)


def _read_yaml(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    """Rows of a YAML list, or of ``{defaults:, rows:}``; lines come from each row's node."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        yield from _salvage_yaml(text, exc, resolver)
        return
    yield from _yaml_root(root, resolver, strict=True)


def _yaml_root(root: yaml.Node | None, resolver: _Resolver, strict: bool) -> Iterator[_RawRow]:
    rows: Any = root
    if isinstance(root, yaml.MappingNode):
        rows = None
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            if key_node.value == "defaults":
                try:
                    resolver.set_defaults(_construct(value_node), line)
                except (yaml.YAMLError, ValueError) as exc:
                    resolver.problem(line, "defaults", f"invalid YAML: {exc}")
            elif key_node.value == "rows":
                rows = value_node
            else:
                resolver.problem(line, str(key_node.value), _unknown(str(key_node.value), ["defaults", "rows"]))
    if isinstance(rows, yaml.SequenceNode):
        for node in rows.value:
            try:
                yield _RawRow(node.start_mark.line + 1, _construct(node))
            except (yaml.YAMLError, ValueError) as exc:
                yield _RawRow(node.start_mark.line + 1, None, f"invalid YAML: {exc}")
    elif rows is not None and not (rows.tag.endswith(":null") and not strict):
        resolver.problem(rows.start_mark.line + 1, None,
                         "expected a list of rows, or a mapping with 'defaults' and 'rows'")


def _salvage_yaml(text: str, error: yaml.YAMLError, resolver: _Resolver) -> Iterator[_RawRow]:
    """After a syntax error, parse each top-level list item on its own so good rows still load.

    Lines outside the part being parsed are blanked rather than cut, so every mark keeps its
    real line number. The rest (``defaults:``, ``rows:``) is parsed first, for its defaults.
    """
    lines = text.split("\n")
    items = [i for i, s in enumerate(lines) if re.match(r" *-( |$)", s)]
    indent = min((_indent(lines[i]) for i in items), default=0)
    starts = [i for i in items if _indent(lines[i]) == indent]
    chunks, rest = [], list(lines)
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        # a row ends at the next item or at a less indented line such as a following top-level key
        end = next((i for i in range(a + 1, b) if lines[i].strip() and not lines[i].lstrip().startswith("#")
                    and _indent(lines[i]) <= indent), b)
        chunks.append((a, end))
        rest[a:end] = [""] * (end - a)
    failed = False
    try:
        head = yaml.compose("\n".join(rest), Loader=yaml.SafeLoader)
        if isinstance(head, yaml.MappingNode):
            yield from _yaml_root(head, resolver, strict=False)
    except yaml.YAMLError as exc:
        failed = True
        resolver.problem(_yaml_line(exc, 0), None, f"invalid YAML: {_yaml_reason(exc)}")
    for a, end in chunks:
        try:
            node = yaml.compose("\n" * a + "\n".join(lines[a:end]), Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            failed = True
            yield _RawRow(a + 1, "\n".join(lines[a:end]),
                          f"invalid YAML: {_yaml_reason(exc)} (line {_yaml_line(exc, a)})")
            continue
        yield from _yaml_root(node, resolver, strict=False)
    if not failed:  # the error is not inside one row: report it where yaml found it
        resolver.problem(_yaml_line(error, 0), None, f"invalid YAML: {_yaml_reason(error)}")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _yaml_line(exc: yaml.YAMLError, fallback: int) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line if mark else fallback) + 1


def _yaml_reason(exc: yaml.YAMLError) -> str:
    return " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc)


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


_READERS = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".csv": _read_csv,
            ".yaml": _read_yaml, ".yml": _read_yaml}
