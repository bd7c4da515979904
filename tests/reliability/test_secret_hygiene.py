"""The API token never leaks: not into logs, exceptions, tracebacks, error rows or output files.

Embed and render run through the library and through the CLI (``CliRunner``, ``--no-prefect``),
when all goes well and when it does not: a wrong token (403), 400s (a poisoned text, a blocked
prompt), retries exhausted on 503, read timeouts, and a broken proxy that echoes the
Authorization header back in its error bodies.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from quant_batch.cli import app
from quant_batch.client import RetryPolicy, Timeouts
from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from tests.conftest import TEST_ORG, TEST_TOKEN
from tests.reliability.conftest import fast_client, short_text, write_prompt_manifest

WRONG_TOKEN = "qbt-LEAKCHECK-5d8e1f2a9c"
# the whole token and distinctive pieces of it: a clipped message must not leak half a token
NEEDLES = (TEST_TOKEN, "SECRET-123", WRONG_TOKEN, "LEAKCHECK", "5d8e1f2a9c")
ONE_TRY = RetryPolicy(max_attempts=2, max_elapsed=10, backoff_initial=0.01, backoff_max=0.02)


def _assert_clean(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    for needle in NEEDLES:
        assert needle not in text, f"token piece {needle!r} found in {where}"


def _formatted(exc: BaseException) -> str:
    """The exception as a traceback printer, and one that shows every frame's locals, would print it."""
    plain = "".join(traceback.format_exception(exc))
    with_locals = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    return plain + with_locals + repr(exc) + "".join(repr(a) for a in exc.args)


def _capture(fn: Callable[[], object]) -> BaseException | None:
    # the frame that catches holds no token in its locals (capture_locals would show it)
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - every failure is inspected
        return exc
    return None


def _assert_out_clean(out: Path) -> None:
    """Every byte of every file under ``out``, and every text cell of the catalog."""
    for p in sorted(out.rglob("*")):
        if p.is_file():
            _assert_clean(str(p), p.read_bytes())
    db = out / "catalog.duckdb"
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            for table in ("errors", "runs"):
                for row in con.execute(f"SELECT * FROM {table}").fetchall():
                    _assert_clean(f"{table} row", repr(row))
        finally:
            con.close()


def _inputs(root: Path) -> tuple[Path, Path]:
    docs = root / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i:02d}.txt").write_text(short_text(i) + (" __POISON__" if i == 7 else ""))
    manifest = write_prompt_manifest(root / "prompts.jsonl", 3)
    with open(manifest, "a") as fh:
        fh.write(
            json.dumps({"id": "blocked", "prompt": "a __BLOCKED__ scene", "width": 320, "height": 320, "seed": 9})
            + "\n"
        )
    return docs, manifest


def _corpus(docs: Path, out: Path) -> CorpusConfig:
    return parse_config(
        CorpusConfig,
        {"sources": [{"path": str(docs)}], "out": str(out), "dimensions": 256, "batch_size": 10, "concurrency": 2},
        source="test",
    )


class _EchoingProxy(BaseHTTPRequestHandler):
    """A broken gateway: answers 400 or 503 and quotes the request's Authorization header."""

    status = 400

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(
            {
                "message": f"rejected request with Authorization: {self.headers.get('Authorization')}",
                "echo": dict(self.headers),
            }
        ).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SCENARIOS = ["ok", "wrong-token", "503-exhausted", "timeout"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_library_runs_leak_no_token(scenario, tmp_path, faulty, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    docs, manifest = _inputs(tmp_path)
    out, renders = tmp_path / "index", tmp_path / "renders"
    token, timeouts, retry = TEST_TOKEN, Timeouts(connect=2, embeddings=5, image_generation=5), ONE_TRY
    if scenario == "wrong-token":
        token = WRONG_TOKEN
    elif scenario == "503-exhausted":
        faulty.set_faults(error_503_rate=1.0)
    elif scenario == "timeout":
        faulty.set_faults(hang_rate=1.0, hang_seconds=1.0)
        timeouts = Timeouts(connect=2, embeddings=0.3, image_generation=0.3)
        retry = RetryPolicy(max_attempts=1)
    with fast_client(faulty, token=token, timeouts=timeouts, retry=retry) as c:
        failures = [
            _capture(lambda: run_corpus(_corpus(docs, out), c)),
            _capture(lambda: render_manifest(RenderConfig(manifest=manifest, out=renders), c)),
        ]
        _assert_clean("client repr", repr(c) + repr(c.settings) + str(c.settings.model_dump()))

    assert failures == [None, None], failures  # a refused token stops the run; it does not raise
    if scenario == "wrong-token":
        for folder in (out, renders):
            (summary,) = [json.loads(f.read_text()) for f in (folder / "runs").glob("*.json")]
            assert summary["status"] == "failed" and "refused the credentials" in summary["reason"], summary
            _assert_clean(f"{scenario} summary", json.dumps(summary))
    for exc in filter(None, failures):
        _assert_clean(f"{scenario} exception", _formatted(exc))
    if scenario == "ok":  # the 400s: a poisoned text and a blocked prompt became error rows
        assert _rows(out, "SELECT count(*) FROM errors WHERE status = 400") == 1
        assert _rows(renders, "SELECT count(*) FROM errors WHERE status = 400") == 1
    elif scenario != "wrong-token":
        kind = "ServerError" if scenario == "503-exhausted" else "Timeout"
        assert _rows(out, f"SELECT count(*) FROM errors WHERE kind = '{kind}'") > 0
        assert _rows(renders, f"SELECT count(*) FROM errors WHERE kind = '{kind}'") > 0
    captured = capsys.readouterr()
    _assert_clean("logs", caplog.text + "".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records))
    _assert_clean("stdout/stderr", captured.out + captured.err)
    _assert_out_clean(out)
    _assert_out_clean(renders)


def _rows(out: Path, sql: str) -> int:
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cli_runs_leak_no_token(scenario, tmp_path, faulty, caplog):
    caplog.set_level(logging.DEBUG)
    docs, manifest = _inputs(tmp_path)
    out, renders = tmp_path / "index", tmp_path / "renders"
    api = {"max_attempts": 2, "max_retry_seconds": 10}
    token = WRONG_TOKEN if scenario == "wrong-token" else TEST_TOKEN
    if scenario == "503-exhausted":
        faulty.set_faults(error_503_rate=1.0)
    elif scenario == "timeout":
        faulty.set_faults(hang_rate=1.0, hang_seconds=1.0)
        api.update(max_attempts=1, embeddings_timeout=0.3, image_timeout=0.3)
    cfg = tmp_path / "corpus.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "sources": [{"path": str(docs)}],
                "out": str(out),
                "dimensions": 256,
                "batch_size": 10,
                "concurrency": 2,
                "api": api,
            }
        )
    )
    rcfg = tmp_path / "render.yaml"
    rcfg.write_text(yaml.safe_dump({"manifest": str(manifest), "out": str(renders), "api": api}))
    env = {"QUANT_API_KEY": token, "QUANT_ORGANIZATION": TEST_ORG, "QUANT_BASE_URL": faulty.base_url}
    runner = CliRunner()
    results = [
        runner.invoke(app, ["embed", str(cfg), "--no-prefect"], env=env),
        runner.invoke(app, ["render", str(rcfg), "--no-prefect"], env=env),
    ]
    for r in results:
        expected = 2 if scenario == "wrong-token" else 1  # 1: some records failed (400s at least)
        assert r.exit_code == expected, (scenario, r.exit_code, r.output, r.exception)
        _assert_clean(f"CLI output ({scenario})", r.output)
        if r.exc_info and not isinstance(r.exception, SystemExit):
            _assert_clean("CLI exception", _formatted(r.exception))
    if scenario == "wrong-token":
        assert all("403" in " ".join(r.output.split()) for r in results), [r.output for r in results]
    _assert_clean("logs", caplog.text)
    _assert_out_clean(out)
    _assert_out_clean(renders)


@pytest.mark.parametrize("status", [400, 503])
def test_a_proxy_echoing_the_auth_header_is_masked(status, tmp_path, echo_server, caplog, capsys):
    """Error bodies are quoted into messages and error rows: a quoted token must come out masked."""
    caplog.set_level(logging.DEBUG)
    _EchoingProxy.status = status
    docs, manifest = _inputs(tmp_path)
    out, renders = tmp_path / "index", tmp_path / "renders"

    class _Emu:
        base_url = f"http://127.0.0.1:{echo_server.server_address[1]}"

    with fast_client(_Emu(), retry=ONE_TRY) as c:
        failures = [
            _capture(lambda: run_corpus(_corpus(docs, out), c)),
            _capture(lambda: render_manifest(RenderConfig(manifest=manifest, out=renders), c)),
        ]
    assert failures == [None, None], failures
    messages = [
        m
        for (m,) in duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
        .execute("SELECT message FROM errors")
        .fetchall()
    ]
    assert messages and all("Authorization" in m for m in messages)  # the body was quoted...
    for m in messages:
        _assert_clean("error message", m)  # ...with the token masked
    captured = capsys.readouterr()
    _assert_clean("logs", caplog.text)
    _assert_clean("stdout/stderr", captured.out + captured.err)
    _assert_out_clean(out)
    _assert_out_clean(renders)
