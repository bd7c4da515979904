"""The CLI for scripts and pipes: --version, --json, `errors`, ids never cut, Prefect only with a Prefect API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quant_batch.cli import app
from tests.pipeline.conftest import REPO, api_calls

SAMPLE = REPO / "quant_batch" / "data" / "sample"
QB = [sys.executable, "-m", "quant_batch.cli"]


def _faq(tmp_path: Path, blank: int = 0) -> Path:
    """Six FAQ rows as CSV, ``blank`` of them with an empty text (each becomes an error record)."""
    rows = [json.loads(x) for x in (SAMPLE / "corpus_table" / "faq.jsonl").read_text().splitlines() if x.strip()][:6]
    lines = ["id,text"] + [f'{r["id"]},"{"" if i < blank else r["text"]}"' for i, r in enumerate(rows)]
    path = tmp_path / "faq.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _json(res) -> object:
    assert res.stdout.count("\n") == 1, res.stdout  # exactly one document, on one line
    return json.loads(res.stdout)


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("quant-batch ")
    from importlib.metadata import version

    assert res.stdout.split()[1] == version("quant-batch")


def test_json_outputs(tmp_path, api_env):
    runner = CliRunner()
    table, out = _faq(tmp_path, blank=1), tmp_path / "index"
    res = runner.invoke(app, ["plan", str(table), "--out", str(out), "--json"])
    plan = _json(res)
    assert plan["kind"] == "corpus" and plan["chunks_new"] == 5 and plan["problems"] == []

    res = runner.invoke(app, ["embed", str(table), "--out", str(out), "--no-prefect", "--json"])
    assert res.exit_code == 1, res.output  # one row failed
    summary = _json(res)
    assert summary["status"] != "completed" and summary["errors"] == 1
    assert summary["stats"]["runner"] == "in-process" and summary["stats"]["documents_failed"] == 1
    assert "embedding" in res.stderr  # progress went to stderr

    res = runner.invoke(app, ["search", str(out), "how many books can I borrow", "-k", "2", "--json"])
    hits = _json(res)
    assert [set(h) >= {"score", "doc_id", "source_path", "position", "text"} for h in hits] == [True, True]
    assert hits[0]["doc_id"] == "faq.csv#faq-002"

    runs = _json(runner.invoke(app, ["runs", str(out), "--json"]))
    assert [r["run_id"] for r in runs] == [summary["run_id"]]

    errors = _json(runner.invoke(app, ["errors", str(out), "--json"]))
    assert len(errors) == 1
    assert errors[0]["run_id"] == summary["run_id"] and errors[0]["source_path"] == "faq.csv"
    assert errors[0]["line"] == 2 and "blank" in errors[0]["message"]
    assert _json(runner.invoke(app, ["errors", str(out), "--run", "embed-nope", "--json"])) == []


def test_render_json_keeps_stdout_clean(tmp_path, api_env):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "fox", "prompt": "a red fox", "width": 320, "height": 320}) + "\n")
    res = CliRunner().invoke(app, ["render", str(manifest), "--out", str(tmp_path / "r"), "--no-prefect", "--json"])
    assert res.exit_code == 0, res.output
    assert _json(res)["stats"]["rendered"] == 1
    assert "contact sheet:" in res.stderr


def test_search_table_shows_the_row_id(tmp_path, api_env):
    runner = CliRunner()
    out = tmp_path / "index"
    res = runner.invoke(app, ["embed", str(SAMPLE / "corpus_table" / "faq.parquet"), "--out", str(out), "--no-prefect"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(out), "how many books can I borrow", "-k", "1"])
    assert "faq.parquet#faq-002" in res.stdout


def test_missing_column_is_exit_2_naming_the_columns(tmp_path, api_env):
    res = CliRunner().invoke(app, ["embed", str(_faq(tmp_path)), "--text-column", "body", "--no-prefect"])
    assert res.exit_code == 2
    assert "column 'body' not found (columns: 'id', 'text')" in res.stderr
    assert api_calls(api_env) == 0


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user without any Prefect configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), COLUMNS="40", **extra)
    return env


def test_no_prefect_api_runs_in_process_and_tables_keep_ids_whole(tmp_path, api_env):
    out = tmp_path / "index"
    env = _clean_env(tmp_path)
    cmd = [*QB, "embed", str(_faq(tmp_path, blank=1)), "--out", str(out), "--json"]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout)
    assert summary["stats"]["runner"] == "in-process"
    assert "prefect" not in res.stderr.lower()
    run_id = summary["run_id"]
    # a 40-column terminal: the run id and the error key still appear whole on one line
    for args in (["runs", str(out)], ["errors", str(out)]):
        res = subprocess.run([*QB, *args], env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert run_id in res.stdout, res.stdout


def test_dask_cluster_without_prefect_api_is_exit_2(tmp_path, api_env):
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(
        json.dumps(
            {
                "sources": [{"path": str(SAMPLE / "corpus")}],
                "out": str(tmp_path / "i"),
                "task_runner": "dask",
                "dask_address": "tcp://127.0.0.1:9",
            }
        )
    )
    res = subprocess.run([*QB, "embed", str(cfg)], env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "dask_address" in res.stderr and "PREFECT_API_URL" in res.stderr
    assert api_calls(api_env) == 0


@pytest.mark.parametrize("source", ["env", "profile", "none"])
def test_prefect_api_detection(tmp_path, source):
    home = tmp_path / "prefect-home"
    home.mkdir()
    extra = {}
    if source == "env":
        extra["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    elif source == "profile":
        (home / "profiles.toml").write_text(
            'active = "team"\n\n[profiles.team]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
        )
    code = "from quant_batch.runs.runner import choose_runner as c, prefect_api_url as u; print(u(), c(None))"
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(tmp_path, **extra),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    expected = "None in-process" if source == "none" else "http://127.0.0.1:9/api prefect"
    assert res.stdout.strip() == expected
