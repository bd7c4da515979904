"""The render pipeline end to end: real emulator over loopback, real PNGs, Parquet and DuckDB."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from quant_batch.client.config import ApiConfig, RateLimits
from quant_batch.client.factory import build_client
from quant_batch.config_files import parse_config
from quant_batch.errors import InputError
from quant_batch.render.config import RenderConfig
from quant_batch.render.manifest import build_request, load_manifest
from quant_batch.render.rules import SEED_MAX, number_of_images, output_size
from quant_batch.render.run import render_manifest, safe_output_path
from tests.pipeline.conftest import REPO, api_calls, query

IMAGES = REPO / "data" / "images"
BLOCKED_TEXT = "blocked by our content filters"


def _write_manifest(folder: Path, rows: list, name: str = "prompts.jsonl") -> Path:
    """A JSONL manifest in ``folder`` next to a copy of the sample input images; str rows go in verbatim."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "images").exists():
        shutil.copytree(IMAGES, folder / "images")
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _config(manifest: Path, out: Path, **kw) -> RenderConfig:
    return parse_config(
        RenderConfig, {"manifest": str(manifest), "out": str(out), "concurrency": 4, **kw}, source="test"
    )


def _t2i(row_id: str, prompt: str, **kw) -> dict:
    return {"id": row_id, "prompt": prompt, "width": 320, "height": 320, **kw}


def _pngs(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}


def _tree(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip not in (p, *p.parents)}


def _image_calls(emulator) -> int:
    return api_calls(emulator, "image-generation")


@pytest.fixture
def image_client(api_env):
    with build_client(
        ApiConfig(image_timeout=20, max_attempts=4, max_retry_seconds=20), RateLimits(), pool_size=4, images=True
    ) as c:
        yield c


TASK_ROWS = [
    _t2i("plain", "A lighthouse on a rocky coast at dawn", seed=42),
    _t2i("styled", "A red fox in a snowy birch forest", style="SOFT_DIGITAL_PAINTING", width=384, seed=7),
    _t2i(
        "conditioned",
        "A stone cottage in a meadow",
        conditionImage="images/house_sketch.png",
        controlMode="CANNY_EDGE",
        controlStrength=0.8,
        seed=3,
    ),
    {
        "id": "palette",
        "task": "COLOR_GUIDED_GENERATION",
        "prompt": "Desert dunes poster",
        "colors": ["#E76F51", "#2A9D8F"],
        "referenceImage": "images/palette.png",
        "width": 320,
        "height": 320,
        "seed": 5,
    },
    {
        "id": "variation",
        "task": "IMAGE_VARIATION",
        "prompt": "A coffee mug",
        "images": ["images/mug.png"],
        "similarityStrength": 0.7,
        "width": 320,
        "height": 320,
        "seed": 6,
    },
    {
        "id": "inpaint-prompt",
        "task": "INPAINTING",
        "image": "images/mug.png",
        "maskPrompt": "the coffee",
        "prompt": "latte art",
        "seed": 8,
    },
    {
        "id": "inpaint-mask",
        "task": "INPAINTING",
        "image": "images/mug.png",
        "maskImage": "images/mug_background_mask.png",
        "prompt": "a bright kitchen",
        "seed": 9,
    },
    {
        "id": "outpaint",
        "taskType": "OUTPAINTING",
        "outPaintingParams": {
            "image": "images/mug.png",
            "maskPrompt": "the mug",
            "text": "a cafe counter",
            "outPaintingMode": "PRECISE",
        },
        "imageGenerationConfig": {"seed": 10},
    },
    {"id": "cutout", "task": "BACKGROUND_REMOVAL", "image": "images/mug_red.png"},
    {
        "id": "try-on",
        "task": "VIRTUAL_TRY_ON",
        "sourceImage": "images/mug.png",
        "referenceImage": "images/mug_red.png",
        "garmentClass": "UPPER_BODY",
        "seed": 11,
    },
    _t2i("three", "Three takes on a teapot", numberOfImages=3),
]


def test_every_task_type_renders_pngs_that_match_the_catalog(tmp_path, image_client, emulator):
    manifest = _write_manifest(tmp_path / "m", TASK_ROWS)
    out = tmp_path / "out"
    summary = render_manifest(_config(manifest, out), image_client)

    assert summary.status == "completed", summary.reason
    rows = load_manifest(manifest).rows
    assert len(rows) == len(TASK_ROWS)
    assert _image_calls(emulator) == summary.api_calls == len(rows)
    expected_files = set()
    for row in rows:
        request = build_request(row, None)
        width, height = output_size(request)
        got = query(out, "SELECT n, path, width, height FROM images WHERE id = ? ORDER BY n", [row.id])
        count = number_of_images(request)
        assert [(n, p) for n, p, _, _ in got] == [(n, f"{row.id}_{n}.png") for n in range(count)], row.id
        assert {(w, h) for _, _, w, h in got} == {(width, height)}, row.id
        expected_files |= {p for _, p, _, _ in got}
    assert query(out, "SELECT count(*) FROM images WHERE id = 'three'")[0][0] == 3
    assert {p.name for p in out.glob("*.png")} == expected_files

    for path, sha, width, height, size in query(out, "SELECT path, sha256, width, height, bytes FROM images"):
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert len(data) == size
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.size == (width, height)


def test_seeds_are_recorded_and_stay_stable_on_rerun(tmp_path, image_client, emulator):
    manifest = _write_manifest(
        tmp_path / "m",
        [
            _t2i("fixed", "A teapot", seed=1234),
            _t2i("random", "A teacup", numberOfImages=3),
            {"id": "cutout", "task": "BACKGROUND_REMOVAL", "image": "images/mug_red.png"},
        ],
    )
    out = tmp_path / "out"
    render_manifest(_config(manifest, out), image_client)

    seeds = dict(query(out, "SELECT id, any_value(seed) FROM images GROUP BY id"))
    assert seeds["fixed"] == 1234
    assert query(out, "SELECT count(DISTINCT seed) FROM images WHERE id = 'random'")[0][0] == 1
    assert 0 <= seeds["random"] <= SEED_MAX
    # background removal takes no seed: none is sent, so none is claimed
    assert seeds["cutout"] is None

    calls = _image_calls(emulator)
    again = render_manifest(_config(manifest, out), image_client)
    assert _image_calls(emulator) == calls and again.api_calls == 0
    assert again.stats["skipped_unchanged"] == 3
    assert dict(query(out, "SELECT id, any_value(seed) FROM images GROUP BY id")) == seeds


BAD_ROWS = [
    _t2i("ok-1", "A quiet harbour at dusk"),  # 1
    _t2i("too-long", "x" * 1025),  # 2
    _t2i("too-many", "Five kittens", numberOfImages=6),  # 3
    _t2i("odd-width", "A wide field", width=1000),  # 4
    _t2i("far-away", "A kangaroo", region="ap-southeast-2"),  # 5
    {"id": "no-input", "task": "INPAINTING", "image": "images/missing.png", "maskPrompt": "the mug"},  # 6
    _t2i("ok-1", "A different prompt under a used id"),  # 7
    _t2i("unknown", "A barn", colour="red"),  # 8
    '{"id": "broken", "prompt": ',  # 9
    _t2i("../../x", "Escape attempt"),  # 10
    _t2i("/etc/x", "Absolute escape attempt"),  # 11
    _t2i("ok-2", "A lighthouse in fog"),  # 12
]
BAD_FIELDS = {
    2: "textToImageParams.text",
    3: "imageGenerationConfig.numberOfImages",
    4: "imageGenerationConfig.width",
    5: "region",
    6: "inPaintingParams.image",
    7: "id",
    8: "colour",
    10: "id",
    11: "id",
}


def test_invalid_manifest_lists_every_problem_and_sends_nothing(tmp_path, image_client, emulator):
    manifest = _write_manifest(tmp_path / "m", BAD_ROWS)
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        render_manifest(_config(manifest, out), image_client)

    message = str(info.value)
    for line, fld in BAD_FIELDS.items():
        assert f"{manifest}:{line}: {fld}: " in message, (line, fld)
    assert f"{manifest}:9: invalid JSON" in message
    for line in (1, 12):
        assert f"{manifest}:{line}:" not in message
    assert emulator.stats()["total_requests"] == 0
    assert not list(out.glob("*.png"))


def test_skip_invalid_renders_valid_rows_and_records_the_rest(tmp_path, image_client, emulator):
    manifest = _write_manifest(tmp_path / "m", BAD_ROWS)
    out = tmp_path / "out"
    summary = render_manifest(_config(manifest, out, skip_invalid=True), image_client)

    assert summary.status == "errors"
    assert summary.stats["rendered"] == 2 and summary.stats["invalid"] == len(BAD_FIELDS) + 1
    assert _image_calls(emulator) == 2
    assert sorted(p.name for p in out.glob("*.png")) == ["ok-1_0.png", "ok-2_0.png"]
    errors = query(out, "SELECT line, stage, source_path, message FROM errors ORDER BY line")
    assert [e[0] for e in errors] == sorted([*BAD_FIELDS, 9])
    assert {e[1] for e in errors} == {"validate"}
    assert {e[2] for e in errors} == {str(manifest)}
    by_line = {e[0]: e[3] for e in errors}
    assert "duplicate id 'ok-1'" in by_line[7] and "invalid JSON" in by_line[9]


def test_rerun_sends_nothing_and_an_edit_renders_only_its_row(tmp_path, image_client, emulator):
    rows = [_t2i("a", "An apple"), _t2i("b", "A banana"), _t2i("c", "A cherry", numberOfImages=2)]
    manifest = _write_manifest(tmp_path / "m", rows)
    out = tmp_path / "out"
    render_manifest(_config(manifest, out), image_client)
    calls, files = _image_calls(emulator), _pngs(out)
    assert len(files) == 4

    again = render_manifest(_config(manifest, out), image_client)
    assert _image_calls(emulator) == calls and again.api_calls == 0
    assert again.stats["skipped_unchanged"] == 3 and again.status == "completed"
    assert _pngs(out) == files

    old_sha = query(out, "SELECT sha256 FROM images WHERE id = 'b'")[0][0]
    rows[1]["prompt"] = "A ripe banana on a blue plate"
    _write_manifest(tmp_path / "m", rows)
    edited = render_manifest(_config(manifest, out), image_client)
    assert _image_calls(emulator) == calls + 1 and edited.api_calls == 1
    assert edited.stats["rendered"] == 1 and edited.stats["skipped_unchanged"] == 2
    now = _pngs(out)
    assert {k: v for k, v in now.items() if k != "b_0.png"} == {k: v for k, v in files.items() if k != "b_0.png"}
    sha, prompt = query(out, "SELECT sha256, prompt FROM images WHERE id = 'b'")[0]
    assert prompt == "A ripe banana on a blue plate"
    assert sha != old_sha == query(out, "SELECT sha256 FROM image_renders WHERE id = 'b' ORDER BY created_at")[0][0]
    assert hashlib.sha256((out / "b_0.png").read_bytes()).hexdigest() == sha


def test_blocked_and_partially_blocked_prompts(tmp_path, image_client, emulator):
    manifest = _write_manifest(
        tmp_path / "m",
        [
            _t2i("fine", "A sunflower field"),
            _t2i("blocked", "Something __BLOCKED__ here"),
            _t2i("partial", "Two pictures __PARTIAL_BLOCK__", numberOfImages=2),
            _t2i("also-fine", "A windmill"),
        ],
    )
    out = tmp_path / "out"
    summary = render_manifest(_config(manifest, out), image_client)

    assert summary.status == "errors" and summary.errors == 1
    # one request per row: the 400 was not retried
    by_status = emulator.stats()["by_endpoint"]["image-generation"]
    assert by_status == {"200": 3, "400": 1}
    errors = query(out, "SELECT doc_id, stage, status, kind, retryable, line, message FROM errors")
    assert len(errors) == 1
    doc_id, stage, status, kind, retryable, line, message = errors[0]
    assert (doc_id, stage, status, kind, retryable, line) == ("blocked", "render", 400, "ContentBlocked", False, 2)
    assert BLOCKED_TEXT in message
    assert sorted(p.name for p in out.glob("*.png")) == ["also-fine_0.png", "fine_0.png", "partial_0.png"]
    partial = query(out, "SELECT n, error FROM images WHERE id = 'partial'")
    assert len(partial) == 1 and partial[0][0] == 0 and "Some of the generated images" in partial[0][1]

    # a terminal failure is not sent again by a plain rerun, only by a replay
    calls = _image_calls(emulator)
    again = render_manifest(_config(manifest, out), image_client)
    assert _image_calls(emulator) == calls and again.api_calls == 0
    assert again.stats["skipped_failed"] == 1
    replayed = render_manifest(_config(manifest, out), image_client, replay=True)
    assert _image_calls(emulator) == calls + 1 and replayed.stats["failed"] == 1


def test_later_parts_load_when_the_first_part_had_empty_columns(tmp_path, image_client, emulator):
    # the first part loaded sets the catalog's column types: here error and seed are all empty
    rows = [{"id": "cutout", "task": "BACKGROUND_REMOVAL", "image": "images/mug_red.png"}]
    manifest = _write_manifest(tmp_path / "m", rows)
    out = tmp_path / "out"
    assert render_manifest(_config(manifest, out), image_client).status == "completed"
    rows.append(_t2i("partial", "Two __PARTIAL_BLOCK__ pictures", numberOfImages=2, seed=77))
    _write_manifest(tmp_path / "m", rows)

    summary = render_manifest(_config(manifest, out), image_client)
    assert summary.status == "completed" and summary.stats["rendered"] == 1
    seed, error = query(out, "SELECT seed, error FROM images WHERE id = 'partial'")[0]
    assert seed == 77 and "blocked" in error


def _drain_hung_requests(emulator, expected: int) -> None:
    """Wait until the emulator has answered the hung requests, so they land in this test's stats."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(1 for e in emulator.stats()["events"] if e.get("fault") == "hang") >= expected:
            return
        time.sleep(0.05)


def test_a_hung_request_times_out_into_an_error_row_and_renders_next_time(tmp_path, api_env):
    manifest = _write_manifest(tmp_path / "m", [_t2i("slow", "A snail on a leaf")])
    out = tmp_path / "out"
    api_env.set_faults(hang_rate=1.0, hang_seconds=2.0, endpoints=["image-generation"], seed=1)
    with build_client(
        ApiConfig(image_timeout=0.3, max_attempts=1, max_retry_seconds=5), RateLimits(), pool_size=4, images=True
    ) as client:
        summary = render_manifest(_config(manifest, out), client)
        _drain_hung_requests(api_env, 1)
        assert summary.status == "errors"
        errors = query(out, "SELECT doc_id, stage, kind, retryable FROM errors")
        assert errors == [("slow", "render", "Timeout", True)]
        assert not list(out.glob("*.png"))

        api_env.set_faults()
        retried = render_manifest(_config(manifest, out), client)
    assert retried.status == "completed" and retried.stats["rendered"] == 1
    assert (out / "slow_0.png").exists()


def test_ids_never_write_outside_the_output_folder(tmp_path, image_client, emulator):
    evil = tmp_path / "evil"
    manifest = _write_manifest(
        tmp_path / "m",
        [
            _t2i("../../x", "Up and out"),
            _t2i("a/b", "Into a subfolder"),
            _t2i(str(evil), "Absolute path"),
            _t2i("..", "Parent"),
            _t2i("a\\..\\..\\y", "Backslashes"),
            _t2i("safe", "A safe row"),
        ],
    )
    out = tmp_path / "out"
    before = _tree(tmp_path, out)
    summary = render_manifest(_config(manifest, out, skip_invalid=True), image_client)

    assert summary.stats["rendered"] == 1 and summary.stats["invalid"] == 5
    assert _tree(tmp_path, out) == before
    assert [p.name for p in out.glob("*.png")] == ["safe_0.png"]
    assert not (tmp_path.parent / "x_0.png").exists()


@pytest.mark.parametrize("row_id", ["../../x", "a/b", "/etc/x", "..", ".hidden", "a\\b", "x\x00y", "../out/x"])
def test_safe_output_path_refuses_escapes(tmp_path, row_id):
    with pytest.raises(InputError):
        safe_output_path(tmp_path, row_id, 0)
    assert safe_output_path(tmp_path, "fine-id", 2) == (tmp_path / "fine-id_2.png").resolve()


def test_a_symlink_in_the_output_folder_fails_its_row_only(tmp_path, image_client, emulator):
    manifest = _write_manifest(tmp_path / "m", [_t2i("linked", "A trap"), _t2i("plain", "A plain row")])
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.png"
    (out / "linked_0.png").symlink_to(outside)
    with pytest.raises(InputError):
        safe_output_path(out, "linked", 0)

    summary = render_manifest(_config(manifest, out), image_client)
    assert not outside.exists()
    assert summary.status == "errors" and summary.stats["rendered"] == 1
    assert query(out, "SELECT doc_id, stage FROM errors") == [("linked", "render")]
    assert (out / "plain_0.png").is_file()


class _Sheet(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _sheet(out: Path) -> _Sheet:
    sheet = _Sheet()
    sheet.feed((out / "index.html").read_text(encoding="utf-8"))
    return sheet


def test_contact_sheet_shows_every_image_and_every_failed_row(tmp_path, image_client, emulator):
    manifest = _write_manifest(
        tmp_path / "m",
        [
            _t2i("pair", "Two <b>bold</b> boats", numberOfImages=2),
            _t2i("single", "One boat"),
            _t2i("blocked", "A __BLOCKED__ boat"),
            _t2i("too-many", "Six boats", numberOfImages=6),
        ],
    )
    out = tmp_path / "out"
    render_manifest(_config(manifest, out, skip_invalid=True), image_client)

    for sheet in (_sheet(out), None):
        if sheet is None:  # a rerun renders nothing, and the sheet still shows what is missing
            render_manifest(_config(manifest, out, skip_invalid=True), image_client)
            sheet = _sheet(out)
        paths = [r[0] for r in query(out, "SELECT path FROM images ORDER BY id, n")]
        assert sorted(sheet.srcs) == sorted(paths) and len(paths) == 3
        for src in sheet.srcs:
            assert not os.path.isabs(src) and ".." not in src and ":" not in src
            assert (out / src).is_file()
        text = " ".join(sheet.text)
        assert "blocked" in text and BLOCKED_TEXT in text
        assert "too-many" in text and "numberOfImages" in text
        assert "Two <b>bold</b> boats" in text  # escaped, shown as text


def test_spend_cap_stops_early_and_the_next_run_renders_the_rest(tmp_path, image_client, emulator):
    rows = [_t2i(f"row-{i}", f"Picture number {i}") for i in range(4)]
    manifest = _write_manifest(tmp_path / "m", rows)
    out = tmp_path / "out"
    # 320x320 standard costs $0.04 an image: the cap admits two of the four rows
    capped = render_manifest(_config(manifest, out, max_cost=0.1), image_client)
    assert capped.status == "partial" and "cap" in capped.reason
    assert capped.stats["rendered"] == 2 and capped.stats["skipped_cap"] == 2
    assert _image_calls(emulator) == 2 and capped.cost_usd <= 0.1
    first = set(_pngs(out))

    rest = render_manifest(_config(manifest, out), image_client)
    assert rest.status == "completed" and rest.api_calls == 2 and _image_calls(emulator) == 4
    assert rest.stats["skipped_unchanged"] == 2
    assert len(first) == 2 and set(_pngs(out)) == {f"row-{i}_0.png" for i in range(4)}


@pytest.mark.parametrize("name", ["prompts.csv", "prompts.yaml"])
def test_sample_manifests_render_without_errors(tmp_path, image_client, emulator, name):
    manifest = REPO / "data" / name
    out = tmp_path / "out"
    summary = render_manifest(_config(manifest, out), image_client)
    rows = load_manifest(manifest).rows
    expected = sum(number_of_images(build_request(r, None)) for r in rows)

    assert summary.status == "completed", summary.reason
    assert summary.errors == 0 and query(out, "SELECT count(*) FROM errors")[0][0] == 0
    assert summary.stats["rendered"] == len(rows) > 0
    assert query(out, "SELECT count(*) FROM images")[0][0] == expected == len(list(out.glob("*.png")))


def test_rerender_with_fewer_images_removes_the_old_extras(tmp_path, api_env):
    from quant_batch.client.factory import build_client
    from quant_batch.config_files import parse_config
    from quant_batch.render.config import RenderConfig
    from quant_batch.render.run import render_manifest

    manifest = tmp_path / "m.jsonl"
    out = tmp_path / "out"

    def render(count: int):
        manifest.write_text(
            '{"id": "fox", "prompt": "a red fox in snow", "width": 320, "height": 320, "seed": 7, '
            f'"numberOfImages": {count}}}\n'
        )
        cfg = parse_config(RenderConfig, {"manifest": str(manifest), "out": str(out)}, source="test")
        with build_client(cfg.api, cfg.rate_limits, pool_size=2, images=True) as client:
            return render_manifest(cfg, client)

    assert render(3).stats["images"] == 3
    assert sorted(p.name for p in out.glob("fox_*.png")) == ["fox_0.png", "fox_1.png", "fox_2.png"]
    assert render(1).stats["images"] == 1
    assert sorted(p.name for p in out.glob("fox_*.png")) == ["fox_0.png"]
    assert query(out, "SELECT n FROM images WHERE id = 'fox'") == [(0,)]


def test_an_answer_with_broken_image_bytes_fails_its_row_only(tmp_path, api_env):
    # a 200 whose base64 decodes to half a PNG: the service sent garbage, so the row's error is
    # retryable, no file is left for it, and the rows after it still render
    manifest = _write_manifest(
        tmp_path / "m",
        [
            _t2i("before", "A harbour at noon"),
            _t2i("garbage", "A broken __BAD_IMAGE__ answer"),
            _t2i("after", "A harbour at dusk"),
        ],
    )
    out = tmp_path / "out"
    with build_client(ApiConfig(max_attempts=2), RateLimits(), pool_size=1, images=True) as image_client:
        summary = render_manifest(_config(manifest, out, concurrency=1), image_client)

        assert summary.status == "errors" and summary.errors == 1 and summary.stats["rendered"] == 2
        assert sorted(p.name for p in out.glob("*.png")) == ["after_0.png", "before_0.png"]
        errors = query(out, "SELECT doc_id, kind, retryable, line, message FROM errors")
        assert len(errors) == 1
        doc_id, kind, retryable, line, message = errors[0]
        assert (doc_id, kind, retryable, line) == ("garbage", "BadResponse", True, 2)
        assert "not a valid PNG/JPEG" in message
        # retried inside the call (2 attempts), then by the next normal run, not left for replay only
        assert api_env.stats()["by_endpoint"]["image-generation"] == {"200": 4}
        again = render_manifest(_config(manifest, out, concurrency=1), image_client)
    assert again.api_calls == 1 and again.stats["skipped_failed"] == 0 and again.errors == 1
    assert api_env.stats()["by_endpoint"]["image-generation"] == {"200": 6}


def test_outputs_hold_no_machine_paths_and_read_as_text(tmp_path, image_client, emulator):
    # an output folder is published or moved: input images are named relative to the manifest
    manifest = _write_manifest(
        tmp_path / "m",
        [
            {
                "id": "variation",
                "task": "IMAGE_VARIATION",
                "prompt": "A coffee mug",
                "images": ["images/mug.png"],
                "width": 320,
                "height": 320,
                "seed": 6,
            },
            _t2i("plain", "A lighthouse", seed=1),
        ],
    )
    out = tmp_path / "out"
    render_manifest(_config(manifest, out), image_client)

    params = dict(query(out, "SELECT id, params FROM images"))
    assert json.loads(params["variation"])["images"] == ["images/mug.png"]
    sheet = (out / "index.html").read_text(encoding="utf-8")
    for text in (sheet, *params.values()):
        assert str(tmp_path) not in text
    assert "images/mug.png" in sheet
    # the summary table shows sizes as "320x320/standard 2", not a Python dict
    assert "<th>images by size</th><td>320x320/standard 2</td>" in sheet


def test_a_mistyped_manifest_creates_nothing(tmp_path, api_env):
    from typer.testing import CliRunner

    from quant_batch.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["render", str(tmp_path / "nope.csv"), "--out", str(out), "--no-prefect"])
    assert res.exit_code == 2 and "nope.csv: manifest not found" in " ".join(res.output.split())
    assert not out.exists()  # no catalog.duckdb, no run record
