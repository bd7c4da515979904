"""Paths a real user has: quotes, semicolons, unicode, spaces in output, source and manifest folders.

Every path reaches DuckDB as a bound parameter, so none of these can break a query or, worse,
pay for every batch and then fail while publishing (issue 12, item 10).
"""

from __future__ import annotations

import shutil

import pytest

from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.query.search import search
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from quant_batch.store.catalog import Catalog
from quant_batch.store.layout import Layout
from tests.reliability.conftest import REPO, fast_client, query, short_text

NAMES = ["o'brien", "semi;colon'); DROP TABLE runs; --", "ünïcødé ✓ 数据", "with  spaces"]


def _calls(emulator, endpoint: str) -> int:
    return sum(emulator.stats()["by_endpoint"].get(endpoint, {}).values())


@pytest.mark.parametrize("name", NAMES)
def test_embed_rerun_search_and_rebuild_in_hostile_folders(tmp_path, emulator, name):
    docs = tmp_path / f"src {name}" / name
    docs.mkdir(parents=True)
    for i in range(6):
        (docs / f"{name} note {i}.md").write_text(f"# {name}\n\n" + " ".join(short_text(i * 3 + j) for j in range(3)))
    out = tmp_path / f"out {name}"
    cfg = parse_config(CorpusConfig, {"sources": [{"path": str(docs)}], "out": str(out)}, source="test")
    with fast_client(emulator) as client:
        first = run_corpus(cfg, client)
        assert first.status == "completed", first.reason
        calls = _calls(emulator, "embeddings")
        again = run_corpus(cfg, client)
        assert again.status == "completed" and _calls(emulator, "embeddings") == calls  # nothing resent
        hits = search(out, short_text(4), client, k=1)
    assert hits[0].source_path == f"{name}/{name} note 1.md"
    assert query(out, "SELECT count(*) FROM runs") == [(2,)]
    Layout(out).catalog.unlink()
    with Catalog(Layout(out)) as cat:
        assert cat.sync() > 0
    assert query(out, "SELECT count(DISTINCT doc_id) FROM chunks") == [(6,)]


@pytest.mark.parametrize("name", NAMES)
def test_render_from_a_hostile_manifest_folder(tmp_path, emulator, name):
    folder = tmp_path / name
    (folder / name).mkdir(parents=True)
    shutil.copy(REPO / "quant_batch" / "data" / "sample" / "images" / "mug.png", folder / name / "mug.png")
    manifest = folder / f"{name}.jsonl"
    manifest.write_text(
        '{"id": "plain", "prompt": "a lighthouse at dusk", "width": 320, "height": 320, "seed": 1}\n'
        '{"id": "variation", "task": "IMAGE_VARIATION", "prompt": "a mug", "images": ["' + name + '/mug.png"], '
        '"width": 320, "height": 320, "seed": 2}\n',
        encoding="utf-8",
    )
    out = tmp_path / f"renders {name}"
    cfg = parse_config(RenderConfig, {"manifest": str(manifest), "out": str(out)}, source="test")
    with fast_client(emulator) as client:
        summary = render_manifest(cfg, client)
        assert summary.status == "completed", summary.reason
        again = render_manifest(cfg, client)
    assert again.stats.get("rendered", 0) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["plain_0.png", "variation_0.png"]
    assert query(out, "SELECT count(*) FROM images WHERE status = 'ok'") == [(2,)]
