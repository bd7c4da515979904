"""Manifest loading: row forms, defaults, keys, ids and problem reports, on real files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import quantcdn
from PIL import Image

from quant_batch.errors import InputError
from quant_batch.hashing import canonical_json
from quant_batch.render.manifest import RenderDefaults, build_request, load_manifest
from quant_batch.render.rules import check_image_request

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "images", tmp_path / "images")
    return tmp_path


def write(folder: Path, name: str, rows: list) -> Path:
    path = folder / name
    if name.endswith(".jsonl"):
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    else:
        path.write_text(rows if isinstance(rows, str) else "\n".join(rows) + "\n")
    return path


def one(folder: Path, row: dict, **kw):
    manifest = load_manifest(write(folder, "m.jsonl", [row]), **kw)
    assert manifest.problems == [], [str(p) for p in manifest.problems]
    return manifest.rows[0]


def problems(manifest) -> set[tuple[int | None, str | None]]:
    return {(p.line, p.field) for p in manifest.problems}


@pytest.mark.parametrize(
    "name, tasks",
    [
        (
            "prompts.jsonl",
            ["TEXT_IMAGE"] * 4
            + ["COLOR_GUIDED_GENERATION"] * 2
            + ["IMAGE_VARIATION"]
            + ["INPAINTING"] * 2
            + ["OUTPAINTING", "BACKGROUND_REMOVAL"],
        ),
        ("prompts.csv", ["TEXT_IMAGE"] * 3 + ["COLOR_GUIDED_GENERATION"] * 2),
        ("prompts.yaml", ["TEXT_IMAGE", "TEXT_IMAGE", "COLOR_GUIDED_GENERATION", "INPAINTING"]),
    ],
)
def test_sample_manifests_are_valid(name, tasks):
    manifest = load_manifest(DATA / name)
    assert manifest.problems == [] and manifest.invalid_rows == []
    assert [r.task_type for r in manifest.rows] == tasks
    for row in manifest.rows:
        request = build_request(row, seed=None if row.task_type == "BACKGROUND_REMOVAL" else 1234)
        assert check_image_request(request, decode_images=True) == []
        assert quantcdn.ImageGenerationRequest.from_dict(request).task_type == row.task_type
        assert "$file" not in json.dumps(request)


def test_sample_jsonl_covers_the_input_forms():
    rows = {r.id: r for r in load_manifest(DATA / "prompts.jsonl").rows}
    assert rows["cottage-sketch"].inputs[0].field == "textToImageParams.conditionImage"
    assert [i.field for i in rows["mug-variations"].inputs] == [
        "imageVariationParams.images[0]",
        "imageVariationParams.images[1]",
    ]
    assert rows["mug-latte"].request["inPaintingParams"]["maskPrompt"] == "the coffee in the mug"
    assert rows["mug-kitchen"].inputs[1].field == "inPaintingParams.maskImage"
    assert "imageGenerationConfig" not in rows["mug-cutout"].request
    assert "width" not in rows["mug-wide"].request["imageGenerationConfig"]
    assert rows["fox-forest"].request["textToImageParams"]["style"] == "SOFT_DIGITAL_PAINTING"


def test_flat_and_nested_forms_give_the_same_request_and_key(folder):
    flat = one(
        folder,
        {
            "task": "INPAINTING",
            "image": "images/mug.png",
            "maskPrompt": "the mug",
            "prompt": "a glass mug",
            "cfgScale": 7,
            "seed": 3,
        },
    )
    nested = one(
        folder,
        {
            "taskType": "INPAINTING",
            "region": "us-east-1",
            "inPaintingParams": {"image": "images/mug.png", "maskPrompt": "the mug", "text": "a glass mug"},
            "imageGenerationConfig": {"cfgScale": 7.0, "seed": 3, "quality": "standard"},
        },
    )
    assert flat.request == nested.request and flat.key == nested.key
    assert flat.request["inPaintingParams"]["image"] == {"$file": "inPaintingParams.image"}


def test_key_is_stable_across_loads_and_ignores_id_and_image_name(folder):
    row = {"id": "a", "prompt": "a red barn", "conditionImage": "images/house_sketch.png"}
    key = one(folder, row).key
    assert one(folder, row).key == key
    assert one(folder, {**row, "id": "b"}).key == key
    shutil.copy(folder / "images/house_sketch.png", folder / "images/renamed.png")
    # the output depends on the image's bytes, not on its name
    assert one(folder, {**row, "conditionImage": "images/renamed.png"}).key == key


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a blue barn"},
        {"negativeText": "fog"},
        {"style": "MAXIMALISM"},
        {"width": 512},
        {"height": 512},
        {"quality": "premium"},
        {"cfgScale": 8},
        {"seed": 5},
        {"numberOfImages": 2},
        {"region": "eu-west-1"},
        {"controlStrength": 0.5},
        {"controlMode": "SEGMENTATION"},
        {"conditionImage": "images/mug.png"},
    ],
)
def test_key_changes_with_every_param(folder, change):
    row = {"prompt": "a red barn", "conditionImage": "images/house_sketch.png"}
    assert one(folder, {**row, **change}).key != one(folder, row).key


def test_key_changes_when_an_input_image_changes(folder):
    row = {"task": "BACKGROUND_REMOVAL", "image": "images/mug.png"}
    before = one(folder, row)
    Image.new("RGB", (512, 512), (10, 200, 30)).save(folder / "images/mug.png")
    assert one(folder, row).key != before.key


def test_seed_auto(folder):
    row = one(folder, {"prompt": "a red barn", "width": 512, "height": 512})
    assert row.seed is None and "seed" not in row.request["imageGenerationConfig"]
    assert one(folder, {"prompt": "a red barn", "width": 512, "height": 512}).key == row.key
    assert one(folder, {"prompt": "a red barn", "width": 512, "height": 512, "seed": 12}).key != row.key
    keyed = json.loads(json.dumps(row.request))
    keyed["imageGenerationConfig"]["seed"] = "auto"
    assert row.key == hashlib.sha256(canonical_json(keyed)).hexdigest()
    assert row.id == f"img-{row.key[:12]}"
    assert build_request(row, 77)["imageGenerationConfig"]["seed"] == 77
    assert "seed" not in build_request(row, None)["imageGenerationConfig"]


def test_every_kind_of_error_is_reported_at_once(folder, monkeypatch):
    (folder / "images/notes.png").write_text("not an image")
    rows = [
        {"id": "long", "prompt": "x" * 1025},
        {"id": "empty", "prompt": ""},
        {"prompt": "a", "numberOfImages": 6},
        {"prompt": "b", "width": 1000},
        {"prompt": "c", "width": 2048, "height": 2048},
        {"prompt": "d", "width": 320, "height": 1600},
        {"prompt": "e", "cfgScale": 11},
        {"prompt": "f", "seed": -1},
        {"prompt": "g", "region": "ap-southeast-2"},
        {"task": "TEXT_TO_IMAGE", "prompt": "h"},
        {"taskType": "INPAINTING"},
        {"promt": "i"},
        {"prompt": "j", "width": "wide"},
        {"task": "BACKGROUND_REMOVAL", "image": "images/nope.png"},
        {"task": "BACKGROUND_REMOVAL", "image": "images/notes.png"},
        {
            "task": "BACKGROUND_REMOVAL",
            "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        },
        '{"id": "broken", "prompt": ',
        {"id": "long", "prompt": "k"},
        {"id": "../../x", "prompt": "l"},
        {"id": "/abs/x", "prompt": "m"},
        {"id": "fine", "prompt": "a valid row still loads", "width": 512, "height": 512},
    ]
    write(folder, "bad.jsonl", rows)
    monkeypatch.chdir(folder)
    manifest = load_manifest(Path("bad.jsonl"))
    expected = {
        1: ("textToImageParams.text", "must be 1-1024 characters"),
        2: ("textToImageParams.text", "must be 1-1024 characters"),
        3: ("imageGenerationConfig.numberOfImages", "1 to 5"),
        4: ("imageGenerationConfig.width", "divisible by 16"),
        5: ("imageGenerationConfig", "4194304"),
        6: ("imageGenerationConfig", "aspect ratio"),
        7: ("imageGenerationConfig.cfgScale", "1.1 to 10"),
        8: ("imageGenerationConfig.seed", "from 0"),
        9: ("region", "ap-southeast-2"),
        10: ("task", "did you mean 'TEXT_IMAGE'?"),
        11: ("inPaintingParams", "is required"),
        12: ("promt", "unknown field 'promt' (did you mean 'prompt'?)"),
        13: ("width", "expected a whole number, got 'wide'"),
        14: ("backgroundRemovalParams.image", "file not found: images/nope.png"),
        15: ("backgroundRemovalParams.image", "must be a PNG or JPEG image"),
        16: ("backgroundRemovalParams.image", "not inline image data"),
        17: (None, "invalid JSON"),
        18: ("id", "duplicate id 'long' (first used on line 1)"),
        19: ("id", "id must be a plain name; got '../../x'"),
        20: ("id", "id must be a plain name; got '/abs/x'"),
    }
    found = {}
    for p in manifest.problems:
        found.setdefault(p.line, []).append(p)
    assert set(found) == set(expected)
    for line, (fld, text) in expected.items():
        assert any(p.field == fld and text in p.message for p in found[line]), (line, found[line])
    assert str(found[1][0]) == "bad.jsonl:1: textToImageParams.text: must be 1-1024 characters"
    assert [r.id for r in manifest.rows] == ["fine"]
    assert manifest.invalid_lines == list(range(1, 21))
    assert manifest.invalid_rows[16].raw.startswith('{"id": "broken"')
    assert len(manifest.problems) == 21  # line 12 also lacks its prompt
    with pytest.raises(InputError, match="21 problem"):
        manifest.raise_for_problems()


def test_nested_rows_report_unknown_and_misplaced_fields(folder):
    manifest = load_manifest(
        write(
            folder,
            "m.jsonl",
            [
                {"taskType": "TEXT_IMAGE", "textToImageParams": {"txt": "a"}},
                {
                    "taskType": "INPAINTING",
                    "textToImageParams": {"text": "a"},
                    "inPaintingParams": {"image": "images/mug.png", "maskPrompt": "mug"},
                },
                {"task": "INPAINTING", "image": "images/mug.png", "maskPrompt": "mug", "width": 512},
                {"prompt": "a", "text": "b"},
                {"task": "BACKGROUND_REMOVAL", "image": "images/mug.png", "imageGenerationConfig": {"seed": 1}},
            ],
        )
    )
    by_line = {p.line: p for p in manifest.problems if p.line != 1 or "txt" in p.field}
    assert "did you mean 'textToImageParams.text'?" in by_line[1].message
    assert by_line[2].field == "textToImageParams" and "use 'inPaintingParams'" in by_line[2].message
    assert by_line[3].field == "width" and "does not apply to taskType INPAINTING" in by_line[3].message
    assert by_line[4].field == "text" and "given twice" in by_line[4].message
    assert by_line[5].field == "imageGenerationConfig.seed"


def test_csv_coercion_and_line_numbers(folder):
    path = write(
        folder,
        "m.csv",
        [
            "id,task,prompt,width,height,cfgScale,seed,numberOfImages,colors,images,similarityStrength",
            'a,TEXT_IMAGE,"a prompt over',
            'two lines",512,384,7,,2,,,',
            "b,COLOR_GUIDED_GENERATION,palette,512,512,,,,#ff0000 #00FF00,,",
            'c,COLOR_GUIDED_GENERATION,palette,512,512,,,,"#ff0000,#00ff00",,',
            "d,IMAGE_VARIATION,vary,512,512,,,,,images/mug.png; images/mug_red.png,0.5",
            "e,TEXT_IMAGE,bad width,abc,512,,,,,,",
            "f,TEXT_IMAGE,too,many,cells,here,,,,,,,",
            "g,TEXT_IMAGE,,512,512,,,,,,",
        ],
    )
    manifest = load_manifest(path)
    rows = {r.id: r for r in manifest.rows}
    assert rows["a"].line == 2 and rows["b"].line == 4
    config = rows["a"].request["imageGenerationConfig"]
    assert (config["width"], config["height"], config["cfgScale"], config["numberOfImages"]) == (512, 384, 7.0, 2)
    assert rows["a"].seed is None and rows["a"].prompt == "a prompt over\ntwo lines"
    assert rows["b"].request["colorGuidedGenerationParams"]["colors"] == ["#ff0000", "#00FF00"]
    assert rows["c"].request["colorGuidedGenerationParams"]["colors"] == ["#ff0000", "#00ff00"]
    assert [i.path.name for i in rows["d"].inputs] == ["mug.png", "mug_red.png"]
    assert rows["d"].request["imageVariationParams"]["similarityStrength"] == 0.5
    assert problems(manifest) == {(7, "width"), (8, None), (9, "textToImageParams")}


def test_csv_booleans_and_virtual_try_on(folder):
    path = write(
        folder,
        "m.csv",
        [
            "id,task,sourceImage,referenceImage,garmentClass,maskShape,preserveFace,returnMask,mergeStyle,maskImage",
            "vto,VIRTUAL_TRY_ON,images/mug.png,images/mug_red.png,UPPER_BODY,BOUNDING_BOX,ON,yes,BALANCED,",
            "vto-mask,VIRTUAL_TRY_ON,images/mug.png,images/mug_red.png,,,,false,,images/mug_background_mask.png",
            "bad,VIRTUAL_TRY_ON,images/mug.png,images/mug_red.png,UPPER_BODY,,,maybe,,",
        ],
    )
    manifest = load_manifest(path)
    assert problems(manifest) == {(4, "returnMask")}
    rows = {r.id: r for r in manifest.rows}
    params = rows["vto"].request["virtualTryOnParams"]
    assert params["maskType"] == "GARMENT" and params["returnMask"] is True
    assert params["garmentBasedMask"] == {"garmentClass": "UPPER_BODY", "maskShape": "BOUNDING_BOX"}
    assert params["maskExclusions"] == {"preserveFace": "ON"}
    masked = rows["vto-mask"].request["virtualTryOnParams"]
    assert masked["maskType"] == "IMAGE" and masked["returnMask"] is False
    assert masked["imageBasedMask"] == {"maskImage": {"$file": "virtualTryOnParams.imageBasedMask.maskImage"}}
    for row in manifest.rows:
        request = build_request(row, 9)
        assert "width" not in request["imageGenerationConfig"]
        assert check_image_request(request, decode_images=True) == []
        quantcdn.ImageGenerationRequest.from_dict(request)
    assert rows["vto"].params()["sourceImage"] == "images/mug.png"  # relative: the output folder can move


def test_yaml_lines_defaults_and_precedence(folder):
    path = write(
        folder,
        "m.yaml",
        [
            "# comment",
            "defaults:",
            "  width: 512",
            "  height: 512",
            "rows:",
            "  - id: a",
            "    prompt: first",
            "",
            "  - id: b",
            "    prompt: second",
            "    width: 640",
            "    cfgScale: 11",
            "  - {id: c, task: INPAINTING, image: images/mug.png, maskPrompt: mug}",
        ],
    )
    manifest = load_manifest(path, RenderDefaults(width=768, height=768, quality="premium"))
    assert problems(manifest) == {(9, "imageGenerationConfig.cfgScale")}
    assert [(r.id, r.line) for r in manifest.rows] == [("a", 6), ("c", 13)]
    config = manifest.rows[0].request["imageGenerationConfig"]
    assert (config["width"], config["height"], config["quality"]) == (512, 512, "premium")
    assert "width" not in manifest.rows[1].request["imageGenerationConfig"]


def test_yaml_plain_list_and_bad_defaults(folder):
    path = write(folder, "m.yml", ["defaults:", "  widht: 512", "  cfgScale: lots", "rows:", "- prompt: hi"])
    manifest = load_manifest(path)
    assert problems(manifest) == {(1, "defaults.widht"), (1, "defaults.cfgScale")}
    assert "did you mean 'width'?" in manifest.problems[0].message
    assert manifest.file_problems == manifest.problems and manifest.invalid_rows == []
    assert len(load_manifest(write(folder, "l.yaml", ["- prompt: hi", "- prompt: there"])).rows) == 2


def test_yaml_syntax_error_keeps_the_other_rows(folder):
    path = write(
        folder,
        "m.yaml",
        [
            "defaults:",
            "  width: 512",
            "  height: 512",
            "rows:",
            "  - id: good-1",
            "    prompt: first",
            "  - id: broken",
            '    prompt: "unclosed',
            "  - id: good-2",
            "    prompt: second",
        ],
    )
    manifest = load_manifest(path)
    assert [(r.id, r.line) for r in manifest.rows] == [("good-1", 5), ("good-2", 9)]
    assert [(p.line, p.field) for p in manifest.problems] == [(7, None)]
    assert "invalid YAML" in manifest.problems[0].message
    assert manifest.rows[1].request["imageGenerationConfig"]["width"] == 512


def test_mask_must_match_the_image(folder):
    Image.new("RGB", (640, 640), (0, 0, 0)).save(folder / "images/big_mask.png")
    manifest = load_manifest(
        write(
            folder,
            "m.jsonl",
            [
                {"task": "INPAINTING", "image": "images/mug.png", "maskImage": "images/big_mask.png", "prompt": "a"},
                {"task": "INPAINTING", "image": "images/mug.png", "maskImage": "images/mug_red.png", "prompt": "b"},
            ],
        )
    )
    assert problems(manifest) == {(1, "inPaintingParams.maskImage"), (2, "inPaintingParams.maskImage")}
    assert "same size" in manifest.problems[0].message and "black" in manifest.problems[1].message


def test_ids_are_sanitised_and_paths_may_leave_the_folder(folder):
    sub = folder / "manifests"
    sub.mkdir()
    manifest = load_manifest(
        write(
            sub,
            "m.jsonl",
            [
                {"id": "My Image #1", "prompt": "a"},
                {"id": ".hidden", "prompt": "b"},
                {"id": "x" * 150, "prompt": "c"},
                {"id": 7, "prompt": "d"},
                {"task": "BACKGROUND_REMOVAL", "image": "../images/mug.png"},
                {"task": "BACKGROUND_REMOVAL", "image": str(folder / "images/mug_red.png")},
            ],
        )
    )
    assert manifest.problems == []
    assert [r.id for r in manifest.rows][:4] == ["My_Image__1", "hidden", "x" * 100, "7"]


def test_duplicate_requests_are_reported(folder):
    manifest = load_manifest(write(folder, "m.jsonl", [{"prompt": "same"}, {"prompt": "same"}]))
    assert [(p.line, p.field) for p in manifest.problems] == [(2, None)]
    assert "same request as line 1" in manifest.problems[0].message


def test_build_request_notices_a_changed_input(folder):
    row = one(folder, {"task": "BACKGROUND_REMOVAL", "image": "images/mug.png"})
    Image.new("RGB", (512, 512)).save(folder / "images/mug.png")
    with pytest.raises(InputError, match="changed after the manifest was checked"):
        build_request(row, None)


def test_unsupported_and_missing_files(folder):
    with pytest.raises(InputError, match="unsupported manifest type"):
        load_manifest(write(folder, "m.txt", ["x"]))
    with pytest.raises(InputError, match="manifest not found"):
        load_manifest(folder / "nope.jsonl")
