"""Sources: the rows an enrichment reads from a catalog, and the plan of rows still to send.

Every source is a read-only query over the catalog with a key column. A row the template cannot
render, a missing image, a duplicate or empty key becomes an error record; the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import TemplateError

from quant_batch.enrich.config import EnrichConfig, SqlSource
from quant_batch.enrich.prompt import Prompt, image_format, unit_key
from quant_batch.errors import ConfigError, InputError
from quant_batch.hashing import sha256_hex
from quant_batch.store.records import ErrorRecord

# (query, key expression) of the built-in sources; documents carry the text of their live chunks
BUILTIN = {
    "documents": (
        "SELECT d.doc_id, d.source_path, string_agg(c.text, '\n' ORDER BY c.position) AS text "
        "FROM documents d JOIN live_chunks c USING (doc_id) GROUP BY ALL",
        "doc_id",
    ),
    "chunks": ("SELECT * FROM live_chunks", "chunk_id"),
    "images": ("SELECT * FROM images WHERE status = 'ok'", "id || '_' || n"),
}
_KEY = "__enrich_key__"


@dataclass(frozen=True)
class EnrichItem:
    """One row to send; plain data so it can go to any worker."""

    key: str
    unit_key: str
    prompt: str
    est_input_tokens: int
    image_path: str | None = None
    image_bytes: bytes | None = field(default=None, repr=False)
    image_sha: str | None = None


@dataclass
class EnrichPlan:
    items: list[EnrichItem] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    rows: int = 0
    unchanged: int = 0
    skipped_failed: int = 0
    skipped_truncated: int = 0
    est_input_tokens: int = 0


def source_query(cfg: EnrichConfig) -> tuple[str, str]:
    """The source's SELECT and the SQL expression of its key."""
    if isinstance(cfg.source, SqlSource):
        _check_select(cfg.source.sql)
        return cfg.source.sql.strip().rstrip(";"), '"' + cfg.source.key_column.replace('"', '""') + '"'
    return BUILTIN[cfg.source]


def _check_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(f"source.sql: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ConfigError("source.sql: must be exactly one SELECT statement (the catalog is read, never changed)")


def iter_source(
    con: duckdb.DuckDBPyConnection, cfg: EnrichConfig, batch: int = 500
) -> tuple[list[str], Iterator[tuple[Any, dict]]]:
    """Columns of the source, and its rows as ``(key, columns)``."""
    sql, key_expr = source_query(cfg)
    cur = con.cursor()
    try:
        cur.execute(f"SELECT CAST(({key_expr}) AS VARCHAR) AS {_KEY}, * FROM ({sql}) AS src")
    except duckdb.Error as exc:
        cur.close()
        hint = "" if isinstance(cfg.source, SqlSource) else " (does this catalog hold that table?)"
        raise ConfigError(f"source: {cfg.source_kind}: {str(exc).splitlines()[0]}{hint}") from None
    columns = [d[0] for d in cur.description][1:]

    def rows() -> Iterator[tuple[Any, dict]]:
        try:
            while chunk := cur.fetchmany(batch):
                for r in chunk:
                    yield r[0], dict(zip(columns, r[1:], strict=True))
        finally:
            cur.close()

    return columns, rows()


def read_image(root: Path, value: Any) -> bytes:
    """An image from a column: bytes as they are, or a path relative to (and inside) ``root``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str) or not value:
        raise InputError("the image column is empty")
    path = (root / value).resolve()
    if root.resolve() not in path.parents:
        raise InputError(f"image {value!r} is outside the catalog folder")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"image {value!r} cannot be read: {exc.strerror}") from None


def plan_enrich(
    con: duckdb.DuckDBPyConnection,
    cfg: EnrichConfig,
    prompt: Prompt,
    run_id: str,
    *,
    done: set[str],
    dead: set[str],
    truncated: set[str],
) -> EnrichPlan:
    """Render every source row and keep those whose unit key the ledger has not seen."""
    columns, rows = iter_source(con, cfg)
    prompt.check_columns(columns, cfg.source_kind)
    image_col = cfg.image_field
    if image_col and image_col not in columns:
        raise ConfigError(
            f"image_column: {image_col!r} is not a column of the {cfg.source_kind} source ({', '.join(columns)})"
        )
    plan, seen = EnrichPlan(), set[str]()
    for key, row in rows:
        plan.rows += 1
        item = _item(cfg, prompt, key, row, image_col, seen, plan, run_id)
        if item is None:
            continue
        if item.unit_key in done:
            plan.unchanged += 1
        elif item.unit_key in dead:
            plan.skipped_failed += 1
        elif item.unit_key in truncated:
            plan.skipped_truncated += 1
        else:
            plan.items.append(item)
            plan.est_input_tokens += item.est_input_tokens
    return plan


def _item(
    cfg: EnrichConfig,
    prompt: Prompt,
    key: Any,
    row: dict,
    image_col: str | None,
    seen: set[str],
    plan: EnrichPlan,
    run_id: str,
) -> EnrichItem | None:
    def fail(message: str, kind: str) -> None:
        plan.errors.append(ErrorRecord(run_id, "enrich", message, source_path=cfg.table, doc_id=key, kind=kind))

    if key is None or key == "":
        fail("the source row has no key", "InputError")
        return None
    if key in seen:
        fail("duplicate key in the source; only its first row is enriched", "InputError")
        return None
    seen.add(key)
    try:
        text = prompt.render(row)
    except TemplateError as exc:
        fail(f"template: {exc.message}", "TemplateError")
        return None
    except (TypeError, ValueError, ArithmeticError) as exc:
        fail(f"template: {type(exc).__name__}: {exc}", "TemplateError")
        return None
    if not text:
        fail("the template rendered an empty message", "TemplateError")
        return None
    path, data, sha = None, None, None
    if image_col:
        value = row.get(image_col)
        try:
            image = read_image(cfg.catalog, value)
        except InputError as exc:
            fail(str(exc), "InputError")
            return None
        if image_format(image) is None:
            fail("the image is not PNG, JPEG, GIF or WebP", "InputError")
            return None
        sha = sha256_hex(image)
        if isinstance(value, str):
            path = str((cfg.catalog / value).resolve())
        else:
            data = image
    return EnrichItem(
        key,
        unit_key(prompt.hash, key, text, sha),
        text,
        prompt.estimate_input_tokens(text, sha is not None),
        path,
        data,
        sha,
    )
