"""The page's promises without a browser: file routes, headers, no machine paths, read-only, CLI."""

from __future__ import annotations

import http.client
import subprocess
import sys
import urllib.request
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from quant_batch.cli import app as cli
from quant_batch.ui.data import public_path
from quant_batch.ui.serve import is_loopback

TRAVERSALS = [
    "/o/renders/img/../../etc/passwd",
    "/o/renders/img/..%2F..%2F..%2Fetc%2Fpasswd",
    "/o/renders/img/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/o/renders/img/%2Fetc%2Fpasswd",
    "/o/renders/img//etc/passwd",
    "/o/renders/thumb/..%2Fcatalog.duckdb",
    "/o/renders/img/catalog.duckdb",  # a real file of the folder, but not an image of the catalog
    "/o/renders/img/prompts.jsonl",
    "/o/renders/thumb/index.html",
    "/o/nowhere/img/img-0001_0.png",
    "/static/..%2F..%2Fdata.py",
    "/static/../routes.py",
]


def _raw_get(url: str, path: str) -> tuple[int, dict, bytes]:
    """GET ``path`` byte for byte (http.client sends it unnormalised, unlike a browser)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_file_routes_serve_only_catalog_images(ui_url, path):
    status, _, body = _raw_get(ui_url, path)
    assert status == 404, (path, status)
    assert b"root:" not in body


def test_a_catalog_image_is_served(ui_url, outputs):
    status, headers, body = _raw_get(ui_url, "/o/renders/img/img-0001_0.png")
    assert status == 200 and body == (outputs.renders / "img-0001_0.png").read_bytes()
    assert headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/o/index/search?q=library",
        "/o/renders/images",
        "/o/renders/runs",
        "/o/renders/failures",
        "/o/index/documents",
        "/o/renders/image?id=img-0003&n=0",
    ],
)
def test_pages_forbid_inline_script_and_show_no_machine_paths(ui_url, outputs, path):
    status, headers, body = _raw_get(ui_url, path)
    assert status == 200
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert str(outputs.index.parent).encode() not in body
    assert b"<script" not in body


def test_public_path_cuts_machine_paths_to_file_names():
    assert public_path("could not read /home/ann/data/prompts.jsonl: line 3") == "could not read prompts.jsonl: line 3"
    assert public_path("library/opening-hours.md") == "library/opening-hours.md"
    assert public_path('{"image": "/srv/x/images/cat.png"}') == '{"image": "cat.png"}'


def test_the_page_answers_while_a_run_holds_the_catalog(ui_url, outputs):
    """A run keeps catalog.duckdb open for writing; the page reads only published files."""
    catalog = outputs.renders / "catalog.duckdb"
    before = catalog.stat().st_mtime_ns
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
            str(catalog),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for path in ("/o/renders/images", "/o/renders/runs", "/o/renders/failures", "/o/renders/image?id=img-0002&n=0"):
            with urllib.request.urlopen(ui_url + path, timeout=30) as resp:
                assert resp.status == 200
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert catalog.stat().st_mtime_ns == before


def test_new_parts_show_without_a_restart(ui_url, outputs, tmp_path):
    """A part published after the page started is on the next page load (here: an error part of a
    stage the gallery does not show, so the other tests' counts hold)."""
    from quant_batch.store.layout import Layout
    from quant_batch.store.records import ErrorRecord, write_errors

    write_errors(
        Layout(outputs.renders).error_parts,
        "zz-test-late",
        [ErrorRecord("embed-late", "embed", "late failure reason", doc_id="late-doc", key="late-key")],
    )
    with urllib.request.urlopen(ui_url + "/o/renders/failures", timeout=30) as resp:
        assert b"late failure reason" in resp.read()


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")


def test_ui_command_refuses_a_remote_host_without_the_flag(tmp_path):
    res = CliRunner().invoke(cli, ["ui", str(tmp_path), "--host", "0.0.0.0"])
    assert res.exit_code == 2
    assert "--allow-remote" in res.output


def test_ui_command_names_a_missing_folder(tmp_path):
    res = CliRunner().invoke(cli, ["ui", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope: no such output folder" in res.output
