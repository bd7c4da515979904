"""Rendering stage: image manifests in, Nova Canvas requests out.

``manifest`` reads and checks the rows a user wrote (``fields`` is the flat field table,
``resolve`` turns rows into requests, ``manifest_files`` reads .jsonl/.csv/.yaml, ``rows`` holds
the row types); ``rules`` holds the service's request rules.
"""

from quant_batch.render.fields import RenderDefaults
from quant_batch.render.manifest import Manifest, build_request, load_manifest
from quant_batch.render.rows import InputImage, InvalidRow, ManifestProblem, RenderRow

__all__ = [
    "InputImage",
    "InvalidRow",
    "Manifest",
    "ManifestProblem",
    "RenderDefaults",
    "RenderRow",
    "build_request",
    "load_manifest",
]
