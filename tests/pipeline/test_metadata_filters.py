"""Metadata kept with chunks, returned with hits, and filters bound as parameters (issue 13, item 5)."""

from __future__ import annotations

import json

from quant_batch.embed.run import run_corpus
from quant_batch.query.search import search

from .conftest import api_calls, corpus_config

ROWS = [
    {
        "id": "a1",
        "text": "The harbour ferry leaves at nine every morning in summer.",
        "lang": "en",
        "team": "ops",
        "n": 3,
    },
    {
        "id": "a2",
        "text": "Le ferry du port part à neuf heures chaque matin en été.",
        "lang": "fr",
        "team": "ops",
        "n": 4,
    },
    {
        "id": "a3",
        "text": "The harbour ferry timetable changes in winter to ten o'clock.",
        "lang": "en",
        "team": "web",
        "n": 3,
    },
]


def _setup(tmp_path):
    table = tmp_path / "tables" / "faq.jsonl"
    table.parent.mkdir()
    table.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "ferry.md").write_text("Ferry notes: the harbour ferry also runs on public holidays.\n")
    return corpus_config(
        docs,
        tmp_path / "out",
        sources=[
            {"path": str(docs)},
            {"table": str(table), "metadata_columns": ["lang", "team", "n"]},
        ],
    )


def test_hits_carry_metadata_and_filters_narrow_them(tmp_path, client):
    cfg = _setup(tmp_path)
    assert run_corpus(cfg, client).status == "completed"
    hits = search(cfg.out, "harbour ferry morning", client, k=10)
    by_id = {h.doc_id: h for h in hits}
    assert by_id["faq.jsonl#a1"].metadata == {"lang": "en", "team": "ops", "n": 3}
    note = by_id["notes/ferry.md"].metadata
    assert note["path"] == "notes/ferry.md" and note["extension"] == ".md" and note["modified"].startswith("20")

    en = search(cfg.out, "harbour ferry morning", client, k=10, where={"lang": "en"})
    assert {h.doc_id for h in en} == {"faq.jsonl#a1", "faq.jsonl#a3"}
    assert {h.doc_id for h in search(cfg.out, "ferry", client, where={"lang": "en", "team": "web"})} == {"faq.jsonl#a3"}
    assert {h.doc_id for h in search(cfg.out, "ferry", client, where={"n": 4})} == {"faq.jsonl#a2"}
    assert {h.doc_id for h in search(cfg.out, "ferry", client, source="notes/*")} == {"notes/ferry.md"}
    hostile = search(cfg.out, "ferry", client, where={"lang') OR true --": "x"}, source="'; DROP TABLE x; --")
    assert hostile == []


def test_changed_metadata_is_republished_without_embedding(tmp_path, client, emulator):
    cfg = _setup(tmp_path)
    run_corpus(cfg, client)
    calls = api_calls(emulator)
    table = tmp_path / "tables" / "faq.jsonl"
    table.write_text(table.read_text(encoding="utf-8").replace('"team": "web"', '"team": "docs"'), encoding="utf-8")
    s = run_corpus(cfg, client)
    assert s.status == "completed" and api_calls(emulator) == calls  # same text, same keys: free
    assert {h.doc_id for h in search(cfg.out, "ferry", client, where={"team": "docs"})} == {"faq.jsonl#a3"}


def test_cli_search_filters(tmp_path, client, api_env):
    from typer.testing import CliRunner

    from quant_batch.cli import app

    cfg = _setup(tmp_path)
    run_corpus(cfg, client)
    res = CliRunner().invoke(app, ["search", str(cfg.out), "ferry", "--where", "lang=fr", "--source", "faq*"])
    assert res.exit_code == 0, res.output
    assert "port part" in res.output and "harbour" not in res.output
    bad = CliRunner().invoke(app, ["search", str(cfg.out), "ferry", "--where", "lang"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
