"""Draw the small input images that the sample manifests in ``data/`` use.

Run from the repository root: ``python scripts/make_sample_images.py``. The drawing is
deterministic (no randomness), so re-running it gives the same pictures; the PNGs are committed
so the demo does not need this script.

All images are 512x512, 8-bit RGB without alpha (Nova Canvas rejects transparent pixels in
inputs). Masks are pure black (area to change) and pure white (area to keep), nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 512
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        draw.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def house_sketch() -> Image.Image:
    """Black line drawing of a house on white: an edge map for CANNY_EDGE conditioning."""
    image = Image.new("RGB", (SIZE, SIZE), WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle([116, 236, 396, 436], outline=BLACK, width=6)  # walls
    draw.polygon([(96, 240), (256, 96), (416, 240)], outline=BLACK, width=6)  # roof
    draw.rectangle([226, 326, 286, 436], outline=BLACK, width=5)  # door
    draw.rectangle([146, 276, 206, 326], outline=BLACK, width=5)  # windows
    draw.rectangle([306, 276, 366, 326], outline=BLACK, width=5)
    draw.line([(320, 150), (320, 100), (352, 100), (352, 178)], fill=BLACK, width=5)  # chimney
    draw.line([(40, 436), (472, 436)], fill=BLACK, width=4)  # ground
    return image


def _mug(draw: ImageDraw.ImageDraw, body: tuple[int, int, int], shade: tuple[int, int, int]) -> None:
    draw.ellipse([150, 392, 362, 432], fill=(150, 140, 130))  # shadow on the table
    draw.rectangle([176, 200, 336, 410], fill=body)
    draw.rectangle([296, 200, 336, 410], fill=shade)  # darker right side reads as curvature
    draw.ellipse([176, 186, 336, 214], fill=shade)
    draw.ellipse([184, 190, 328, 210], fill=(60, 40, 30))  # coffee
    draw.ellipse([316, 246, 396, 346], outline=shade, width=16)  # handle


def product_photo() -> Image.Image:
    """A mug on a table in soft studio light, drawn flat enough to stay a small PNG."""
    image = vertical_gradient((236, 232, 226), (196, 188, 178))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 400, SIZE, SIZE], fill=(170, 130, 95))  # table top
    _mug(draw, body=(38, 96, 164), shade=(26, 70, 124))
    return image


def product_photo_alt() -> Image.Image:
    """The same scene with a red mug: a second input for IMAGE_VARIATION."""
    image = vertical_gradient((228, 236, 232), (180, 196, 188))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 400, SIZE, SIZE], fill=(120, 110, 100))
    _mug(draw, body=(180, 48, 42), shade=(132, 32, 28))
    return image


def background_mask() -> Image.Image:
    """Black above the table (the background to repaint), white on the mug and table (kept)."""
    image = Image.new("RGB", (SIZE, SIZE), BLACK)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 392, SIZE, SIZE], fill=WHITE)
    draw.rectangle([168, 176, 404, 436], fill=WHITE)
    return image


def palette_reference() -> Image.Image:
    """Four colour bands: a reference image for COLOR_GUIDED_GENERATION."""
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate([(231, 111, 81), (244, 162, 97), (233, 196, 106), (42, 157, 143)]):
        draw.rectangle([0, i * 128, SIZE, (i + 1) * 128], fill=colour)
    return image


IMAGES = {
    "house_sketch.png": house_sketch,
    "mug.png": product_photo,
    "mug_red.png": product_photo_alt,
    "mug_background_mask.png": background_mask,
    "palette.png": palette_reference,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/images"), help="output folder")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in IMAGES.items():
        draw().save(out / name, format="PNG", optimize=True)
        print(f"wrote {out / name} ({(out / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
