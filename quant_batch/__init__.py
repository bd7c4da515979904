"""quant-batch: batch embeddings, image rendering and chat enrichment on the QuantCDN AI Inference API.

The public API (everything in ``__all__``)::

    import quant_batch as qb

    summary = qb.embed("docs/", out="data/index", max_cost=1.0)   # -> RunSummary
    hits = qb.search("data/index", "opening hours on sunday", k=5)  # -> list[Hit]

Runs go through the Prefect flows when a Prefect API is configured and run in this process
otherwise; ``prefect=True/False`` forces either. Names are imported on first use, so
``import quant_batch`` stays cheap and never imports Prefect.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import TYPE_CHECKING, Any

from quant_batch import allocators as _allocators
from quant_batch.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConnectionDropped,
    ContentBlocked,
    InputError,
    LockError,
    PayloadTooLarge,
    QuantError,
    RateLimited,
    RequestRejected,
    ServerError,
    ServiceUnreachable,
    Timeout,
    TransientError,
)

# before anything of ours loads pyarrow or starts a thread: see the module's docstring
_allocators.tune_allocators()

if TYPE_CHECKING:
    from quant_batch.api import embed, enrich, plan, render, search
    from quant_batch.client import QuantClient
    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.embed.config import CorpusConfig
    from quant_batch.enrich.config import EnrichConfig
    from quant_batch.query.search import Hit
    from quant_batch.render.config import RenderConfig
    from quant_batch.runs.summary import RunSummary

try:
    __version__ = version("quant-batch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "embed": "quant_batch.api",
    "render": "quant_batch.api",
    "enrich": "quant_batch.api",
    "plan": "quant_batch.api",
    "search": "quant_batch.api",
    "QuantClient": "quant_batch.client",
    "ApiConfig": "quant_batch.client.config",
    "RateLimits": "quant_batch.client.config",
    "CorpusConfig": "quant_batch.embed.config",
    "RenderConfig": "quant_batch.render.config",
    "EnrichConfig": "quant_batch.enrich.config",
    "RunSummary": "quant_batch.runs.summary",
    "Hit": "quant_batch.query.search",
}

__all__ = [
    "__version__",
    # runs and queries
    "embed",
    "render",
    "enrich",
    "plan",
    "search",
    "RunSummary",
    "Hit",
    # client and config models
    "QuantClient",
    "CorpusConfig",
    "RenderConfig",
    "EnrichConfig",
    "ApiConfig",
    "RateLimits",
    # the exception tree (see quant_batch.errors)
    "QuantError",
    "ConfigError",
    "InputError",
    "LockError",
    "ApiError",
    "ServiceUnreachable",
    "RequestRejected",
    "AuthError",
    "PayloadTooLarge",
    "ContentBlocked",
    "TransientError",
    "RateLimited",
    "ServerError",
    "ConnectionDropped",
    "Timeout",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quant_batch' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """Keeps ``quant_batch.embed`` / ``render`` / ``enrich`` the API functions.

    Importing the stage package ``quant_batch.embed.config`` would otherwise rebind the name
    ``embed`` on this package to the subpackage; imports still find the subpackages through
    ``sys.modules`` (``from quant_batch.embed.run import run_corpus`` or
    ``from quant_batch.embed import run``; avoid ``import quant_batch.embed.run as m``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in ("embed", "render", "enrich"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
