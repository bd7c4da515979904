"""Reading 2xx answers into result fields.

A success whose body does not fit its schema (not JSON, wrong vector count, ragged vectors, no
images, image bytes that are not a whole PNG/JPEG) raises ``BadResponse``: the service
misbehaved, and resending may well work. Content moderation on a 200 (every image blocked)
raises ``ContentBlocked``.

Embeddings answers are read one vector at a time (``_vectors_by_row``): each ``[...]`` of the
``embeddings`` array is parsed on its own straight into its float32 row, so a thread never holds
a whole answer's 100,000 Python floats (3 MB, against 0.4 MB of float32), and the rest of the
body is parsed without the array. Anything that path does not expect falls back to parsing the
whole body, which keeps every check and message of the strict path.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from typing import Any

import numpy as np
import orjson
import requests

from quant_batch.errors import BadResponse, ContentBlocked

from ._types import Usage


def _json(resp: requests.Response, endpoint: str) -> Any:
    try:
        return orjson.loads(resp.content)  # already read: the client reads every body in one piece
    except orjson.JSONDecodeError:
        pass
    try:
        # orjson refuses the bare NaN token some servers write for a bad vector; json takes it
        return json.loads(resp.content)
    except ValueError as exc:
        raise BadResponse(
            f"{endpoint}: {resp.status_code} with a body that is not JSON ({exc})",
            status=resp.status_code,
            endpoint=endpoint,
        ) from None


def embedding_fields(resp: requests.Response, n: int) -> dict[str, Any]:
    fast = _vectors_by_row(resp.content, n)
    if fast is not None:
        body, vectors = fast
    else:
        body, vectors = _vectors_whole(resp, n)
    dim = body.get("dimension") if isinstance(body.get("dimension"), int) else vectors.shape[1]
    if vectors.shape[1] != dim:
        raise BadResponse(
            f"embeddings: vectors have {vectors.shape[1]} values, the answer says dimension {dim}",
            status=resp.status_code,
            endpoint="embeddings",
        )
    usage = Usage.from_body(body.get("usage"))
    return dict(vectors=vectors, model=str(body.get("model") or ""), dimension=dim, usage=usage)


def _vectors_whole(resp: requests.Response, n: int) -> tuple[dict[str, Any], np.ndarray]:
    """The strict path: the whole body parsed at once, every malformation a ``BadResponse``."""
    body = _json(resp, "embeddings")
    if not isinstance(body, dict):
        raise BadResponse("embeddings: answer is not a JSON object", status=resp.status_code, endpoint="embeddings")
    raw = body.get("embeddings")
    if n == 1 and isinstance(raw, list) and raw and not isinstance(raw[0], list):
        raw = [raw]  # the single-vector form, should a server collapse a one-item batch
    return body, _as_matrix(raw, n)


_KEY = b'"embeddings"'
_ARRAY_START = re.compile(rb'"embeddings"[ \t\n\r]*:[ \t\n\r]*\[')
_SPACE = re.compile(rb"[ \t\n\r]*")


def _vectors_by_row(content: bytes, n: int) -> tuple[dict[str, Any], np.ndarray] | None:
    """The body and its ``(n, dim)`` float32 vectors, or None for anything but the plain shape.

    Plain shape: one ``"embeddings"`` key, at the top level, holding ``n`` arrays of numbers of
    one length. Each row is its own strict ``orjson`` parse, so a malformed number still fails
    (and falls back); the body around the array is parsed with the array cut out.
    """
    start = _ARRAY_START.search(content)
    if start is None or n < 1:
        return None
    try:
        vectors, end = _rows(content, start.end(), n)
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError):
        return None
    head, tail = content[: start.start()], content[end:]
    if _KEY in head or _KEY in tail:
        return None  # a second "embeddings" (nested, or a duplicate key): only the strict path decides
    try:
        body = orjson.loads(head + b'"embeddings":[]' + tail)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("embeddings") != []:
        return None  # the key was not the top-level one
    return body, vectors


def _rows(content: bytes, pos: int, n: int) -> tuple[np.ndarray, int]:
    """Parse the array's rows from just after its ``[``; returns them and the offset past its ``]``.

    Raises ValueError (or orjson's error) on anything else: a row too many or too few, ragged or
    nested rows, a missing comma.
    """
    vectors: np.ndarray | None = None
    for i in range(n):
        pos = _SPACE.match(content, pos).end()  # type: ignore[union-attr]  # matches empty too
        if content[pos : pos + 1] != b"[":
            raise ValueError("not a row")
        end = content.index(b"]", pos) + 1  # rows hold numbers only: the first ] closes the row
        row = orjson.loads(content[pos:end])
        if vectors is None:
            vectors = np.empty((n, len(row)), dtype=np.float32)
        if not row or len(row) != vectors.shape[1]:
            raise ValueError("ragged rows")
        vectors[i] = row
        pos = _SPACE.match(content, end).end()  # type: ignore[union-attr]
        if content[pos : pos + 1] != (b"," if i < n - 1 else b"]"):
            raise ValueError("rows do not match the batch")
        pos += 1
    assert vectors is not None  # n >= 1
    return vectors, pos


def _as_matrix(raw: Any, n: int) -> np.ndarray:
    count = len(raw) if isinstance(raw, list) else 0
    if count != n:
        raise BadResponse(f"embeddings: returned {count} vectors for {n} texts", endpoint="embeddings")
    try:
        # one conversion, straight from the parsed lists into a C-contiguous float32 block
        vectors = np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        lengths = sorted({len(v) if isinstance(v, list) else -1 for v in raw})
        raise BadResponse(
            f"embeddings: vectors are not numeric lists of one length (lengths {lengths[:5]})", endpoint="embeddings"
        ) from exc
    if vectors.ndim != 2:
        raise BadResponse(f"embeddings: expected a list of vectors, got shape {vectors.shape}", endpoint="embeddings")
    return np.ascontiguousarray(vectors)


def image_fields(resp: requests.Response) -> dict[str, Any]:
    body = _json(resp, "image-generation")
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    images = [_image(s) for s in body.get("images") or ()]
    if not images:
        if error:
            raise ContentBlocked(
                f"image-generation: {error}", status=resp.status_code, endpoint="image-generation", server_message=error
            )
        raise BadResponse(
            "image-generation: the answer holds no images", status=resp.status_code, endpoint="image-generation"
        )
    mask = body.get("maskImage")
    return dict(images=images, error=error, mask_image=_image(mask) if mask else None)


IMAGE_FORMATS = ("PNG", "JPEG")


def _image(value: Any) -> bytes:
    """Base64 to bytes that decode as a whole PNG or JPEG, so no caller ever stores garbage."""
    from PIL import Image, UnidentifiedImageError  # only image answers need it: not on embed's first call

    data = _b64(value)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()  # decodes every pixel: a cut-off or corrupt body fails here, not in a worker later
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadResponse(
            f"image-generation: an image is not a valid PNG/JPEG ({type(exc).__name__})", endpoint="image-generation"
        ) from exc
    if fmt not in IMAGE_FORMATS:
        raise BadResponse(f"image-generation: an image is {fmt}, not PNG/JPEG", endpoint="image-generation")
    return data


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise BadResponse("image-generation: an image is not valid base64", endpoint="image-generation") from exc


def chat_fields(resp: requests.Response) -> dict[str, Any]:
    body = _json(resp, "chat")
    body = body if isinstance(body, dict) else {}
    message = body.get("response")
    if isinstance(message, str):
        message = {"content": message}
    message = message if isinstance(message, dict) else {}
    return dict(
        text=message.get("content") or "",
        finish_reason=body.get("finishReason"),
        model=body.get("model"),
        request_id=body.get("requestId"),
        usage=Usage.from_body(body.get("usage")),
        tool_use=message.get("toolUse"),
    )
