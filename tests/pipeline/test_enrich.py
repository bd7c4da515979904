"""Chat enrichment end to end: a real index / render catalog, the emulator over loopback, DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.config_files import parse_config
from quant_batch.embed.run import run_corpus
from quant_batch.enrich.config import EnrichConfig
from quant_batch.enrich.prompt import repair_request
from quant_batch.enrich.run import enrich_table
from quant_batch.errors import ConfigError
from quant_batch.query.estimate import plan_enrich_dry
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from quant_batch.store.catalog import Catalog
from quant_batch.store.layout import Layout
from tests.conftest import TEST_TOKEN
from tests.pipeline.conftest import api_calls, corpus_config, query

SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "words": {"type": "integer", "minimum": 1},
        "score": {"type": "number"},
        "faq": {"type": "boolean"},
        "meta": {"type": "object", "properties": {"lang": {"type": "string"}}},
    },
    "required": ["summary", "keywords", "words", "score", "faq"],
}
TEMPLATE = "Summarise {{ source_path }} and list its keywords.\n\n{{ text }}"


def _cfg(catalog: Path, **kw) -> EnrichConfig:
    data = {"catalog": str(catalog), "source": "documents", "template": TEMPLATE, "concurrency": 4, **kw}
    return parse_config(EnrichConfig, data, source="test")


def _chat_calls(emulator) -> int:
    return api_calls(emulator, "chat")


@pytest.fixture
def index(corpus, tmp_path, client, emulator) -> Path:
    out = tmp_path / "index"
    assert run_corpus(corpus_config(corpus, out), client).status == "completed"
    emulator.reset()
    return out


def _documents(index: Path) -> int:
    return query(index, "SELECT count(*) FROM documents")[0][0]


def test_documents_with_a_schema_become_typed_columns_and_rerun_for_free(index, client, emulator):
    n = _documents(index)
    summary = enrich_table(_cfg(index, json_schema=SCHEMA, name="summaries"), client)

    assert summary.status == "completed", summary.reason
    assert summary.stats["enriched"] == n > 0
    assert _chat_calls(emulator) == n == summary.api_calls
    types = {r[0]: r[1] for r in query(index, "DESCRIBE enrich_summaries")}
    assert {k: types[k] for k in SCHEMA["properties"]} == {
        "summary": "VARCHAR",
        "keywords": "JSON",
        "words": "BIGINT",
        "score": "DOUBLE",
        "faq": "BOOLEAN",
        "meta": "JSON",
    }
    assert types["truncated"] == "BOOLEAN" and types["input_tokens"] == "BIGINT"
    rows = query(
        index,
        "SELECT key, summary, json_array_length(keywords), truncated, finish_reason, input_tokens, "
        "output_tokens, request_id, model, run_id FROM enrich_summaries",
    )
    assert {r[0] for r in rows} == {r[0] for r in query(index, "SELECT doc_id FROM documents")}
    for _key, text, kw, truncated, finish, ins, outs, rid, model, run_id in rows:
        assert text and kw >= 1 and truncated is False and finish == "stop"
        assert ins > 0 and outs > 0 and rid and model == "amazon.nova-lite-v1:0" and run_id == summary.run_id
    run = query(index, "SELECT kind, status, api_calls, cost_usd, stats FROM runs WHERE run_id = ?", [summary.run_id])[
        0
    ]
    assert run[:3] == ("enrich", "completed", n) and run[3] > 0
    assert json.loads(run[4])["input_tokens"] == summary.stats["input_tokens"] > 0

    emulator.reset()
    again = enrich_table(_cfg(index, json_schema=SCHEMA, name="summaries"), client)
    assert again.status == "completed" and again.stats["rows_unchanged"] == n
    assert _chat_calls(emulator) == 0 == again.api_calls

    edited = enrich_table(_cfg(index, json_schema=SCHEMA, name="summaries", template=TEMPLATE + "\nBe brief."), client)
    assert edited.stats["enriched"] == n and _chat_calls(emulator) == n
    assert query(index, "SELECT count(*), count(DISTINCT template_hash) FROM enrich_summaries")[0] == (2 * n, 2)
    assert query(index, "SELECT count(*), min(run_id) FROM enrich_summaries_current")[0] == (n, edited.run_id)

    # the parts are the truth: a rebuilt catalog holds the same answers
    before = query(index, "SELECT * EXCLUDE (part) FROM enrich_summaries ORDER BY key, template_hash")
    (index / "catalog.duckdb").unlink()
    with Catalog(Layout(index)) as cat:
        cat.sync()
    assert query(index, "SELECT * EXCLUDE (part) FROM enrich_summaries ORDER BY key, template_hash") == before


def test_invalid_json_gets_one_repair_retry_then_an_error_row(index, client, emulator):
    n = _documents(index)
    emulator.set_faults(invalid_json_rate=1.0)
    summary = enrich_table(_cfg(index, json_schema=SCHEMA), client)

    assert _chat_calls(emulator) == 2 * n == summary.api_calls
    assert summary.status == "errors" and summary.stats["failed"] == n == summary.errors
    errors = query(index, "SELECT kind, source_path, message, retryable FROM errors WHERE stage = 'enrich'")
    assert len(errors) == n
    assert all(e[0] == "InvalidJSON" and e[1] == "enrich_documents" and "repair" in e[2] and not e[3] for e in errors)
    assert not _has(index, "enrich_documents")  # no answer was stored
    emulator.reset()  # and every fault off
    later = enrich_table(_cfg(index, json_schema=SCHEMA), client)
    assert later.stats["skipped_failed"] == n and _chat_calls(emulator) == 0
    replayed = enrich_table(_cfg(index, json_schema=SCHEMA), client, replay=True)
    assert replayed.status == "completed" and replayed.stats["enriched"] == n and _chat_calls(emulator) == n


def test_the_repair_request_carries_the_answer_and_the_problem():
    request = {"modelId": "m", "messages": [{"role": "user", "content": "Summarise"}]}
    repair = repair_request(request, '{"summary": ', "not valid JSON (Expecting value at character 12)")
    assert [m["role"] for m in repair["messages"]] == ["user", "assistant", "user"]
    assert repair["messages"][1]["content"] == '{"summary": '
    assert "Expecting value at character 12" in repair["messages"][2]["content"]
    assert request["messages"] == [{"role": "user", "content": "Summarise"}]  # the original is untouched


def _has(out: Path, table: str) -> bool:
    return bool(query(out, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])[0][0])


def test_repair_retry_fixes_an_answer_that_fails_the_schema(index, client, emulator):
    # the emulator's JSON mode always validates; a stricter schema check here cannot be met by a
    # truncated first answer, so use a 50% fault rate and check every stored row validates
    emulator.set_faults(invalid_json_rate=0.5)
    summary = enrich_table(_cfg(index, json_schema=SCHEMA), client)
    n = _documents(index)
    assert summary.stats["enriched"] + summary.stats["failed"] == n
    assert summary.api_calls == n + summary.stats["repaired"] + summary.stats["failed"]
    assert query(index, "SELECT count(*) FROM enrich_documents WHERE repaired")[0][0] == summary.stats["repaired"]
    assert query(index, "SELECT count(*) FROM enrich_documents WHERE summary IS NULL")[0][0] == 0


def test_length_finish_is_stored_as_truncated_and_flagged(index, client, emulator):
    n = _documents(index)
    emulator.set_faults(length_rate=1.0)
    summary = enrich_table(_cfg(index, name="notes"), client)

    assert summary.status == "errors" and "truncated" in summary.reason
    assert summary.stats["truncated"] == n and summary.errors == 0 and _chat_calls(emulator) == n
    assert query(
        index, "SELECT count(*) FILTER (truncated), count(*) FILTER (finish_reason = 'length') FROM enrich_notes"
    )[0] == (n, n)
    assert {r[0] for r in query(index, "DESCRIBE enrich_notes")} >= {"text", "truncated"}
    # with a schema a cut-off JSON answer is kept (raw) and flagged, never sent for repair
    emulator.reset()  # clears faults too
    emulator.set_faults(length_rate=1.0)
    with_schema = enrich_table(_cfg(index, name="typed", json_schema=SCHEMA), client)
    assert _chat_calls(emulator) == n and with_schema.stats["truncated"] == n
    assert query(index, "SELECT count(*) FROM enrich_typed WHERE truncated AND raw <> ''")[0][0] == n
    # the next run does not pay again for the same cut-off answers unless asked to
    emulator.reset()
    again = enrich_table(_cfg(index, name="notes"), client)
    assert again.stats["skipped_truncated"] == n and _chat_calls(emulator) == 0


def test_image_captions_for_a_render_run(tmp_path, api_env, client):
    manifest = tmp_path / "prompts.jsonl"
    rows = [
        {"id": "fox", "prompt": "A red fox in the snow", "width": 320, "height": 320, "seed": 1},
        {"id": "boat", "prompt": "A sailing boat at dusk", "width": 320, "height": 320, "seed": 2},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    renders = tmp_path / "renders"
    with build_client(ApiConfig(max_attempts=3), RateLimits(), pool_size=2, images=True) as image_client:
        cfg = parse_config(RenderConfig, {"manifest": str(manifest), "out": str(renders)}, source="test")
        assert render_manifest(cfg, image_client).status == "completed"
    api_env.reset()

    summary = enrich_table(
        _cfg(
            renders,
            source="images",
            name="captions",
            template="Write a one-line caption for this image. Prompt was: {{ prompt }}",
        ),
        client,
    )
    assert summary.status == "completed", summary.reason
    stats = api_env.stats()
    assert stats["by_endpoint"]["chat"] == {"200": 2}  # the emulator validated the image blocks
    captions = dict(query(renders, "SELECT key, text FROM enrich_captions"))
    assert set(captions) == {"fox_0", "boat_0"}
    assert all("[with 1 attachment]" in t for t in captions.values())
    assert query(renders, "SELECT min(input_tokens) FROM enrich_captions")[0][0] > 300  # image tokens charged


def test_sql_source_plan_and_spend_cap(index, client, emulator):
    sql = {"sql": "SELECT chunk_id AS id, text FROM live_chunks WHERE position = 0", "key_column": "id"}
    n = query(index, "SELECT count(*) FROM live_chunks WHERE position = 0")[0][0]
    cfg = _cfg(index, source=sql, template="Title for: {{ text }}", name="titles", max_tokens=200)

    dry = plan_enrich_dry(cfg)
    assert dry["rows_new"] == n and dry["estimated_input_tokens"] > 0 and dry["estimated_cost_usd"] > 0
    assert _chat_calls(emulator) == 0

    per_row = dry["estimated_cost_usd"] / n
    capped = enrich_table(
        _cfg(
            index,
            source=sql,
            template="Title for: {{ text }}",
            name="titles",
            max_tokens=200,
            max_cost=per_row * 2.5,
            concurrency=1,
        ),
        client,
    )
    assert capped.status == "partial" and 0 < capped.stats["enriched"] < n and capped.cost_usd <= per_row * 2.5
    rest = enrich_table(cfg, client)
    assert rest.status == "completed" and rest.stats["enriched"] == n - capped.stats["enriched"]
    assert plan_enrich_dry(cfg)["rows_new"] == 0


def test_config_errors_name_the_problem(index, client, emulator):
    with pytest.raises(ConfigError, match="unknown variable 'body'"):
        enrich_table(_cfg(index, template="{{ body }}"), client)
    with pytest.raises(ConfigError, match="exactly one SELECT"):
        enrich_table(_cfg(index, source={"sql": "DELETE FROM documents", "key_column": "doc_id"}), client)
    with pytest.raises(ConfigError, match="json_schema"):
        _cfg(index, json_schema={"type": "object", "properties": {"key": {"type": "string"}}})
    with pytest.raises(ConfigError, match="template line 1"):
        enrich_table(_cfg(index, template="{% if %}"), client)
    assert _chat_calls(emulator) == 0


def test_a_row_the_template_cannot_render_is_an_error_row(index, client, emulator):
    n = _documents(index)
    template = "{{ text }} {{ 1 // (0 if source_path.endswith('.md') else 1) }}"
    summary = enrich_table(_cfg(index, template=template, name="odd"), client)
    bad = query(index, "SELECT count(*) FROM documents WHERE source_path LIKE '%.md'")[0][0]
    assert 0 < bad < n
    assert summary.stats["invalid_rows"] == bad and summary.stats["enriched"] == n - bad
    assert summary.status == "errors"


def test_the_token_never_reaches_an_output_file(index, client, emulator):
    emulator.set_faults(invalid_json_rate=0.5, length_rate=0.2)
    enrich_table(_cfg(index, json_schema=SCHEMA), client)
    enrich_table(_cfg(index, name="plain"), client)
    files = [p for p in index.rglob("*") if p.is_file()]
    assert any("enrich" in str(p) for p in files)
    for p in files:
        assert TEST_TOKEN.encode() not in p.read_bytes(), p


def test_the_example_config_through_the_cli(index, api_env, tmp_path):
    from typer.testing import CliRunner

    from quant_batch.cli import app
    from tests.pipeline.conftest import REPO

    text = (REPO / "configs" / "enrich.yaml").read_text().replace("catalog: data/index", f"catalog: '{index}'")
    cfg = tmp_path / "enrich.yaml"
    cfg.write_text(text)
    runner = CliRunner()
    plan = runner.invoke(app, ["plan", str(cfg)])
    assert plan.exit_code == 0, plan.output
    assert "rows new" in plan.output and _chat_calls(api_env) == 0
    first = runner.invoke(app, ["enrich", str(cfg), "--no-prefect"])
    assert first.exit_code == 0, first.output
    n = _documents(index)
    assert _chat_calls(api_env) == n
    assert query(index, "SELECT count(*) FROM enrich_summaries WHERE summary IS NOT NULL")[0][0] == n
    again = runner.invoke(app, ["enrich", str(cfg), "--no-prefect"])
    assert again.exit_code == 0 and _chat_calls(api_env) == n
    bad = runner.invoke(app, ["enrich", str(cfg), "--no-prefect", "--max-cost", "-1"])
    assert bad.exit_code == 2
