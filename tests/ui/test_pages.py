"""Each page in headless chromium, over outputs written by real runs on the emulator."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.ui.conftest import ROWS

BLOCKED_TEXT = "blocked by our content filters"


def test_search_finds_the_expected_document_first_and_keeps_state_in_the_url(page: Page, ui_url):
    page.goto(f"{ui_url}/o/index/search")
    page.get_by_label("query").fill("when is the library open on sunday")
    page.get_by_role("button", name="Search").click()
    first = page.locator(".hit").first
    expect(first.locator(".source")).to_have_text("corpus/library/opening-hours.md")
    assert re.search(r"[?&]q=when\+is\+the\+library", page.url)
    # the full chunk text is there on demand
    first.locator("summary").click()
    expect(first.locator("pre.text")).to_contain_text("Sunday")
    # the URL alone reproduces the search
    page.goto(page.url)
    expect(page.locator(".hit .source").first).to_have_text("corpus/library/opening-hours.md")


def test_search_source_glob_filters_hits(page: Page, ui_url):
    page.goto(f"{ui_url}/o/index/search?q=when+is+the+library+open+on+sunday&source=corpus/bicycle/*&k=5")
    sources = page.locator(".hit .source").all_inner_texts()
    assert sources and all(s.startswith("corpus/bicycle/") for s in sources)


def test_search_metadata_filter_narrows_hits(page: Page, ui_url):
    page.goto(f"{ui_url}/o/index/search")
    page.get_by_label("query").fill("when is the library open on sunday")
    page.get_by_label("metadata filter").fill("extension=.html")
    page.get_by_role("button", name="Search").click()
    sources = page.locator(".hit .source").all_inner_texts()
    assert sources and all(s.endswith(".html") for s in sources)
    assert "where=extension" in page.url  # the filter is part of the shareable URL
    page.get_by_label("metadata filter").fill("extension")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".error")).to_contain_text("key=value")


def test_documents_list_and_chunks_in_order(page: Page, ui_url):
    page.goto(f"{ui_url}/o/index/documents")
    row = page.locator("tr", has=page.get_by_role("link", name="corpus/library/opening-hours.md"))
    expect(row.locator(".status")).to_have_text("ok")
    chunks = int(row.locator("td.num").inner_text())
    row.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("corpus/library/opening-hours.md")
    positions = [int(m) for m in re.findall(r"chunk (\d+)", " ".join(page.locator(".chunk .meta").all_inner_texts()))]
    assert positions == list(range(chunks))


def test_gallery_pages_through_every_row_with_failed_rows_first(page: Page, ui_url, outputs):
    page.goto(f"{ui_url}/o/renders/images")
    expect(page.locator("h1")).to_contain_text(f"({ROWS})")
    first = page.locator(".card").first
    expect(first).to_have_class(re.compile("failed"))
    expect(first).to_contain_text("zz-blocked")
    seen: list[str] = []
    while True:
        seen += page.locator(".card .cap b").all_inner_texts()
        nxt = page.locator(".pager a[rel=next]").first
        if not nxt.count():
            break
        nxt.click()
    assert len(seen) == len(set(seen)) == ROWS
    # thumbnails: small JPEGs from the cache, not the PNGs scaled down
    page.goto(f"{ui_url}/o/renders/images?q=study+12")
    img = page.locator(".card img").first
    expect(img).to_have_js_property("complete", True)
    assert img.evaluate("el => el.naturalWidth") == 256
    resp = page.request.get(f"{ui_url}{img.get_attribute('src')}")
    assert resp.headers["content-type"] == "image/jpeg" and len(resp.body()) < 20_000
    assert list((outputs.renders / ".ui-cache" / "thumbs").glob("*.jpg"))


def test_gallery_filters_by_prompt_text_and_status(page: Page, ui_url):
    page.goto(f"{ui_url}/o/renders/images")
    page.get_by_label("prompt text").fill("study 12")
    page.get_by_role("button", name="Filter").click()
    ids = page.locator(".card .cap b").all_inner_texts()
    assert ids and all(re.fullmatch(r"img-012\d|img-0012", i) for i in ids), ids
    page.goto(f"{ui_url}/o/renders/images")
    page.get_by_label("status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    assert page.locator(".card .cap b").all_inner_texts() == ["zz-blocked"]


def test_open_a_failed_row_and_see_its_reason(page: Page, ui_url):
    page.goto(f"{ui_url}/o/renders/images")
    page.locator(".card.failed").first.click()
    expect(page.locator("h1")).to_contain_text("zz-blocked")
    expect(page.locator("dd.reason")).to_contain_text(BLOCKED_TEXT)
    expect(page.locator("table.errors")).to_contain_text("ContentBlocked")


def test_image_detail_shows_parameters_and_the_manifest_row(page: Page, ui_url, outputs):
    page.goto(f"{ui_url}/o/renders/images?q=study+42")
    page.locator(".card").first.click()
    expect(page.locator("dd.prompt")).to_have_text("A lighthouse at dusk, study 42")
    expect(page.locator("dl")).to_contain_text("320×320")
    row = json.loads(page.locator("#manifest-row").inner_text())
    assert row["id"] == "img-0042" and row["seed"] == 42 and row["width"] == 320
    full = page.request.get(f"{ui_url}{page.locator('img.full').get_attribute('src')}")
    assert full.ok and full.body() == (outputs.renders / "img-0042_0.png").read_bytes()


def test_input_images_are_named_without_machine_paths(page: Page, ui_url, outputs):
    page.goto(f"{ui_url}/o/renders/image?id=cottage&n=0")
    expect(page.locator("dl")).to_contain_text("house_sketch.png")
    row = json.loads(page.locator("#manifest-row").inner_text())
    assert row["conditionImage"] == "images/house_sketch.png" and row["controlMode"] == "CANNY_EDGE"
    assert str(outputs.renders.parent) not in page.content()


def test_runs_page_lists_each_run_with_status_cost_and_throughput(page: Page, ui_url, outputs):
    page.goto(f"{ui_url}/o/renders/runs")
    row = page.locator("tr", has_text=outputs.render_run)
    expect(row.locator(".status")).to_have_text("errors")
    expect(row).to_contain_text("images/s")
    expect(row).to_contain_text(f"images {ROWS - 1}")
    page.goto(f"{ui_url}/o/index/runs")
    expect(page.locator("tr", has_text="embed-").locator(".status")).to_have_text("completed")


def test_failures_page_shows_reason_and_replay_command(page: Page, ui_url, outputs):
    page.goto(f"{ui_url}/o/renders/failures")
    row = page.locator("tr", has_text="zz-blocked")
    expect(row.locator(".reason")).to_contain_text(BLOCKED_TEXT)
    # the folder was given as an absolute path: the page names it, and shows no machine path
    expect(row.locator("code.replay")).to_have_text(
        f"quant-batch replay MANIFEST --out renders --run {outputs.render_run}"
    )
    assert str(outputs.renders.parent) not in page.content()


def test_hostile_text_shows_as_text_and_runs_nothing(page: Page, ui_url):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{ui_url}/o/index/document?id=corpus/hostile.md")
    expect(page.locator(".chunk pre")).to_contain_text("<script>alert('doc-script')</script>")
    expect(page.locator(".chunk pre")).to_contain_text("<img src=x onerror=\"alert('doc-img')\">")
    page.goto(f"{ui_url}/o/index/search?q=xylophone+quarantine+notice")
    page.locator(".hit summary").first.click()
    page.goto(f"{ui_url}/o/renders/images?q=xylophone")
    expect(page.locator(".card .prompt")).to_contain_text("<script>alert('prompt')</script>")
    page.locator(".card").first.click()
    expect(page.locator("dd.prompt")).to_contain_text("onerror=alert('prompt-img')")
    assert page.locator("script").count() == 0
    assert dialogs == []
