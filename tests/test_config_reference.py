"""The generated config reference matches the models, every field is documented, and errors say what a field means."""

from __future__ import annotations

from pathlib import Path

import pytest

from quant_batch.config_files import parse_config
from quant_batch.config_reference import SECTIONS, main, render_reference
from quant_batch.embed.config import CorpusConfig
from quant_batch.errors import ConfigError

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def test_committed_reference_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == render_reference(), (
        "docs/config-reference.md is stale: run python -m quant_batch.config_reference"
    )


@pytest.mark.parametrize("model", [m for m, _ in SECTIONS], ids=lambda m: m.__name__)
def test_every_config_field_has_a_description(model):
    missing = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"{model.__name__}: add Field(description=...) to {missing}"


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "ref.md"
    stale.write_text(render_reference().replace("Longest chunk", "Biggest chunk"), encoding="utf-8")
    assert main([str(stale), "--check"]) == 1
    assert main([str(stale)]) == 0
    assert main([str(stale), "--check"]) == 0


def test_bad_value_error_shows_the_field_description(tmp_path):
    data = {
        "sources": [{"path": str(tmp_path), "include": 3}],
        "concurrency": 0,
        "api": {"image_timeout": -1},
        "chunking": {"max_chars": 5},
        "bogus": 1,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(CorpusConfig, data, source="corpus.yaml")
    lines = str(err.value).splitlines()
    assert (
        "corpus.yaml: concurrency: Input should be greater than or equal to 1 (API requests in flight at once, 1-256.)"
        in lines
    )
    assert any(
        line.startswith("corpus.yaml: api.image_timeout: ") and "Read timeout in seconds" in line for line in lines
    )
    assert any(line.startswith("corpus.yaml: sources.0.include: ") and "Glob patterns" in line for line in lines)
    assert any(line.startswith("corpus.yaml: chunking.max_chars: ") and "Longest chunk" in line for line in lines)
    bogus = [line for line in lines if line.startswith("corpus.yaml: bogus: ")]
    assert len(bogus) == 1 and "unknown setting" in bogus[0]  # an unknown key has no description to show
