"""The one image decoder (studio/images.py): what `decode_image` accepts, what it refuses with
which message, and the small helpers beside it."""

from __future__ import annotations

import io

import numpy as np
import photos as P
import pytest
from PIL import Image

from studio.errors import InvalidInput, TooLarge
from studio.images import decode_image, open_image, png_bytes, thumbnail

MB = 2**20


def test_an_image_comes_back_upright_rgb_with_transparency_white():
    upright = P.friend("phoebe", 512).crop((0, 0, 512, 384))
    image = decode_image(P.exif_rotated_jpeg(upright), "input_image", max_bytes=MB)
    assert image.mode == "RGB" and image.size == (512, 384)
    assert np.abs(np.asarray(image, np.float32) - np.asarray(upright, np.float32)).mean() < 6
    cutout = decode_image(P.encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"), "style", max_bytes=MB)
    assert cutout.mode == "RGB" and cutout.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image",
        P.SVG,
        b"GIF89a" + b"\x00" * 64,
        P.truncated_jpeg(P.astronaut()),
        P.png_bomb(),
        P.encode(P.astronaut(), "BMP"),
    ],
    ids=["empty", "text", "svg", "gif", "truncated", "bomb", "bmp"],
)
def test_anything_but_a_complete_png_jpeg_or_webp_is_not_readable(data):
    with pytest.raises(InvalidInput) as error:
        decode_image(data, "input_image", max_bytes=MB)
    assert error.value.field == "input_image"
    assert error.value.message == "input_image is not a readable PNG, JPEG or WEBP image."


def test_limits_name_the_field():
    with pytest.raises(TooLarge) as error:
        decode_image(P.encode(P.astronaut(), "PNG"), "style", max_bytes=MB // 4)
    assert error.value.field == "style" and error.value.message == "style is over 0.25 MB: use a smaller image."
    with pytest.raises(InvalidInput, match=r"^pose is 8x64: use at least 16 px a side\.$"):
        decode_image(P.encode(Image.new("RGB", (8, 64)), "PNG"), "pose", max_bytes=MB)
    assert decode_image(P.encode(Image.new("RGB", (8, 64)), "PNG"), "pose", max_bytes=MB, min_side=8).size == (8, 64)


def test_open_image_keeps_the_stored_size_and_drafts_big_jpegs():
    image, stored = open_image(P.encode(P.scaled(P.astronaut(), 4100), "JPEG"), draft_side=1024)
    assert stored == (4100, 4100) and 1024 <= image.width < 4100


def test_png_bytes_and_thumbnail():
    image = P.astronaut()
    again = Image.open(io.BytesIO(png_bytes(image)))
    assert again.format == "PNG" and again.size == image.size
    small = thumbnail(image, 64)
    assert max(small.size) == 64 and image.size == (512, 512)
    with pytest.raises(InvalidInput) as error:
        thumbnail(image, 8)
    assert error.value.field == "side"
