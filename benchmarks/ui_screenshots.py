"""Regenerate the README's screenshots of the web page (docs/ui-*.png); not a benchmark.

``python -m benchmarks.ui_screenshots`` indexes the sample corpus and renders the sample
manifest (plus a blocked prompt) on the emulator, serves ``quant_batch.ui`` and photographs each
page in Debian's chromium.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import expect, sync_playwright
from pydantic import SecretStr

from quant_batch.client import QuantClient
from quant_batch.client.settings import ApiSettings
from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.emulator import EmulatorServer
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from quant_batch.ui import app

REPO = Path(__file__).resolve().parents[1]
PAGES = {
    "search": "/o/index/search?q=when+is+the+library+open+on+sunday&k=5",
    "documents": "/o/index/documents",
    "images": "/o/renders/images",
    "image": "/o/renders/image?id=fox-forest&n=0",
    "runs": "/o/renders/runs",
    "failures": "/o/renders/failures",
}


def build(work: Path, client: QuantClient) -> None:
    corpus = parse_config(
        CorpusConfig,
        {
            "sources": [{"path": str(REPO / "data" / "corpus")}],
            "out": str(work / "index"),
            "chunking": {"max_chars": 1200, "overlap_chars": 150},
        },
        source="screenshots",
    )
    run_corpus(corpus, client)
    shutil.copytree(REPO / "data" / "images", work / "images")
    rows = (REPO / "data" / "prompts.jsonl").read_text().splitlines()
    rows.append(
        json.dumps({"id": "harbour-blocked", "prompt": "A harbour scene __BLOCKED__", "width": 512, "height": 512})
    )
    (work / "prompts.jsonl").write_text("\n".join(rows) + "\n")
    render = parse_config(
        RenderConfig, {"manifest": str(work / "prompts.jsonl"), "out": str(work / "renders")}, source="screenshots"
    )
    render_manifest(render, client)


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorServer(token="shots", port=0, mode="thread") as emu,
        QuantClient(ApiSettings(api_key=SecretStr("shots"), organization="shots", base_url=emu.base_url)) as client,
    ):
        work = Path(tmp)
        build(work, client)
        server = uvicorn.Server(
            uvicorn.Config(
                app([work / "index", work / "renders"], client=client), host="127.0.0.1", port=0, log_level="warning"
            )
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            for name, path in PAGES.items():
                page.goto(f"http://127.0.0.1:{port}{path}")
                # thumbnails are made on first request: wait until every image has arrived
                for img in page.locator("img").all():
                    expect(img).to_have_js_property("complete", True, timeout=30_000)
                if name == "search":
                    page.locator(".hit summary").first.click()
                page.screenshot(path=str(REPO / "docs" / f"ui-{name}.png"))
            browser.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
