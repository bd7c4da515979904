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
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from quant_batch.errors import InputError, ObjectNotFound, StorageError
from quant_batch.render.fields import ALIASES, CONFIG, FIELDS, FILE, RenderDefaults, _replace_files
from quant_batch.render.manifest_files import _READERS
from quant_batch.render.resolve import BucketFiles, _Resolver
from quant_batch.render.rows import InputImage, InvalidRow, ManifestProblem, RenderRow
from quant_batch.store.location import display, is_uri
from quant_batch.store.storage_config import StorageConfig

# the field table, the row types and the resolver live in their own modules; their public names
# stay importable from here
__all__ = [
    "ALIASES",
    "CONFIG",
    "FIELDS",
    "FILE",
    "InputImage",
    "InvalidRow",
    "Manifest",
    "ManifestProblem",
    "RenderDefaults",
    "RenderRow",
    "build_request",
    "load_manifest",
]


@dataclass
class Manifest:
    """Rows ready to render plus every problem found; ``problems`` empty means all rows are valid."""

    path: Path | str  # a bucket manifest's URI
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
            raise InputError(
                f"{len(self.problems)} problem(s) in the manifest; fix them and run again:\n{shown}{more}",
                path=str(self.path),
            )


def load_manifest(
    path: Path | str, defaults: RenderDefaults | None = None, storage: StorageConfig | None = None
) -> Manifest:
    """Read, resolve and check every row of a manifest without calling the API.

    Args:
        path: a ``.jsonl``, ``.csv`` or ``.yaml``/``.yml`` file, or its bucket URI
            (``s3://bucket/prompts.jsonl``); input image paths in it are relative to its folder
            (its prefix, in a bucket).
        defaults: values for fields neither the row nor the manifest's ``defaults:`` give.
        storage: endpoint and credentials for a manifest in a bucket (default: the AWS_* chain).

    Returns:
        The valid rows, and every problem (invalid rows are listed in ``invalid_rows``).

    Raises:
        InputError: the file cannot be read or its type is not supported.
        StorageError: the bucket cannot be read (e.g. access denied); names the URI.
    """
    remote = is_uri(path)
    shown = display(path) if remote else str(path)
    suffix = PurePosixPath(shown).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise InputError(f"unsupported manifest type '{suffix}': use .jsonl, .csv or .yaml", path=shown)
    if remote:
        files = BucketFiles.for_manifest(shown, storage)
        text = _decode(files.read_manifest, shown)
        resolver = _Resolver(shown, files, defaults or RenderDefaults())
    else:
        path = Path(path)
        text = _decode(path.read_bytes, shown)
        resolver = _Resolver(shown, path.resolve().parent, defaults or RenderDefaults())
    for raw in reader(text, resolver):
        resolver.add(raw)
    problems = sorted(resolver.problems, key=lambda p: p.line or 0)
    where = shown if remote else Path(path)
    return Manifest(path=where, rows=resolver.rows, problems=problems, invalid_rows=resolver.invalid)


def _decode(read: Callable[[], bytes], shown: str) -> str:
    try:
        text = read().decode("utf-8-sig")
    except (FileNotFoundError, ObjectNotFound):
        raise InputError("manifest not found; check the path", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest: {exc}", path=shown) from exc
    # as text mode reads a file: line numbers count \r\n and a lone \r as one line break
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


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
            data = image.read_bytes()
        except (OSError, StorageError) as exc:
            raise InputError(f"cannot read input image {image.field}: {exc}", path=str(image.path)) from exc
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise InputError(
                f"input image {image.field} changed after the manifest was checked; load the manifest again",
                path=str(image.path),
            )
        encoded[image.field] = base64.b64encode(data).decode("ascii")
    request = _replace_files(row.request, encoded.__getitem__)
    seed = row.seed if seed is None else seed
    if seed is not None and CONFIG in request:
        request[CONFIG]["seed"] = seed
    return request
