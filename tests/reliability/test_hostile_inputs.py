"""Hostile inputs: every bad file or row becomes a clear, located error and the run goes on.

The corpus mixes good documents with binary files under text names, empty and blank files,
broken UTF-8, corrupt PDFs, a 5 MB single line, one 60,000-character word, 5,000-deep HTML,
symlinks out of the corpus, and a table with broken rows. The manifest mixes good rows with
broken JSON, wrong types, unknown fields, missing and non-image inputs, ``../`` and absolute
ids. After each run nothing outside the output folder has changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from quant_batch.cli import app
from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.errors import InputError
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from tests.reliability.conftest import fast_client, query, short_text, tree

OUTSIDE_SECRET = "OUTSIDE-SECRET-CONTENT must never be indexed"
UTF8_LINE = "Café crème brûlée, naïve résumé, Zürich Straße. "
# file -> what its error must say (lowercase fragment)
BAD_FILES = {
    "corpus/bad/binary.txt": "binary file",
    "corpus/bad/png_named.md": "binary file",
    "corpus/bad/empty.md": "empty document",
    "corpus/bad/blank.txt": "empty document",
    "corpus/bad/broken_utf8.txt": "utf-8",
    "corpus/bad/corrupt.pdf": "corrupt pdf",
    "corpus/bad/truncated.pdf": "corrupt pdf",
}


def _fingerprint(root: Path) -> dict[str, str]:
    """Relative path → content hash (or link target) of everything under ``root``."""
    out = {}
    for rel in tree(root):
        p = root / rel
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def _hostile_corpus(root: Path) -> tuple[Path, Path]:
    """Write the corpus folder and a broken JSONL table; returns (folder, table)."""
    docs, bad, outside = root / "corpus", root / "corpus" / "bad", root / "outside"
    bad.mkdir(parents=True)
    outside.mkdir()
    for i in range(5):
        (docs / f"good{i}.md").write_text(f"# Note {i}\n\n" + " ".join(short_text(i * 10 + j) for j in range(6)))
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (bad / "png_named.md").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(3).randbytes(3000))
    (bad / "empty.md").write_bytes(b"")
    (bad / "blank.txt").write_text("   \n\n\t \n")
    broken = (UTF8_LINE * 3 + "\n").encode() * 2 + b"a stray byte \xff here and a cut one \xe2\x82\n"
    (bad / "broken_utf8.txt").write_bytes(broken + (UTF8_LINE + "\n").encode() * 3)
    (bad / "corrupt.pdf").write_bytes(
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"xref\n0 3\ntrailer << /Root 1 0 R /Size 99 >>\nstartxref\n999999\n%%EOF"
    )
    (bad / "truncated.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type")
    rng = random.Random(1)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    (docs / "huge_line.txt").write_text(" ".join(rng.choice(words) for _ in range(900_000))[:5_000_000])
    (docs / "long_word.txt").write_text("x" * 60_000)
    (docs / "deep.html").write_text("<div>" * 5000 + "deep text inside five thousand divs" + "</div>" * 5000)
    (outside / "secret.txt").write_text(OUTSIDE_SECRET)
    os.symlink(outside / "secret.txt", docs / "leak.txt")
    os.symlink(outside, docs / "leakdir")
    table = root / "rows.jsonl"
    table.write_text(
        "\n".join(
            [
                json.dumps({"id": "r1", "text": "A fine row about orchards and their keepers."}),
                '{"id": "r2", "text": "unterminated',
                json.dumps({"id": "r3", "text": 12345}),
                json.dumps({"id": "", "text": "no id here"}),
                json.dumps({"id": "r1", "text": "duplicate id"}),
                json.dumps(["not", "an", "object"]),
                json.dumps({"id": "r7", "text": "Another fine row about quarries."}),
            ]
        )
        + "\n"
    )
    return docs, table


def _corpus_config(docs: Path, table: Path, out: Path) -> CorpusConfig:
    data = {
        "sources": [{"path": str(docs)}, {"table": str(table)}],
        "out": str(out),
        "dimensions": 256,
        "chunking": {"max_chars": 4000, "overlap_chars": 200, "min_chars": 1000},
    }
    return parse_config(CorpusConfig, data, source="test")


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, emulator_server):
    """One corpus run over the hostile corpus (5 MB of text: run it once for all the checks)."""
    emulator_server.reset()
    root = tmp_path_factory.mktemp("hostile")
    docs, table = _hostile_corpus(root)
    out = root / "index"
    before = _fingerprint(root)
    with fast_client(emulator_server) as c:
        summary = run_corpus(_corpus_config(docs, table, out), c)
    after = {k: v for k, v in _fingerprint(root).items() if not (k == "index" or k.startswith("index/"))}
    return summary, out, before, after


def test_bad_documents_become_located_errors_and_the_rest_is_indexed(hostile_run):
    summary, out, before, after = hostile_run
    assert after == before, "something outside the output folder was written or changed"
    assert summary.status == "errors", summary.to_dict()
    errors = {
        p: (line, msg)
        for p, line, msg in query(out, "SELECT source_path, line, message FROM errors WHERE stage = 'read'")
        if not p.endswith("rows.jsonl")
    }
    for path, fragment in BAD_FILES.items():
        assert path in errors, f"no error row for {path}: {sorted(errors)}"
        assert fragment in errors[path][1].lower(), (path, errors[path])
    # the table's broken rows are reported with their line numbers
    rows = sorted(query(out, "SELECT line, message FROM errors WHERE source_path = 'rows.jsonl'"))
    assert [line for line, _ in rows] == [2, 3, 4, 5, 6], rows
    assert "invalid json" in rows[0][1].lower() and "duplicate id" in rows[3][1]

    docs = dict(query(out, "SELECT doc_id, count(*) FROM chunks GROUP BY doc_id"))
    for name in (
        "corpus/good0.md",
        "corpus/good4.md",
        "corpus/huge_line.txt",
        "corpus/long_word.txt",
        "corpus/deep.html",
        "rows.jsonl#r1",
        "rows.jsonl#r7",
    ):
        assert docs.get(name), f"{name} was not indexed: {sorted(docs)}"
    assert docs["corpus/huge_line.txt"] > 1000  # 5 MB on one line is cut, not sent as one text
    longest = query(out, "SELECT max(length(text)) FROM chunks")[0][0]
    assert longest <= 4000
    word = query(
        out,
        "SELECT string_agg(text, '') FROM (SELECT text FROM chunks WHERE doc_id = 'corpus/long_word.txt' "
        "ORDER BY position)",
    )[0][0]
    assert set(word) == {"x"} and len(word) >= 60_000
    deep = query(out, "SELECT text FROM chunks WHERE doc_id = 'corpus/deep.html'")
    assert deep == [("deep text inside five thousand divs",)]
    # identical pieces of the long word share one key and one vector
    assert summary.stats["embedded"] == summary.stats["chunks_total"] - summary.stats["chunks_duplicate"]
    assert summary.stats["failed_chunks"] == 0


def test_symlinks_out_of_the_corpus_are_not_followed(hostile_run):
    summary, out, before, after = hostile_run
    leaked = query(out, "SELECT count(*) FROM chunks WHERE text LIKE '%OUTSIDE-SECRET%' OR doc_id LIKE 'corpus/leak%'")
    assert leaked == [(0,)]


def test_symlinks_out_of_the_corpus_are_reported(hostile_run):
    """A file the run did not read because it points elsewhere must show up in the errors table,
    not only in a log line: otherwise a user cannot tell why it is missing from the index."""
    summary, out, before, after = hostile_run
    paths = {p for (p,) in query(out, "SELECT source_path FROM errors")}
    assert {"corpus/leak.txt", "corpus/leakdir"} <= paths, sorted(paths)


def test_utf8_with_broken_bytes_is_never_indexed_as_mojibake(hostile_run):
    summary, out, *_ = hostile_run
    assert query(out, "SELECT count(*) FROM chunks WHERE text LIKE '%Ã%'") == [(0,)]


def _png(path: Path, size: int = 320) -> Path:
    Image.new("RGB", (size, size), (40, 90, 160)).save(path)
    return path


def _hostile_manifest(root: Path) -> tuple[Path, dict[int, str]]:
    """A manifest of good and bad rows; returns it and {bad line: what its error must mention}."""
    folder = root / "manifest"
    folder.mkdir()
    _png(folder / "ref.png")
    (root / "outside.txt").write_text("not an image")
    ok = {"prompt": "A calm harbour at dusk", "width": 320, "height": 320}
    lines = [
        (json.dumps({"id": "ok-1", **ok, "seed": 1}), None),
        ('{"id": "broken", "prompt": "unterminated', "invalid json"),
        (json.dumps({"id": "wrong-type", **ok, "width": "wide", "seed": 2}), "width"),
        (json.dumps({"id": "unknown", **ok, "colour": "red", "seed": 3}), "colour"),
        (
            json.dumps(
                {
                    "id": "no-input",
                    "taskType": "IMAGE_VARIATION",
                    "prompt": "a variation",
                    "images": ["missing.png"],
                    "seed": 4,
                }
            ),
            "missing.png",
        ),
        (json.dumps({"id": "../../escape", **ok, "seed": 5}), "plain name"),
        (json.dumps({"id": str(root / "abs-id"), **ok, "seed": 6}), "plain name"),
        (
            json.dumps(
                {
                    "id": "abs-input",
                    "taskType": "IMAGE_VARIATION",
                    "prompt": "v",
                    "images": [str(root / "outside.txt")],
                    "seed": 7,
                }
            ),
            "outside.txt",
        ),
        (json.dumps([1, 2, 3]), "mapping"),
        (json.dumps({"id": 5.5, **ok, "seed": 8}), "id"),
        (json.dumps({"id": "too-long", **ok, "prompt": "p" * 2000, "seed": 9}), "text"),
        (
            json.dumps(
                {
                    "id": "ok-2",
                    "taskType": "IMAGE_VARIATION",
                    "prompt": "a variation",
                    "images": ["ref.png"],
                    "width": 320,
                    "height": 320,
                    "seed": 10,
                }
            ),
            None,
        ),
        (json.dumps({"id": "ok-1", **ok, "seed": 11}), "duplicate id"),
    ]
    path = folder / "prompts.jsonl"
    path.write_text("\n".join(text for text, _ in lines) + "\n")
    return path, {i: need for i, (_, need) in enumerate(lines, 1) if need}


def test_bad_manifest_rows_are_located_and_good_rows_render(tmp_path, emulator):
    manifest, bad = _hostile_manifest(tmp_path)
    out = tmp_path / "renders"
    before = _fingerprint(tmp_path)
    with fast_client(emulator) as c:
        summary = render_manifest(RenderConfig(manifest=manifest, out=out, skip_invalid=True), c)
    after = {k: v for k, v in _fingerprint(tmp_path).items() if not (k == "renders" or k.startswith("renders/"))}
    assert after == before, "something outside the output folder was written or changed"
    assert summary.stats["rendered"] == 2 and summary.stats["invalid"] == len(bad), summary.to_dict()
    assert sorted(p.name for p in out.glob("*.png")) == ["ok-1_0.png", "ok-2_0.png"]
    rows = query(out, "SELECT line, source_path, message FROM errors WHERE stage = 'validate'")
    found = {line: msg for line, _, msg in rows}
    assert sorted(found) == sorted(bad), rows
    for line, need in bad.items():
        assert need in found[line].lower() or need in found[line], (line, found[line])
    assert all(src and src.endswith("prompts.jsonl") for _, src, _ in rows)


def test_bad_manifest_is_refused_with_every_line_named(tmp_path, emulator, api_env):
    manifest, bad = _hostile_manifest(tmp_path)
    out = tmp_path / "renders"
    before = _fingerprint(tmp_path)
    with fast_client(emulator) as c, pytest.raises(InputError) as info:
        render_manifest(RenderConfig(manifest=manifest, out=out), c)
    message = str(info.value)
    for line in bad:
        assert f"prompts.jsonl:{line}:" in message, (line, message)
    assert emulator.stats()["total_requests"] == 0, "nothing is rendered from a manifest with problems"
    result = CliRunner().invoke(app, ["render", str(manifest), "--out", str(out), "--no-prefect"])
    assert result.exit_code == 2, result.output
    # rich hard-wraps the message at 80 columns when stderr is not a terminal: undo it to compare
    unwrapped = result.output.replace("\n", "")
    assert "prompts.jsonl:2:" in unwrapped and "fix them" in " ".join(result.output.split())
    after = {k: v for k, v in _fingerprint(tmp_path).items() if not (k == "renders" or k.startswith("renders/"))}
    assert after == before
    assert not list(out.glob("*.png"))
