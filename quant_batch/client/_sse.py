"""Server-sent events from the chat stream, turned into ``StreamEvent``s.

Lenient on purpose: ``data:`` lines are joined per event (events end at a blank line), ``[DONE]``
ends the stream, and a JSON payload's text may sit under ``delta``, ``text`` or ``content``
(directly or one level down, e.g. ``{"delta": {"text": ...}}``). A payload that is not JSON is
taken as plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ._types import StreamEvent, Usage

_TEXT_KEYS = ("delta", "text", "content")
_FINISH_KEYS = ("finishReason", "finish_reason", "stopReason", "stop_reason")
_DONE_TYPES = {"done", "complete", "completed", "end", "message_stop", "stop", "finish"}


class StreamError(Exception):
    """The stream carried an error event; ``message`` is the server's text."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def sse_data(lines: Iterable[bytes | str]) -> Iterator[str]:
    """The ``data`` payload of each event, as events complete."""
    buf: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r")
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
        elif line.startswith("data:"):
            value = line[5:]
            buf.append(value[1:] if value.startswith(" ") else value)
        # comments (":"), "event:", "id:", "retry:" carry nothing we use
    if buf:
        yield "\n".join(buf)


def stream_events(lines: Iterable[bytes | str]) -> Iterator[StreamEvent]:
    """Deltas as they arrive, then exactly one ``done`` event (if the server ended the stream).

    After the final event the rest (``[DONE]``) is read and dropped, so the connection goes
    back to the pool whole.
    """
    done = False
    for data in sse_data(lines):
        if data.strip() == "[DONE]":
            if not done:
                yield StreamEvent("done")
            return
        if done:
            continue
        for event in _parse(data):
            yield event
            done = done or event.kind == "done"


def _parse(data: str) -> list[StreamEvent]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return [StreamEvent("delta", text=data)] if data else []
    if not isinstance(payload, dict):
        return [StreamEvent("delta", text=payload)] if isinstance(payload, str) and payload else []
    if payload.get("error"):
        err = payload["error"]
        raise StreamError(str(err.get("message", err) if isinstance(err, dict) else payload.get("message", err)))
    text = _text(payload)
    finish = _first(payload, _FINISH_KEYS)
    kind = str(payload.get("type") or payload.get("event") or "").lower()
    events = [StreamEvent("delta", text=text)] if text else []
    if finish is not None or kind in _DONE_TYPES or payload.get("done") is True:
        usage = Usage.from_body(payload["usage"]) if isinstance(payload.get("usage"), dict) else None
        events.append(StreamEvent("done", finish_reason=finish, usage=usage))
    return events


def _text(payload: dict[str, Any]) -> str:
    for key in _TEXT_KEYS:
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            inner = _text(value)
            if inner:
                return inner
    return ""


def _first(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str):
            return value
    delta = payload.get("delta")
    return _first(delta, keys) if isinstance(delta, dict) else None
