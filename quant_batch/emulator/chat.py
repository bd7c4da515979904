"""The chat endpoints: buffered ``/ai/chat`` and ``/ai/chat/stream`` (server-sent events).

Chat stream format (``text/event-stream``), one JSON object per ``data:`` line::

    data: {"delta": "Summary: the quick "}          several of these, in order
    data: {"delta": "brown fox"}
    data: {"finishReason": "stop", "model": "...", "requestId": "...",
           "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 21}}
    data: [DONE]

Events are separated by a blank line. Concatenating the deltas gives exactly the ``content`` the
buffered ``/ai/chat`` route returns for the same request. ``finishReason`` uses the SDK's enum:
``stop`` or ``length`` (the SDK rejects Bedrock's ``end_turn`` / ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from quant_batch.emulator import synth
from quant_batch.emulator.responses import EmulatorState, Outcome, invalid, json_response

TOKENS_PER_ATTACHMENT = 300  # rough input-token charge for an image/video/document block
CHAT_ROLES = ("user", "assistant", "system")
BLOCK_FORMATS = {
    "image": ("png", "jpeg", "gif", "webp"),
    "video": ("mp4", "mov", "mkv", "webm"),
    "document": ("pdf", "csv", "docx", "xlsx"),
}


def _is_base64(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(value) and bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False


def _block_problems(block: Any, path: str) -> list[str]:
    if not isinstance(block, dict) or len(block) != 1:
        return [f"{path}: must hold exactly one of text, image, video, document"]
    kind, value = next(iter(block.items()))
    if kind == "text":
        return [] if isinstance(value, str) and value else [f"{path}.text: must be a non-empty string"]
    if kind not in BLOCK_FORMATS or not isinstance(value, dict):
        return [f"{path}: unknown content block {kind!r}"]
    out = []
    if value.get("format") not in BLOCK_FORMATS[kind]:
        out.append(f"{path}.{kind}.format: must be one of {', '.join(BLOCK_FORMATS[kind])}")
    if kind == "document" and not (isinstance(value.get("name"), str) and value["name"]):
        out.append(f"{path}.document.name: is required")
    if not _is_base64((value.get("source") or {}).get("bytes") if isinstance(value.get("source"), dict) else None):
        out.append(f"{path}.{kind}.source.bytes: must be base64-encoded data")
    return out


def _message_problems(msg: Any, path: str) -> list[str]:
    if not isinstance(msg, dict):
        return [f"{path}: must be an object"]
    out = [] if msg.get("role") in CHAT_ROLES else [f"{path}.role: must be one of {', '.join(CHAT_ROLES)}"]
    content = msg.get("content")
    if isinstance(content, str):
        return out + ([] if content else [f"{path}.content: must not be empty"])
    if not isinstance(content, list) or not content:
        return out + [f"{path}.content: must be a string or a non-empty list of content blocks"]
    for j, block in enumerate(content):
        out.extend(_block_problems(block, f"{path}.content[{j}]"))
    return out


def _number_problem(data: dict, key: str, lo: float, hi: float, integer: bool = False) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    return [] if ok else [f"{key}: must be {'an integer' if integer else 'a number'} from {lo} to {hi}"]


def _chat_problems(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["body: must be a JSON object"]
    out = []
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        out.append("messages: must be a list of at least 1 message")
    else:
        for i, msg in enumerate(messages):
            out.extend(_message_problems(msg, f"messages[{i}]"))
    if not (isinstance(data.get("modelId"), str) and data["modelId"]):
        out.append("modelId: is required")
    out += _number_problem(data, "temperature", 0, 2) + _number_problem(data, "topP", 0, 1)
    out += _number_problem(data, "maxTokens", 1, 8192, integer=True)
    stops = data.get("stopSequences")
    if stops is not None and not (
        isinstance(stops, list) and len(stops) <= 4 and all(isinstance(s, str) for s in stops)
    ):
        out.append("stopSequences: must be a list of at most 4 strings")
    fmt = data.get("responseFormat")
    if fmt is not None and not (
        isinstance(fmt, dict) and fmt.get("type", "json") == "json" and isinstance(fmt.get("jsonSchema", {}), dict)
    ):
        out.append('responseFormat: must be {"type": "json", "jsonSchema": {...}}')
    return out


def _message_text(msg: dict) -> tuple[str, int]:
    content = msg["content"]  # checked by _message_problems: a string or a list of blocks
    if isinstance(content, str):
        return content, 0
    texts = [b["text"] for b in content if "text" in b]
    return " ".join(texts), len(content) - len(texts)


@dataclass
class ChatResult:
    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    fault: str | None = None


def _truncate(text: str, tokens: int) -> str:
    return text[: max(1, int(tokens * synth.CHARS_PER_TOKEN))]


def _chat_result(data: dict, fault: str | None) -> ChatResult:
    parsed = [_message_text(m) for m in data["messages"]]
    users = [p for m, p in zip(data["messages"], parsed) if m.get("role") == "user"] or parsed
    prompt, media = users[-1]
    fmt = data.get("responseFormat")
    if fmt is not None:
        schema = fmt.get("jsonSchema") or {"type": "object", "properties": {"answer": {"type": "string"}}}
        content = synth.json_answer(schema, prompt)
        if fault == "invalid_json":
            content = content[: len(content) // 2]
    else:
        content = synth.chat_answer(prompt, media)
        fault = None if fault == "invalid_json" else fault  # only JSON answers can be broken JSON
    finish = "stop"
    for stop in data.get("stopSequences") or []:
        if stop and stop in content:
            content = content[: content.index(stop)]
    max_tokens = data.get("maxTokens") or 1024
    if fault == "length" or synth.estimate_tokens(content) > max_tokens:
        limit = min(max_tokens, max(1, synth.estimate_tokens(content) // 2)) if fault == "length" else max_tokens
        content, finish = _truncate(content, limit), "length"
    all_text = " ".join(t for t, _ in parsed) + (data.get("systemPrompt") or "")
    tokens_in = synth.estimate_tokens(all_text) + TOKENS_PER_ATTACHMENT * sum(n for _, n in parsed)
    return ChatResult(content, finish, tokens_in, synth.estimate_tokens(content), fault)


def _usage(result: ChatResult) -> dict:
    return {
        "inputTokens": result.input_tokens,
        "outputTokens": result.output_tokens,
        "totalTokens": result.input_tokens + result.output_tokens,
    }


def _validated_chat(data: Any, state: EmulatorState) -> ChatResult:
    problems = _chat_problems(data)
    if problems:
        raise invalid("; ".join(problems))
    return _chat_result(data, state.injector.chat_fault())


async def handle(data: Any, state: EmulatorState) -> Outcome:
    result = await run_in_threadpool(_validated_chat, data, state)
    body = {
        "response": {"role": "assistant", "content": result.content},
        "model": data["modelId"],
        "requestId": str(uuid.uuid4()),
        "finishReason": result.finish_reason,
        "usage": _usage(result),
    }
    return Outcome(json_response(body), 200, fault=result.fault)


def _sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


def _stream_events(result: ChatResult, model: str) -> list[bytes]:
    words = result.content.split(" ")
    pieces = [" ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "") for i in range(0, len(words), 4)]
    events = [_sse({"delta": p}) for p in pieces if p]
    final = {
        "finishReason": result.finish_reason,
        "model": model,
        "requestId": str(uuid.uuid4()),
        "usage": _usage(result),
    }
    return events + [_sse(final), _sse(b"[DONE]")]


async def handle_stream(data: Any, state: EmulatorState) -> Outcome:
    result = await run_in_threadpool(_validated_chat, data, state)
    events = _stream_events(result, data["modelId"])

    async def produce():
        for event in events:
            yield event
            await asyncio.sleep(0.002)  # arrive as separate chunks, like a real token stream

    response = StreamingResponse(produce(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return Outcome(response, 200, fault=result.fault, stream_events=events)
