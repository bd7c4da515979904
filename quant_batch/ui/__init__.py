"""``quant-batch ui``: a local, read-only web page over output folders.

Search, documents, image gallery, runs and failures, rendered on the server from the files runs
publish (never ``catalog.duckdb``, which a running run holds open). Embed it in another ASGI app
or serve it with uvicorn::

    from quant_batch.ui import app
    uvicorn.run(app(["data/index", "data/renders"]), host="127.0.0.1", port=8765)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from quant_batch.client import QuantClient


def app(outs: Sequence[str | Path], *, client: QuantClient | None = None) -> FastAPI:
    """The web app over the output folders ``outs``; ``client`` embeds search queries
    (default: a client from the ``QUANT_*`` environment, made on the first search)."""
    from quant_batch.ui.routes import create_app

    return create_app(list(outs), client=client)


__all__ = ["app"]
