"""Resolving manifest rows: flat or nested input to the nested API request, checked and keyed.

:class:`_Resolver` turns each raw row into a :class:`RenderRow` or a list of problems; it remembers
ids, keys and file checks across rows. :class:`_Flattener` maps one row onto ``FIELDS`` names.
The row key is explained in :mod:`quant_batch.render.manifest`.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from quant_batch.errors import ObjectNotFound, StorageError
from quant_batch.hashing import canonical_json
from quant_batch.render.fields import (
    _EDIT,
    _MASK_BRANCH,
    _ORDER,
    _REVERSE,
    _TRY_ON,
    ALIASES,
    CONFIG,
    FIELDS,
    FILE,
    RenderDefaults,
    _coerce,
    _leaves,
    _replace_files,
    _set,
    _show,
    _unknown,
)
from quant_batch.render.manifest_files import _RawRow
from quant_batch.render.rows import InputImage, InvalidRow, ManifestProblem, RenderRow
from quant_batch.render.rules import PARAMS_KEY, TASK_TYPES, check_image_request, check_input_image
from quant_batch.store.location import is_uri
from quant_batch.store.storage_config import StorageConfig

if TYPE_CHECKING:
    from quant_batch.store.storage import Storage

_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}")


class BucketFiles:
    """Where the input images of a manifest in a bucket are: keys relative to its prefix."""

    def __init__(self, bucket: Storage, manifest_key: str):
        self.bucket = bucket
        """The whole bucket: a row may name ``../shared/x.png`` above the manifest's prefix."""
        self.manifest_key = manifest_key
        self.folder = posixpath.dirname(manifest_key)

    @classmethod
    def for_manifest(cls, uri: str, config: StorageConfig | None) -> BucketFiles:
        from quant_batch.store.storage import open_storage

        parts = urlsplit(uri)
        return cls(open_storage(f"{parts.scheme}://{parts.netloc}", config), parts.path.strip("/"))

    def read_manifest(self) -> bytes:
        return self.bucket.read_bytes(self.manifest_key)

    def locate(self, value: str) -> str | None:
        """The key a row's file value names, or None when it leaves the bucket or is a local path."""
        if is_uri(value):
            key = value[len(self.bucket.uri) + 1 :] if value.startswith(self.bucket.uri + "/") else ""
        elif value.startswith(("/", "~")) or "\\" in value:
            key = ""
        else:
            key = posixpath.normpath(posixpath.join(self.folder, value))
        return None if not key or key in (".", "..") or key.startswith("../") else key

    def relative(self, key: str) -> str:
        return posixpath.relpath(key, self.folder or ".")


class _Resolver:
    """Turns raw rows into RenderRows or problems, remembering ids, keys and file checks."""

    def __init__(self, shown: str, base: Path | BucketFiles, defaults: RenderDefaults):
        self.shown, self.base, self.defaults = shown, base, defaults
        self.rows: list[RenderRow] = []
        self.problems: list[ManifestProblem] = []
        self.invalid: list[InvalidRow] = []
        self._ids: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._files: dict[tuple[Path | str, str], tuple[str | None, list[tuple[str, str]]]] = {}
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
                self.problem(
                    row.line,
                    None,
                    f"same request as line {first}; each request is rendered "
                    "once (change a parameter or the seed, or raise numberOfImages)",
                )
        if row is None or len(self.problems) > before:
            row_id = raw.data.get("id") if isinstance(raw.data, Mapping) else None
            self.invalid.append(
                InvalidRow(raw.line, None if row_id is None else str(row_id), raw.data, self.problems[before:])
            )
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
        return RenderRow(
            id=row_id,
            line=line,
            key=key,
            task_type=task,
            prompt=flat.get("prompt"),
            seed=flat.get("seed"),
            request=request,
            inputs=tuple(inputs),
        )

    def _build(self, flat: dict[str, Any], line: int) -> tuple[dict[str, Any], list[InputImage]]:
        task = flat["taskType"]
        if task == _TRY_ON and "maskType" not in flat:
            inferred = [
                t
                for t, n in (("IMAGE", "maskImage"), ("GARMENT", "garmentClass"), ("PROMPT", "maskPrompt"))
                if n in flat
            ]
            if len(inferred) == 1:
                flat["maskType"] = inferred[0]
        request: dict[str, Any] = {"taskType": task}
        inputs: list[InputImage] = []
        for name, value in sorted(flat.items(), key=lambda kv: _ORDER[kv[0]]):
            path = FIELDS[name].paths[task]
            if not path:
                continue
            if "{mask}" in path:
                branch = _MASK_BRANCH.get(flat.get("maskType", ""))
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
        if isinstance(self.base, BucketFiles):
            self._bucket_input(self.base, fld, value, line, inputs)
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

    def _bucket_input(self, files: BucketFiles, fld: str, value: str, line: int, inputs: list[InputImage]) -> None:
        key = files.locate(value)
        if key is None:
            self.problem(line, fld, f"give a path relative to the manifest, inside its bucket: {_show(value)}")
            return
        uri = files.bucket.uri_of(key)
        if (uri, fld) not in self._files:
            self._files[uri, fld] = _check_object(files.bucket, key, value, fld)
        sha, problems = self._files[uri, fld]
        for where, message in problems:
            self.problem(line, where, message)
        inputs.append(InputImage(fld, uri, sha or "", files.relative(key), key=key, storage=files.bucket))

    def _check_mask_pair(self, task: str, inputs: list[InputImage], line: int) -> None:
        """Mask size and colours need both images decoded: ask the rules once per (image, mask)."""
        files = {i.field.rsplit(".", 1)[-1]: i for i in inputs}
        if task not in _EDIT or "image" not in files or "maskImage" not in files:
            return
        pair = (task, files["image"].sha256, files["maskImage"].sha256)
        if not all(pair[1:]):  # a file problem was already reported
            return
        if pair not in self._masks:
            params = {k: base64.b64encode(files[k].read_bytes()).decode() for k in ("image", "maskImage")}
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
                elif path.startswith(CONFIG) and path[len(CONFIG) + 1 :] in FIELDS:
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
    return _check_bytes(data, given, fld)


def _check_object(bucket: Storage, key: str, given: str, fld: str) -> tuple[str | None, list[tuple[str, str]]]:
    """:func:`_check_file` for an object of a bucket manifest."""
    try:
        data = bucket.read_bytes(key)
    except ObjectNotFound:
        return None, [(fld, f"file not found: {given} (looked at {bucket.uri_of(key)})")]
    except StorageError as exc:  # names the URI, never a credential
        return None, [(fld, f"cannot read {_show(given)}: {exc}")]
    return _check_bytes(data, given, fld)


def _check_bytes(data: bytes, given: str, fld: str) -> tuple[str | None, list[tuple[str, str]]]:
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
