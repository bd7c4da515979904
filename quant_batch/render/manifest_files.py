"""Reading manifest files (.jsonl, .csv, .yaml) into raw rows, each with its line number.

A YAML file with a syntax error is salvaged: each top-level list item is parsed on its own so the
good rows still load and the bad ones are reported at their own lines.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from quant_batch.render.fields import _unknown

if TYPE_CHECKING:
    from quant_batch.render.resolve import _Resolver


@dataclass
class _RawRow:
    """One row as read: every reader knows the line it starts on."""

    line: int
    data: Any  # dict when it parsed
    error: str | None = None
    from_csv: bool = False


def _read_jsonl(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield _RawRow(number, json.loads(line))
        except json.JSONDecodeError as exc:
            yield _RawRow(number, line, f"invalid JSON: {exc.msg} (column {exc.colno})")


def _read_csv(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    for name in {h for h in header if header.count(h) > 1 or not h}:
        resolver.problem(1, name or None, "column names must be unique and not empty")
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _RawRow(start, None, f"unreadable CSV: {exc}")
            return
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield _RawRow(start, cells, f"row has {len(cells)} cells but the header has {len(header)}")
            continue
        yield _RawRow(start, {h: c for h, c in zip(header, cells) if h and c.strip()}, from_csv=True)


def _read_yaml(text: str, resolver: _Resolver) -> Iterator[_RawRow]:
    """Rows of a YAML list, or of ``{defaults:, rows:}``; lines come from each row's node."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        yield from _salvage_yaml(text, exc, resolver)
        return
    yield from _yaml_root(root, resolver, strict=True)


def _yaml_root(root: yaml.Node | None, resolver: _Resolver, strict: bool) -> Iterator[_RawRow]:
    rows: Any = root
    if isinstance(root, yaml.MappingNode):
        rows = None
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            if key_node.value == "defaults":
                try:
                    resolver.set_defaults(_construct(value_node), line)
                except (yaml.YAMLError, ValueError) as exc:
                    resolver.problem(line, "defaults", f"invalid YAML: {exc}")
            elif key_node.value == "rows":
                rows = value_node
            else:
                resolver.problem(line, str(key_node.value), _unknown(str(key_node.value), ["defaults", "rows"]))
    if isinstance(rows, yaml.SequenceNode):
        for node in rows.value:
            try:
                yield _RawRow(node.start_mark.line + 1, _construct(node))
            except (yaml.YAMLError, ValueError) as exc:
                yield _RawRow(node.start_mark.line + 1, None, f"invalid YAML: {exc}")
    elif rows is not None and not (rows.tag.endswith(":null") and not strict):
        resolver.problem(
            rows.start_mark.line + 1, None, "expected a list of rows, or a mapping with 'defaults' and 'rows'"
        )


def _salvage_yaml(text: str, error: yaml.YAMLError, resolver: _Resolver) -> Iterator[_RawRow]:
    """After a syntax error, parse each top-level list item on its own so good rows still load.

    Lines outside the part being parsed are blanked rather than cut, so every mark keeps its
    real line number. The rest (``defaults:``, ``rows:``) is parsed first, for its defaults.
    """
    lines = text.split("\n")
    items = [i for i, s in enumerate(lines) if re.match(r" *-( |$)", s)]
    indent = min((_indent(lines[i]) for i in items), default=0)
    starts = [i for i in items if _indent(lines[i]) == indent]
    chunks, rest = [], list(lines)
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        # a row ends at the next item or at a less indented line such as a following top-level key
        end = next(
            (
                i
                for i in range(a + 1, b)
                if lines[i].strip() and not lines[i].lstrip().startswith("#") and _indent(lines[i]) <= indent
            ),
            b,
        )
        chunks.append((a, end))
        rest[a:end] = [""] * (end - a)
    failed = False
    try:
        head = yaml.compose("\n".join(rest), Loader=yaml.SafeLoader)
        if isinstance(head, yaml.MappingNode):
            yield from _yaml_root(head, resolver, strict=False)
    except yaml.YAMLError as exc:
        failed = True
        resolver.problem(_yaml_line(exc, 0), None, f"invalid YAML: {_yaml_reason(exc)}")
    for a, end in chunks:
        try:
            node = yaml.compose("\n" * a + "\n".join(lines[a:end]), Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            failed = True
            yield _RawRow(
                a + 1, "\n".join(lines[a:end]), f"invalid YAML: {_yaml_reason(exc)} (line {_yaml_line(exc, a)})"
            )
            continue
        yield from _yaml_root(node, resolver, strict=False)
    if not failed:  # the error is not inside one row: report it where yaml found it
        resolver.problem(_yaml_line(error, 0), None, f"invalid YAML: {_yaml_reason(error)}")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _yaml_line(exc: yaml.YAMLError, fallback: int) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line if mark else fallback) + 1


def _yaml_reason(exc: yaml.YAMLError) -> str:
    return " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc)


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


_READERS: dict[str, Callable[[str, _Resolver], Iterator[_RawRow]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
}
