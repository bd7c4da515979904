"""Gallery thumbnails: made once per image content and cached under ``<out>/.ui-cache/thumbs/``.

A thumbnail is named after the image's sha256 from its part file, so a re-render (new bytes)
gets a new thumbnail and an unchanged image is never resized twice. A page of 48 thumbnails
weighs a few hundred kilobytes, where the full PNGs scaled by the browser would weigh megabytes.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from quant_batch.store.files import atomic_path

THUMB_PX = 256
_SHA = re.compile(r"^[0-9a-f]{16,64}$")


def thumbnail(cache: Path, source: Path, sha256: str) -> Path:
    """The cached JPEG thumbnail of ``source`` (at most ``THUMB_PX`` a side), made if missing."""
    if not _SHA.match(sha256):
        raise ValueError("a thumbnail is named by the image's sha256")
    path = cache / "thumbs" / f"{sha256[:32]}.jpg"
    if path.exists():
        return path
    with Image.open(source) as im:
        im.thumbnail((THUMB_PX, THUMB_PX))
        rgba = im.convert("RGBA")
    # JPEG has no alpha: background-removed images show on white
    rgb = Image.new("RGB", rgba.size, "white")
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    with atomic_path(path) as tmp:
        rgb.save(tmp, "JPEG", quality=80, optimize=True)
    return path
