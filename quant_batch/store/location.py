"""Where an output or a source lives: a local path, or a bucket URI kept as text.

``Path("s3://bucket/x")`` would collapse the ``//`` and turn a bucket into a relative folder, so a
config field that may hold either is a :data:`Location`: a ``Path`` for local paths and a ``str``
for ``scheme://`` URIs. This module imports nothing heavy; configs use it at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(location: object) -> bool:
    """True for ``s3://…``, ``gs://…``, ``az://…`` (a ``file://`` URI is a local path)."""
    return isinstance(location, str) and bool(_URI.match(location)) and not location.lower().startswith("file://")


def as_location(value: object) -> object:
    """A bucket URI stays text; anything else path-like becomes a ``Path``."""
    if isinstance(value, str):
        if is_uri(value):
            return value
        return Path(value[len("file://") :] if value.lower().startswith("file://") else value)
    return value


Location = Annotated[Path | str, BeforeValidator(as_location)]
"""A config field holding a local path (``Path``) or a bucket URI (``str``)."""


def is_remote(location: Path | str) -> bool:
    return is_uri(location)


def display(location: Path | str) -> str:
    """The location as a user wrote it (paths as given, URIs without a query string)."""
    return str(location).split("?", 1)[0] if is_uri(location) else str(location)
