"""What a command-line target is: a corpus to embed, an image manifest to render, or an enrich config.

``embed`` and ``render`` know what they were given; ``plan`` and ``replay`` decide from the target:

- a folder, a single document (``.md .txt .html .pdf .docx``) or a YAML config without
  ``manifest:``/``rows:``: a corpus;
- an enrich YAML (``catalog`` + ``source`` + ``template``): enrichment;
- a YAML list of rows or a YAML config with ``manifest:``/``rows:``: a render manifest;
- a table (``.parquet .csv .jsonl .ndjson``), by its columns (the header, or the first JSON
  object): a manifest when a column is an image-request field (``prompt``, ``task``/``taskType``,
  ``width``, ``seed``, ``textToImageParams``, ...); otherwise a corpus table when it has the text
  column (``text`` unless ``--text-column``). Parquet is never a manifest.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Literal, TextIO

from quant_batch.store.location import is_uri

TargetKind = Literal["corpus", "render", "enrich"]
TABLES = (".parquet", ".csv", ".jsonl", ".ndjson")


def target_kind(target: Path | str, *, text_column: str = "text") -> TargetKind:
    """Corpus, render or enrich, by the rule in this module's docstring (a bucket URI too)."""
    if is_uri(target):
        return _uri_kind(str(target), text_column)
    target = Path(target)
    suffix = target.suffix.lower()
    if target.is_dir() or not target.is_file():
        return "corpus"
    if suffix in (".yaml", ".yml"):
        return _yaml_kind(target)
    if suffix == ".parquet" or suffix not in TABLES:
        return "corpus"
    columns = table_columns(target)
    if columns & _manifest_fields():
        return "render"
    return "corpus" if text_column in columns else "render"


def _uri_kind(uri: str, text_column: str) -> TargetKind:
    """A bucket target: a prefix or a document is a corpus; a table goes by its columns (run
    configs are local files)."""
    suffix = Path(uri.split("?", 1)[0]).suffix.lower()
    if uri.endswith("/") or suffix not in TABLES or suffix == ".parquet":
        return "corpus"
    from quant_batch.corpus.bucket import object_opener
    from quant_batch.errors import QuantError

    try:
        with object_opener(uri, None)() as fh:
            columns = _columns(suffix, io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
    except (QuantError, OSError, ValueError, csv.Error, UnicodeDecodeError):
        return "corpus"  # unreadable: the stage's own reader reports it
    if columns & _manifest_fields():
        return "render"
    return "corpus" if text_column in columns else "render"


def _columns(suffix: str, fh: TextIO) -> set[str]:
    """The CSV header, or the keys of the first JSON object of a JSONL file."""
    if suffix == ".csv":
        return set(next(csv.reader(fh), []))
    for line in fh:
        if line.strip():
            record = json.loads(line)
            return set(record) if isinstance(record, dict) else set()
    return set()


def table_columns(path: Path) -> set[str]:
    """Column names of a table file: the CSV header, the first JSON object's keys, the Parquet schema."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return set(pq.ParquetFile(path).schema_arrow.names)
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return _columns(suffix, fh)
    except (OSError, ValueError, csv.Error, UnicodeDecodeError):
        return set()  # unreadable: the stage's own reader reports it with the line


def _yaml_kind(path: Path) -> TargetKind:
    import yaml

    from quant_batch.enrich.config import is_enrich_config

    if is_enrich_config(path):
        return "enrich"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "corpus"  # the corpus loader reports the file and line
    manifest = isinstance(data, list) or (isinstance(data, dict) and ("manifest" in data or "rows" in data))
    return "render" if manifest else "corpus"


def _manifest_fields() -> set[str]:
    from quant_batch.render.fields import ALIASES, CONFIG, FIELDS
    from quant_batch.render.rules import PARAMS_KEY

    # "text" is a prompt alias in manifests but the default text column of a corpus table: it decides nothing
    return (set(FIELDS) | set(ALIASES) | set(PARAMS_KEY.values()) | {CONFIG}) - {"text"}
