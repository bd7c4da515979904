"""Outputs made by real runs on the emulator, the web page on a real socket, and Debian's chromium.

The outputs are built once per session (an index of the sample corpus plus a hostile document,
and a render of 300 small images with blocked and hostile rows) and only read by the tests.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from quant_batch.client import QuantClient
from quant_batch.client.settings import ApiSettings
from quant_batch.config_files import parse_config
from quant_batch.embed.run import run_corpus
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from tests.conftest import TEST_ORG, TEST_TOKEN
from tests.pipeline.conftest import SAMPLE_CORPUS, corpus_config

HOSTILE_DOC = (
    "# Hostile notes\n\nThe xylophone quarantine notice says <script>alert('doc-script')</script> and "
    "<img src=x onerror=\"alert('doc-img')\"> and <b>bold</b> should all show as plain text.\n"
)
HOSTILE_PROMPT = "A xylophone <script>alert('prompt')</script> <img src=x onerror=alert('prompt-img')>"
GALLERY_ROWS = 300  # plain rows; the manifest adds a blocked, a hostile and a conditioned row
ROWS = GALLERY_ROWS + 3
CHROMIUM_PATHS = ("chromium", "chromium-browser", "/usr/bin/chromium", "/usr/lib/chromium/chromium")


@dataclass(frozen=True)
class Outputs:
    index: Path
    renders: Path
    render_run: str


def _client(base_url: str) -> QuantClient:
    return QuantClient(
        ApiSettings(api_key=SecretStr(TEST_TOKEN), organization=TEST_ORG, base_url=base_url), pool_size=8
    )


def _manifest(folder: Path) -> Path:
    rows = [
        {"id": f"img-{i:04d}", "prompt": f"A lighthouse at dusk, study {i}", "width": 320, "height": 320, "seed": i}
        for i in range(GALLERY_ROWS)
    ]
    rows += [
        {"id": "zz-blocked", "prompt": "Something __BLOCKED__ here", "width": 320, "height": 320},
        {"id": "hostile", "prompt": HOSTILE_PROMPT, "width": 320, "height": 320, "seed": 7},
        {
            "id": "cottage",
            "prompt": "A stone cottage",
            "conditionImage": "images/house_sketch.png",
            "controlMode": "CANNY_EDGE",
            "width": 320,
            "height": 320,
            "seed": 5,
        },
    ]
    shutil.copytree(SAMPLE_CORPUS.parent / "images", folder / "images")
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def outputs(emulator_server, tmp_path_factory) -> Outputs:
    """An index and a render folder, each written by a real run on the emulator."""
    emulator_server.reset()
    base = tmp_path_factory.mktemp("ui-outputs")
    corpus = base / "corpus"
    shutil.copytree(SAMPLE_CORPUS, corpus)
    (corpus / "hostile.md").write_text(HOSTILE_DOC)
    with _client(emulator_server.base_url) as client:
        run_corpus(corpus_config(corpus, base / "index"), client)
        cfg = parse_config(
            RenderConfig,
            {"manifest": str(_manifest(base)), "out": str(base / "renders"), "concurrency": 4},
            source="test",
        )
        summary = render_manifest(cfg, client)
    return Outputs(base / "index", base / "renders", summary.run_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ui_url(outputs, emulator_server) -> Iterator[str]:
    """``quant_batch.ui.app`` over both folders, served by uvicorn in a thread on a free port."""
    import uvicorn

    from quant_batch.ui import app

    with _client(emulator_server.base_url) as client:
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app([outputs.index, outputs.renders], client=client), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the ui server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(timeout=10)


def find_chromium() -> str | None:
    for name in CHROMIUM_PATHS:
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's chromium: ``playwright install`` cannot work offline."""
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium executable found (apt-get install chromium; .ci/run does this)")
    return {**browser_type_launch_args, "executable_path": exe, "headless": True}
