"""Prompts: a sandboxed Jinja2 template per row, the chat request, and the keys that name them.

The *template hash* names everything about the prompt that is the same for every row (template,
system prompt, model, temperature, max_tokens, schema): editing any of them re-enriches every
row. A row's *unit key* adds the row's key, its rendered text and its image's hash, so an edited
row under an old key is sent again, and an unchanged row never is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from quant_batch.enrich.config import EnrichConfig
from quant_batch.errors import ConfigError
from quant_batch.hashing import canonical_json, sha256_hex

CHARS_PER_TOKEN = 4  # the dry plan's rough input estimate
TOKENS_PER_IMAGE = 300  # what an image block is charged as, roughly, for estimates and the spend cap

# magic bytes of the image formats a chat image block accepts
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"))


def template_hash(cfg: EnrichConfig) -> str:
    """Hash of every setting that changes the answer of every row."""
    return sha256_hex(
        canonical_json(
            [
                cfg.template,
                cfg.system_prompt,
                cfg.model,
                cfg.temperature,
                cfg.max_tokens,
                cfg.json_schema,
            ]
        )
    )[:16]


def unit_key(template_hash: str, key: str, prompt: str, image_sha: str | None) -> str:
    """Key of one chat call: the template plus this row's key, text and image."""
    return sha256_hex(canonical_json([template_hash, key, prompt, image_sha]))


def image_format(data: bytes) -> str | None:
    """png / jpeg / gif / webp by magic bytes; None for anything else."""
    for magic, fmt in _IMAGE_MAGIC:
        if data.startswith(magic):
            return fmt
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def chat_request(base: dict[str, Any], text: str, image: bytes | None = None) -> dict[str, Any]:
    """One row's request: ``base`` plus a user message, with an image block before the text."""
    content: str | list[dict[str, Any]] = text
    if image is not None:
        block = {"image": {"format": image_format(image), "source": {"bytes": base64.b64encode(image).decode()}}}
        content = [block, {"text": text}]
    return {**base, "messages": [{"role": "user", "content": content}]}


def repair_request(request: dict[str, Any], answer: str, problem: str) -> dict[str, Any]:
    """The same request with the invalid answer and what is wrong with it appended."""
    follow_up = (
        f"Your answer is not valid: {problem}. Reply again with only a JSON document that validates against the schema."
    )
    messages = [
        *request["messages"],
        {"role": "assistant", "content": answer or "(empty answer)"},
        {"role": "user", "content": follow_up},
    ]
    return {**request, "messages": messages}


class Prompt:
    """The compiled template of a config; renders one row at a time."""

    def __init__(self, cfg: EnrichConfig):
        self.cfg = cfg
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        try:
            self.variables = meta.find_undeclared_variables(self.env.parse(cfg.template))
            self.template = self.env.from_string(cfg.template)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            raise ConfigError(f"template{f' line {line}' if line else ''}: {exc.message}") from None
        self.hash = template_hash(cfg)

    def check_columns(self, columns: Iterable[str], source: str) -> None:
        """Fail before any call when the template names a column the source does not have."""
        columns = list(columns)
        missing = sorted(self.variables - set(columns))
        if missing:
            raise ConfigError(
                f"template: unknown variable {', '.join(repr(m) for m in missing)}; "
                f"the {source} source has columns {', '.join(columns)}"
            )

    def render(self, row: dict[str, Any]) -> str:
        """The user message for ``row``; raises ``TemplateError`` for a row it cannot render."""
        return self.template.render(row).strip()

    def base_request(self) -> dict[str, Any]:
        """Everything of a ``ChatInferenceRequest`` but its messages (plain data for workers)."""
        req: dict[str, Any] = {
            "modelId": self.cfg.model,
            "maxTokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
        }
        if self.cfg.system_prompt:
            req["systemPrompt"] = self.cfg.system_prompt
        if self.cfg.json_schema is not None:
            req["responseFormat"] = {"type": "json", "jsonSchema": self.cfg.json_schema}
        return req

    def estimate_input_tokens(self, text: str, has_image: bool) -> int:
        chars = len(text) + len(self.cfg.system_prompt or "")
        return chars // CHARS_PER_TOKEN + 1 + (TOKENS_PER_IMAGE if has_image else 0)
