"""Send planned rows to the chat API: the part of an enrichment run that can run anywhere.

A worker renders nothing and never touches DuckDB: it sends each planned row, checks a JSON
answer against the schema (one repair retry: the invalid answer and the validation error go back
as a follow-up message), and writes results as Parquet parts under
``parts/enrich/<table>/``, errors as error parts. Retries of transient failures happen in the
client only. An answer cut at ``max_tokens`` is stored with ``truncated = true``, never repaired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from quant_batch.client import ChatResult, QuantClient
from quant_batch.enrich.prompt import chat_request, repair_request
from quant_batch.enrich.source import EnrichItem, read_image
from quant_batch.errors import RUN_STOPPERS, InputError, RequestRejected, TransientError, stop_reason
from quant_batch.hashing import sha256_hex
from quant_batch.pricing import Budget, PriceTable
from quant_batch.store.files import write_parquet_atomic
from quant_batch.store.layout import Layout
from quant_batch.store.records import ErrorRecord, write_errors

ROWS_PER_PART = 25  # a crash loses at most this many answers per worker
_TYPES = {
    "string": (pa.string(), "VARCHAR"),
    "integer": (pa.int64(), "BIGINT"),
    "number": (pa.float64(), "DOUBLE"),
    "boolean": (pa.bool_(), "BOOLEAN"),
}
_JSON = (pa.string(), "JSON")
HEAD = [
    ("key", pa.string(), "VARCHAR"),
    ("template_hash", pa.string(), "VARCHAR"),
    ("unit_key", pa.string(), "VARCHAR"),
]
TAIL = [
    ("truncated", pa.bool_(), "BOOLEAN"),
    ("repaired", pa.bool_(), "BOOLEAN"),
    ("finish_reason", pa.string(), "VARCHAR"),
    ("input_tokens", pa.int64(), "BIGINT"),
    ("output_tokens", pa.int64(), "BIGINT"),
    ("cost_usd", pa.float64(), "DOUBLE"),
    ("attempts", pa.int64(), "BIGINT"),
    ("request_id", pa.string(), "VARCHAR"),
    ("model", pa.string(), "VARCHAR"),
    ("run_id", pa.string(), "VARCHAR"),
    ("created_at", pa.float64(), "DOUBLE"),
]


def _kind(prop: Any) -> str:
    """The one JSON type of a schema property; anything else is stored as JSON."""
    t = prop.get("type") if isinstance(prop, dict) else None
    if isinstance(t, list):
        t = [x for x in t if x != "null"]
        t = t[0] if len(t) == 1 else None
    return t if t in _TYPES else "json"


def answer_columns(schema: dict | None) -> list[tuple[str, pa.DataType, str]]:
    """(name, Arrow type, DuckDB type) of the answer: typed schema properties + raw, or text."""
    if schema is None:
        return [("text", pa.string(), "VARCHAR")]
    cols = [(name, *_TYPES.get(_kind(prop), _JSON)) for name, prop in schema["properties"].items()]
    return cols + [("raw", pa.string(), "VARCHAR")]


def table_columns(schema: dict | None) -> list[tuple[str, pa.DataType, str]]:
    return HEAD + answer_columns(schema) + TAIL


@dataclass(frozen=True)
class EnrichContext:
    """Plain settings a worker needs (pickles to any executor)."""

    root: str
    run_id: str
    table: str
    template_hash: str
    base_request: dict
    schema: dict | None
    model: str


@dataclass
class EnrichResult:
    parts: list[str] = field(default_factory=list)
    error_part: str | None = None
    enriched: int = 0
    truncated: int = 0
    repaired: int = 0
    failed: int = 0
    skipped_cap: int = 0
    api_calls: int = 0
    attempts: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class _Checker:
    """Parses an answer and validates it against the schema; says what is wrong, never raises."""

    def __init__(self, schema: dict):
        self.validator = validator_for(schema)(schema)

    def __call__(self, answer: str) -> tuple[Any, str | None]:
        try:
            value = json.loads(answer)
        except ValueError as exc:
            return None, f"not valid JSON ({getattr(exc, 'msg', exc)} at character {getattr(exc, 'pos', '?')})"
        err = best_match(self.validator.iter_errors(value))
        if err is None:
            return value, None
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        return None, f"{where}: {err.message[:300]}"


class _Shard:
    """One worker's state across its rows: tallies, buffered rows, parts written."""

    def __init__(self, ctx: EnrichContext, client: QuantClient, budget: Budget, prices: PriceTable):
        self.ctx, self.client, self.budget, self.prices = ctx, client, budget, prices
        self.res = EnrichResult()
        self.rows: list[dict] = []
        self.errors: list[ErrorRecord] = []
        self.check = _Checker(ctx.schema) if ctx.schema is not None else None
        cols = table_columns(ctx.schema)
        self.arrow = pa.schema([(n, t) for n, t, _ in cols])
        self.duck_types = json.dumps({n: d for n, _, d in cols})

    def price(self, input_tokens: int, output_tokens: int) -> float:
        return self.prices.chat_cost(self.ctx.model, input_tokens, output_tokens)

    def call(self, request: dict, est_in: int) -> ChatResult | None:
        """One chat call under the spend cap; None when the cap refuses it."""
        est = self.price(est_in, int(request["maxTokens"]))
        if not self.budget.reserve(est):
            return None
        actual = 0.0
        try:
            self.res.api_calls += 1
            out = self.client.chat(request)
            actual = self.price(out.usage.input_tokens, out.usage.output_tokens)
            self.res.attempts += out.info.attempts
            self.res.throttled += out.info.throttled
            self.res.input_tokens += out.usage.input_tokens
            self.res.output_tokens += out.usage.output_tokens
            self.res.cost_usd += actual
            return out
        finally:
            self.budget.settle(est, actual)

    def fail(
        self, item: EnrichItem, message: str, kind: str, *, status: int | None = None, retryable: bool = False
    ) -> None:
        self.res.failed += 1
        self.errors.append(
            ErrorRecord(
                self.ctx.run_id,
                "enrich",
                message,
                source_path=self.ctx.table,
                doc_id=item.key,
                key=item.unit_key,
                status=status,
                kind=kind,
                retryable=retryable,
            )
        )

    def run(self, item: EnrichItem) -> None:
        try:
            self._run(item)
        except RUN_STOPPERS as exc:  # not the row's fault: it stays pending for the next run
            self.budget.halt(stop_reason(exc))
        except (RequestRejected, TransientError) as exc:
            self.fail(
                item,
                getattr(exc, "server_message", None) or str(exc),
                type(exc).__name__,
                status=exc.status,
                retryable=isinstance(exc, TransientError),
            )
        except InputError as exc:
            self.fail(item, str(exc), "InputError")
        if len(self.rows) >= ROWS_PER_PART:
            self.flush()

    def _run(self, item: EnrichItem) -> None:
        image = self._image(item)
        request = chat_request(self.ctx.base_request, item.prompt, image)
        first = self.call(request, item.est_input_tokens)
        if first is None:
            self.res.skipped_cap += 1
            return
        calls = [first]
        answer, value, problem = self._judge(first)
        if problem is not None:
            repair = repair_request(request, answer, problem)
            second = self.call(repair, item.est_input_tokens * 2 + int(request["maxTokens"]))
            if second is None:
                self.res.skipped_cap += 1  # the next run asks again from the start
                return
            calls.append(second)
            answer, value, problem2 = self._judge(second)
            if problem2 is not None:
                self.fail(item, f"invalid JSON answer after one repair retry: {problem2}", "InvalidJSON")
                return
        self._store(item, calls, answer, value)

    def _image(self, item: EnrichItem) -> bytes | None:
        if item.image_path is None:
            return item.image_bytes
        root = Path(self.ctx.root)
        data = read_image(root, str(Path(item.image_path).relative_to(root.resolve())))
        if sha256_hex(data) != item.image_sha:
            raise InputError("the image changed while the run was going; the next run sends it again")
        return data

    def _judge(self, out: ChatResult) -> tuple[str, Any, str | None]:
        """(answer, parsed value, problem); a truncated answer is never sent for repair."""
        if self.check is None:
            return out.text, None, None
        value, problem = self.check(out.text)
        if out.finish_reason == "length":
            return out.text, value, None
        return out.text, value, problem

    def _store(self, item: EnrichItem, calls: list[ChatResult], answer: str, value: Any) -> None:
        last = calls[-1]
        truncated = last.finish_reason == "length"
        ins = sum(c.usage.input_tokens for c in calls)
        outs = sum(c.usage.output_tokens for c in calls)
        row = {
            "key": item.key,
            "template_hash": self.ctx.template_hash,
            "unit_key": item.unit_key,
            **self._answer(answer, value),
            "truncated": truncated,
            "repaired": len(calls) > 1,
            "finish_reason": last.finish_reason,
            "input_tokens": ins,
            "output_tokens": outs,
            "cost_usd": self.price(ins, outs),
            "attempts": sum(c.info.attempts for c in calls),
            "request_id": last.request_id,
            "model": last.model or self.ctx.model,
            "run_id": self.ctx.run_id,
            "created_at": time.time(),
        }
        self.rows.append(row)
        self.res.enriched += 1
        self.res.truncated += truncated
        self.res.repaired += len(calls) > 1

    def _answer(self, answer: str, value: Any) -> dict[str, Any]:
        if self.ctx.schema is None:
            return {"text": answer}
        obj = value if isinstance(value, dict) else {}
        out: dict[str, Any] = {"raw": answer}
        for name, prop in self.ctx.schema["properties"].items():
            out[name] = _typed(_kind(prop), obj.get(name))
        return out

    def flush(self) -> None:
        if not self.rows:
            return
        ctx = self.ctx
        part = Layout(Path(ctx.root)).enrich_parts(ctx.table) / f"{ctx.run_id}-{self.rows[0]['unit_key'][:16]}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=self.arrow)
        write_parquet_atomic(
            table, part, {"run_id": ctx.run_id, "template_hash": ctx.template_hash, "duckdb_types": self.duck_types}
        )
        self.res.parts.append(str(part))
        self.rows = []

    def close(self) -> EnrichResult:
        self.flush()
        if self.errors:
            name = (
                f"{self.ctx.run_id}-enrich-{self.errors[0].key[:16] if self.errors[0].key else self.errors[0].error_id}"
            )
            self.res.error_part = str(write_errors(Layout(Path(self.ctx.root)).error_parts, name, self.errors))
        return self.res


def _typed(kind: str, v: Any) -> Any:
    """A validated JSON value in its column's type; a value of another type is kept as None."""
    if v is None:
        return None
    if kind == "json":
        return json.dumps(v, ensure_ascii=False)
    ok = {
        "string": isinstance(v, str),
        "boolean": isinstance(v, bool),
        "integer": isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
        "number": isinstance(v, (int, float)) and not isinstance(v, bool),
    }[kind]
    if not ok:
        return None
    return int(v) if kind == "integer" else float(v) if kind == "number" else v


def enrich_items(
    items: Sequence[EnrichItem],
    client: QuantClient,
    ctx: EnrichContext,
    *,
    budget: Budget,
    prices: PriceTable,
    on_item: Callable[[], None] | None = None,
) -> EnrichResult:
    """Send ``items`` one after another; every failure becomes an error record, never an exception."""
    shard = _Shard(ctx, client, budget, prices)
    try:
        for item in items:
            shard.run(item)
            if on_item:
                on_item()
    finally:
        result = shard.close()  # what was answered is written even when an AuthError stops us
    return result
