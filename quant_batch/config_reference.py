"""Generate ``docs/config-reference.md`` from the run-config models, so the docs cannot drift.

``python -m quant_batch.config_reference`` rewrites the file; ``--check`` exits 1 when the
committed file differs from what the models say (a test runs the same comparison). Every field's
line comes from its ``Field(description=...)``: document a setting there, not here.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.corpus.chunking import ChunkSettings
from quant_batch.corpus.sources import FolderSource, TableSource
from quant_batch.embed.config import ContextualChunks, CorpusConfig
from quant_batch.enrich.config import EnrichConfig, SqlSource
from quant_batch.render.config import RenderConfig
from quant_batch.render.fields import RenderDefaults
from quant_batch.store.storage_config import StorageConfig

DEFAULT_OUTPUT = Path("docs/config-reference.md")

# (model, where it appears); top-level run configs first, then the blocks they nest
SECTIONS: tuple[tuple[type[BaseModel], str], ...] = (
    (CorpusConfig, "`quant-batch embed` / `plan` run config ([configs/corpus.yaml](../configs/corpus.yaml))"),
    (RenderConfig, "`quant-batch render` run config ([configs/render.yaml](../configs/render.yaml))"),
    (EnrichConfig, "`quant-batch enrich` run config ([configs/enrich.yaml](../configs/enrich.yaml))"),
    (FolderSource, "an entry of `sources` (CorpusConfig) with `path`"),
    (TableSource, "an entry of `sources` (CorpusConfig) with `table`"),
    (ChunkSettings, "`chunking` (CorpusConfig)"),
    (ContextualChunks, "`contextual_chunks` (CorpusConfig)"),
    (RenderDefaults, "`defaults` (RenderConfig)"),
    (SqlSource, "`source` (EnrichConfig) when it is a query"),
    (RateLimits, "`rate_limits` (every run config)"),
    (ApiConfig, "`api` (every run config)"),
    (StorageConfig, "`storage` (embed and render run configs), for bucket outputs and sources"),
)

_BOUNDS = ((at.Ge, ">=", "ge"), (at.Gt, ">", "gt"), (at.Le, "<=", "le"), (at.Lt, "<", "lt"))


def render_reference() -> str:
    """The whole reference as Markdown."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the config models by `python -m quant_batch.config_reference`; do not edit by hand.",
        "A field's description is also shown when a config gives it a bad value.",
        "",
    ]
    for model, where in SECTIONS:
        out += _section(model, where)
    return "\n".join(out).rstrip("\n") + "\n"


def _section(model: type[BaseModel], where: str) -> list[str]:
    lines = [f"## {model.__name__}", "", f"{_first_line(model.__doc__)} Used as {where}.", ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        cells = (f"`{name}`", _type_name(info.annotation) + _bounds(info), _default(info), info.description or "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines + [""]


def _first_line(doc: str | None) -> str:
    text = (doc or "").strip().splitlines()
    return text[0] if text else ""


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in args)
    if origin in (Union, types.UnionType) and set(args) == {Path, str}:
        return "path or URI"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else ""
        )
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if len(args) > 1 and hasattr(annotation, "__metadata__"):  # Annotated[...]: the wrapped type
        return _type_name(args[0])
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    found = []
    for meta in info.metadata:
        for kind, sign, attr in _BOUNDS:
            if isinstance(meta, kind):
                found.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, at.MinLen):
            found.append(f"at least {meta.min_length}")
    return f" ({', '.join(found)})" if found else ""


def _default(info: FieldInfo) -> str:
    value = info.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, str) and "\n" in value:
        return "(built-in prompt)"
    if isinstance(value, tuple):
        return "[" + ", ".join(f"`{v}`" for v in value) + "]"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def main(argv: list[str] | None = None) -> int:
    """Write the reference (or, with ``--check``, compare it); returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if not a.startswith("--")]
    target = Path(paths[0]) if paths else DEFAULT_OUTPUT
    text = render_reference()
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{target} is out of date: run python -m quant_batch.config_reference", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
