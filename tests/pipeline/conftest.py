"""Helpers for pipeline tests: a corpus copy per test, a client on the emulator, DuckDB reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = REPO / "data" / "corpus"


def api_calls(emulator, endpoint: str = "embeddings") -> int:
    return sum(emulator.stats()["by_endpoint"].get(endpoint, {}).values())


def query(out: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def corpus_config(corpus: Path, out: Path, **kw) -> CorpusConfig:
    data = {
        "sources": [{"path": str(corpus)}],
        "out": str(out),
        "chunking": {"max_chars": 600, "overlap_chars": 80, "min_chars": 150},
    }
    data.update(kw)
    return parse_config(CorpusConfig, data, source="test")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A private copy of the sample corpus that a test may edit."""
    dst = tmp_path / "corpus"
    shutil.copytree(SAMPLE_CORPUS, dst)
    return dst
