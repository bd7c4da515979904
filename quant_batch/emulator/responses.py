"""What an endpoint handler returns and how it refuses: ``Outcome``, ``Rejected``, error bodies.

Shared by the plumbing in ``app.py`` and the endpoint families (``embeddings``, ``images``,
``chat``). Errors are ``{"error": "<ExceptionName>", "message": "..."}`` with an
``x-amzn-ErrorType`` header, like the service's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response

from quant_batch.emulator.faults import FaultInjector, Stats


@dataclass
class Outcome:
    """An endpoint's answer plus what the stats should count."""

    response: Response
    status: int
    texts: int = 0
    images: int = 0
    fault: str | None = None
    stream_events: list[bytes] | None = None  # set for SSE answers, so a drop can replay part


@dataclass
class EmulatorState:
    """What every request shares: the accepted token, the fault injector and the counters."""

    token: str | None
    injector: FaultInjector
    stats: Stats = field(default_factory=Stats)


class Rejected(Exception):
    """Raised inside a handler to answer with an error status."""

    def __init__(self, status: int, name: str, message: str):
        self.status, self.name, self.message = status, name, message
        super().__init__(message)


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON answer; numpy arrays are serialised directly (the embedding vectors)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers=headers, media_type="application/json")


def error_response(status: int, name: str, message: str, headers: dict | None = None) -> Response:
    """The service's error body; never includes anything from the Authorization header."""
    return json_response({"error": name, "message": message}, status, {"x-amzn-ErrorType": name, **(headers or {})})


def invalid(message: str) -> Rejected:
    """The service's 400 for a request that fails validation."""
    return Rejected(400, "ValidationException", message)


def malformed(index: int, detail: str) -> Rejected:
    """The 400 the service words for one bad text in an embeddings batch."""
    return invalid(f"Malformed input request: input[{index}]: {detail}, please reformat your input and try again.")
