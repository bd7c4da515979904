"""Deterministic fake model output: embedding vectors, PNG images and chat answers.

Nothing here is random at run time: the same input always gives the same output, across
processes and machines (hashes are blake2b/shake, never Python's salted ``hash``).

Vectors are a hashed bag-of-words projection. Each lowercased word maps to a fixed pseudo-random
dense vector (from ``shake_128`` of the word); a text's vector is the sublinear-tf weighted sum
of its words' vectors plus a small component from the whole text's hash, so identical texts are
identical, texts sharing words are close, and texts sharing no words are near-orthogonal.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import threading
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from quant_batch.tokens import CHARS_PER_TOKEN  # noqa: F401  (the emulator counts like the pipeline)
from quant_batch.tokens import estimate_tokens as _estimate

_WORD_RE = re.compile(r"\w+", re.UNICODE)
# weight of the whole-text component relative to the bag-of-words part
_TEXT_HASH_WEIGHT = 0.15


def estimate_tokens(text: str) -> int:
    """Titan-like token count for one text (the pipeline's own estimate: one rule, one home)."""
    return _estimate(len(text))


def _seed_bytes(*parts: Any) -> bytes:
    return "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")


def _hash_vector(key: bytes, dim: int) -> np.ndarray:
    # int16 samples from shake_128 are uniform in [-1, 1): fine for a random projection
    raw = hashlib.shake_128(key).digest(2 * dim)
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


class _Vocabulary:
    """Word vectors of one dimension, as rows of one growing matrix (fast to gather)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.rows: dict[str, int] = {}
        self.matrix = np.empty((1024, dim), dtype=np.float32)
        self.lock = threading.Lock()

    def indices(self, words) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers of ``words`` (adding new ones) and the matrix to read them from."""
        rows = self.rows
        found = [rows.get(w) for w in words]
        if None in found:
            with self.lock:
                found = [self._add(w) if r is None else r for w, r in zip(words, found)]
        return np.array(found, dtype=np.intp), self.matrix

    def _add(self, word: str) -> int:
        if word in self.rows:
            return self.rows[word]
        row = len(self.rows)
        if row == len(self.matrix):
            # grow into a new array: readers keep the old one, whose rows stay valid
            bigger = np.empty((2 * row, self.dim), dtype=np.float32)
            bigger[:row] = self.matrix
            self.matrix = bigger
        self.matrix[row] = word_vector(word, self.dim)
        self.rows[word] = row
        return row


_VOCABULARIES: dict[int, _Vocabulary] = {}
_MAX_VOCABULARY = 500_000


def _vocabulary(dim: int) -> _Vocabulary:
    vocab = _VOCABULARIES.get(dim)
    if vocab is None or len(vocab.rows) > _MAX_VOCABULARY:
        vocab = _VOCABULARIES[dim] = _Vocabulary(dim)
    return vocab


def word_vector(word: str, dim: int) -> np.ndarray:
    """The fixed pseudo-random vector of one word."""
    return _hash_vector(_seed_bytes("w", word), dim)


def embed_text(text: str, dim: int, normalize: bool = True) -> np.ndarray:
    """Deterministic embedding of one text."""
    counts: dict[str, int] = {}
    for word in _WORD_RE.findall(text.lower()):
        counts[word] = counts.get(word, 0) + 1
    extra = _hash_vector(_seed_bytes("t", text), dim)
    if counts:
        # sublinear tf, so one repeated word does not drown the rest
        weights = np.array([1.0 + math.log(c) for c in counts.values()], dtype=np.float32)
        rows, matrix = _vocabulary(dim).indices(list(counts))
        base = weights @ matrix[rows]
        scale = _TEXT_HASH_WEIGHT * float(np.linalg.norm(base)) / float(np.linalg.norm(extra))
        vec = base + scale * extra
    else:
        vec = extra
    if normalize:
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
    return vec.astype(np.float32)


def embed_batch(texts: list[str], dim: int, normalize: bool = True) -> np.ndarray:
    """Embeddings of several texts as a (len(texts), dim) float32 array."""
    return np.stack([embed_text(t, dim, normalize) for t in texts])


def _rng(*parts: Any) -> np.random.Generator:
    seed = int.from_bytes(hashlib.blake2b(_seed_bytes(*parts), digest_size=8).digest(), "little")
    return np.random.default_rng(seed)


def synth_image(width: int, height: int, *parts: Any, alpha: bool = False) -> Image.Image:
    """A deterministic picture: a two-colour gradient with a few shapes, keyed by ``parts``."""
    rng = _rng("img", width, height, *parts)
    c0, c1 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # the gradient is computed on a small grid and upscaled: same look, a fraction of the cost
    gw, gh = max(2, min(width, 64)), max(2, min(height, 64))
    xs = np.linspace(0.0, 1.0, gw, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, gh, dtype=np.float32)[:, None]
    t = np.cos(angle) * xs + np.sin(angle) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    pixels = c0 + t[..., None] * (c1 - c0)
    small = Image.fromarray(pixels.astype(np.uint8), "RGB")
    img = small.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1 + 1, y1 + 1), fill=fill)
    if alpha:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse((width // 6, height // 6, width * 5 // 6, height * 5 // 6), fill=255)
        img.putalpha(mask)
    return img


def png_bytes(img: Image.Image) -> bytes:
    """Encode as PNG, favouring speed over size."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def chat_answer(prompt: str, media: int = 0, max_words: int = 48) -> str:
    """A deterministic answer built from the words of the last user message."""
    words = prompt.split()
    if not words and not media:
        return "Summary: (empty message)"
    head = " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")
    note = f" [with {media} attachment{'s' if media != 1 else ''}]" if media else ""
    return f"Summary: {head}{note}".rstrip()


def _schema_string(schema: dict, words: list[str], depth: int) -> str:
    text = " ".join(words[depth : depth + 3]) or "value"
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    text = text.ljust(lo, "x")
    return text[:hi] if hi is not None else text


def _schema_number(schema: dict, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 1 if lo is None else lo + (1 if "exclusiveMinimum" in schema else 0)
    if hi is not None and value > hi:
        value = hi - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else float(value)


def value_for_schema(schema: Any, words: list[str], root: dict | None = None, depth: int = 0) -> Any:
    """A value that validates against a (simple) JSON schema, filled from ``words``."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if not isinstance(schema, dict) or depth > 20:
        return None
    if "$ref" in schema:
        return value_for_schema(_resolve(root, schema["$ref"]), words, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return value_for_schema(schema[key][0], words, root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: value_for_schema(v, words, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        count = min(count, schema.get("maxItems", count))
        return [value_for_schema(schema.get("items", {}), words, root, depth + 1 + i) for i in range(count)]
    if kind in ("integer", "number"):
        return _schema_number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _schema_string(schema, words, depth)


def _resolve(root: dict, ref: str) -> Any:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        node = node.get(part) if isinstance(node, dict) else None
    return node


def json_answer(schema: dict, prompt: str) -> str:
    """A JSON document (as text) that validates against ``schema``."""
    return json.dumps(value_for_schema(schema, prompt.split() or ["value"]), ensure_ascii=False)
