"""The rows a manifest resolves to: valid rows, their input images, and the problems found."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant_batch.render.fields import _REVERSE, _leaves, _replace_files

if TYPE_CHECKING:
    from quant_batch.store.storage import Storage


@dataclass(frozen=True)
class InputImage:
    """An input image a row names, checked and hashed at load time."""

    field: str  # API path, e.g. "inPaintingParams.image" or "imageVariationParams.images[1]"
    path: Path | str  # resolved absolute path, or the object's URI for a manifest in a bucket
    sha256: str
    relative: str = ""  # POSIX path from the manifest's folder: what output files record
    key: str = ""  # the object's key in ``storage`` (bucket manifests only)
    storage: Storage | None = dataclasses.field(default=None, compare=False, repr=False)
    """The bucket the image is read from; None: a local file."""

    def read_bytes(self) -> bytes:
        """The image's bytes, from the local file or the bucket."""
        if self.storage is None:
            return Path(self.path).read_bytes()
        return self.storage.read_bytes(self.key)


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
        return {
            reverse.get(path, path): _replace_files(value, files.get)
            for path, value in _leaves(self.request, stop=reverse.__contains__)
        }


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
