"""Contextual chunks: one chat call per changed document writes a short context for its chunks.

The context is prepended to each chunk's text before embedding (and kept beside the chunk in
``live_chunks.context``); the chunk key hashes the embedded text, so turning the option on or
changing its settings re-embeds through the normal ledger rules, and turning it off finds the
plain vectors still in the ledger.
"""

from __future__ import annotations

import threading

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from quant_batch.client import QuantClient
from quant_batch.corpus.readers import Document
from quant_batch.embed.config import ContextualChunks
from quant_batch.errors import ConfigError
from quant_batch.pricing import PriceTable


class Contextualizer:
    """Calls the chat API for a document's context and tallies usage and cost."""

    def __init__(self, settings: ContextualChunks, client: QuantClient, prices: PriceTable):
        self.settings, self.client, self.prices = settings, client, prices
        try:
            self.template = SandboxedEnvironment(undefined=StrictUndefined).from_string(settings.template)
        except TemplateError as exc:
            raise ConfigError(f"contextual_chunks.template: {exc.message}") from None
        self.calls = self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self._lock = threading.Lock()

    def __call__(self, doc: Document) -> str:
        """The context for ``doc``; raises the client's errors (the plan records them per document)."""
        try:
            prompt = self.template.render(document=doc.text, doc_id=doc.doc_id, source_path=doc.source_path)
        except TemplateError as exc:
            raise ConfigError(f"contextual_chunks.template: {exc.message}") from None
        out = self.client.chat(
            {
                "messages": [{"role": "user", "content": prompt}],
                "modelId": self.settings.model,
                "maxTokens": self.settings.max_tokens,
                "temperature": 0.0,
            }
        )
        with self._lock:
            self.calls += 1
            self.input_tokens += out.usage.input_tokens
            self.output_tokens += out.usage.output_tokens
            self.cost_usd += self.prices.chat_cost(self.settings.model, out.usage.input_tokens, out.usage.output_tokens)
        return " ".join(out.text.split())
