"""What the command line says when a user gets something wrong: exit 2 and a line to act on.

Every test drives ``quant_batch.cli.app`` (typer's CliRunner, in process) against real files and,
where a command needs the API, the session emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from quant_batch.cli import app
from tests.pipeline.conftest import api_calls, corpus_config


def _invoke(*argv: str):
    res = CliRunner().invoke(app, [str(a) for a in argv])
    return res, " ".join(res.output.split())  # rich wraps long lines; compare on one line


@pytest.fixture
def index(tmp_path, client) -> Path:
    """A small real index: two documents embedded on the emulator."""
    from quant_batch.embed.run import run_corpus

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hours.md").write_text("The library opens at nine on weekdays and at ten on Sundays.")
    (docs / "rooms.md").write_text("Meeting rooms can be booked at the front desk for two hours.")
    out = tmp_path / "index"
    assert run_corpus(corpus_config(docs, out), client).status == "completed"
    return out


@pytest.mark.parametrize(
    "text, where",
    [
        ("sources:\n  - path: docs\n   bad: [\n", ":3: invalid YAML"),
        ("just a sentence\n", ":1: expected a mapping of settings"),
        ("", ":1: expected a mapping of settings"),
    ],
    ids=["invalid-yaml", "scalar", "empty"],
)
def test_a_broken_yaml_config_is_exit_2_with_file_and_line(tmp_path, text, where):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(text)
    res, out = _invoke("plan", cfg)
    assert res.exit_code == 2, res.output
    assert f"{cfg}{where}" in out and "Traceback" not in out


def test_a_typo_in_a_config_key_gets_a_did_you_mean(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(f"sources:\n  - path: {docs}\n    inclde: ['*.md']\nchunking:\n  max_char: 500\nconcurency: 4\n")
    res, out = _invoke("plan", cfg)
    assert res.exit_code == 2, res.output
    assert "sources.0.inclde: unknown setting (did you mean 'include'?)" in out
    assert "chunking.max_char: unknown setting (did you mean 'max_chars'?)" in out
    assert "concurency: unknown setting (did you mean 'concurrency'?)" in out


def test_search_k_below_one_is_refused_before_any_query(index, api_env):
    before = api_calls(api_env)
    res, out = _invoke("search", index, "opening hours", "-k", "-1")
    assert res.exit_code == 2, res.output
    assert "-k" in out and "BinderException" not in out
    assert api_calls(api_env) == before  # refused before the query was embedded
    res, out = _invoke("search", index, "opening hours", "-k", "1")
    assert res.exit_code == 0 and ".md" in out  # k = 1 is fine


def test_a_missing_key_names_the_variable_and_the_secret_block(api_env, monkeypatch):
    monkeypatch.delenv("QUANT_API_KEY")
    res, out = _invoke("chat", "hello")
    assert res.exit_code == 2, res.output
    assert "QUANT_API_KEY is not set: export QUANT_API_KEY=" in out and "api.secret_block" in out
    assert "api_key=" not in out  # the CLI has no such option
    assert api_calls(api_env, "chat") == 0


@pytest.mark.parametrize(
    "argv",
    [["runs"], ["catalog", "rebuild"], ["search", "{out}", "a question"]],
    ids=["runs", "catalog-rebuild", "search"],
)
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_folder_without_output_is_exit_2_not_an_empty_table(tmp_path, api_env, argv, state):
    out = tmp_path / "not-an-index"
    if state == "empty":
        out.mkdir()
    argv = [a.format(out=out) for a in argv] + ([out] if "{out}" not in " ".join(argv) else [])
    res, text = _invoke(*argv)
    assert res.exit_code == 2, res.output
    assert str(out) in text and ("does not exist" if state == "missing" else "holds no quant-batch output") in text
    # nothing was created in a mistyped folder, and nothing was sent
    assert (list(out.iterdir()) == []) if state == "empty" else not out.exists()
    assert api_calls(api_env) == 0


def test_runs_and_rebuild_still_work_on_a_real_index(index):
    res, out = _invoke("runs", index)
    assert res.exit_code == 0 and "embed" in out and "no quant-batch output" not in out
    res, out = _invoke("catalog", "rebuild", index)
    assert res.exit_code == 0 and "loaded" in out


def test_emulator_help_lists_every_flag():
    from quant_batch.emulator.__main__ import _parser

    res, out = _invoke("emulator", "--help")
    assert res.exit_code == 0, res.output
    flags = [s for action in _parser()._actions for s in action.option_strings if s.startswith("--")]
    assert len(flags) > 15
    missing = [f for f in flags if f not in out]
    assert missing == []
    assert "__BAD_IMAGE__" in out and "quant-batch emulator" in out
