"""Rendering stage: image manifests in, Nova Canvas requests out.

``manifest`` reads and checks the rows a user wrote; ``rules`` holds the service's request rules.
"""

from quant_batch.render.manifest import (
    InputImage,
    InvalidRow,
    Manifest,
    ManifestProblem,
    RenderDefaults,
    RenderRow,
    build_request,
    load_manifest,
)

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
