"""The test photo set, built from real photos that ship inside installed packages.

Sources: insightface's wheel (`t1.jpg`, six people around a table; `Tom_Hanks_54745.png`, a
112 px aligned face) and scikit-image (`astronaut`, `chelsea` the cat, `coffee`). Everything else
is derived here with plain PIL edits (crops, flips, blur, darkening, a pasted second face, drawn
sunglasses, a drawn hat, EXIF rotation), so the set is the same on every machine and nothing
comes from the network. Coordinates were read off the source photos once and are fixed here so
that the photos do not depend on the code under test.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

# Square head-and-shoulders crops of the six people in t1.jpg (x0, y0, x1, y1).
FRIENDS = {
    "rachel": (0, 176, 324, 500),
    "phoebe": (956, 176, 1280, 500),
    "chandler": (620, 260, 944, 584),
    "ross": (344, 188, 668, 512),
    "joey": (776, 0, 1100, 324),
    "monica": (176, 86, 446, 356),
}
# The astronaut's face in skimage's 512 px photo: eye centres, and the box around brows..chin.
ASTRONAUT_EYES = ((203, 102), (246, 104))
ASTRONAUT_FACE = (175, 76, 265, 166)
ASTRONAUT_MOUTH = ((201, 139), (246, 141))


def _insightface_image(name: str) -> Image.Image:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    return Image.open(folder / name).convert("RGB")


@cache
def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def astronaut() -> Image.Image:
    """Eileen Collins, 512x512, one sharp frontal face (90 px box) and a badge HOG half-likes."""
    return _astronaut().copy()


def group() -> Image.Image:
    """t1.jpg: 1280x886, six people, faces about 100 px."""
    return _insightface_image("t1.jpg")


def hanks() -> Image.Image:
    """Tom Hanks, the 112 px aligned face crop as shipped (below the studio's minimum size)."""
    return _insightface_image("Tom_Hanks_54745.png")


def hanks_padded() -> Image.Image:
    """Hanks upscaled to 224 px and set in a 448 px grey frame, as detectors need."""
    canvas = Image.new("RGB", (448, 448), (128, 128, 128))
    canvas.paste(hanks().resize((224, 224), Image.Resampling.LANCZOS), (112, 112))
    return canvas


def friend(name: str, size: int = 512) -> Image.Image:
    """One person of t1.jpg, cropped head and shoulders and resized to `size` px."""
    return group().crop(FRIENDS[name]).resize((size, size), Image.Resampling.LANCZOS)


def cat() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


# -- edits -------------------------------------------------------------------------------------


def mirrored(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about the centre, the uncovered corners filled with the border's mean colour."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=_border_colour(image))


def cropped(image: Image.Image, box: tuple[int, int, int, int], size: int | None = None) -> Image.Image:
    out = image.crop(box)
    return out if size is None else out.resize((size, size), Image.Resampling.LANCZOS)


def scaled(image: Image.Image, size: int) -> Image.Image:
    """Resized so that the long side is `size` px."""
    factor = size / max(image.size)
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def blurred(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def darkened(image: Image.Image, factor: float) -> Image.Image:
    """Every pixel value multiplied by `factor` (0.2 is a badly under-exposed photo)."""
    return image.point(lambda v: round(v * factor))


def washed_out(image: Image.Image, amount: float) -> Image.Image:
    """Blended towards white by `amount` (0.8 is a hazy, over-exposed photo)."""
    return Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), amount)


def with_sunglasses(image: Image.Image, eyes: tuple[tuple[int, int], tuple[int, int]]) -> Image.Image:
    """Near-black round lenses over both eyes joined by a bridge, sized from the eye distance."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    (lx, ly), (rx, ry) = eyes
    gap = ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5
    rw, rh = 0.42 * gap, 0.3 * gap
    for x, y in eyes:
        draw.ellipse((x - rw, y - rh, x + rw, y + rh), fill=(18, 18, 22))
    draw.line(
        (lx + rw * 0.9, (ly + ry) / 2, rx - rw * 0.9, (ly + ry) / 2), fill=(18, 18, 22), width=max(2, round(gap / 12))
    )
    return out


def with_glasses(image: Image.Image, eyes: tuple[tuple[int, int], tuple[int, int]]) -> Image.Image:
    """Clear glasses: thin dark frames around both eyes joined by a bridge; the eyes show through."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    (lx, ly), (rx, ry) = eyes
    gap = ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5
    rw, rh, width = 0.42 * gap, 0.3 * gap, max(2, round(gap / 14))
    for x, y in eyes:
        draw.ellipse((x - rw, y - rh, x + rw, y + rh), outline=(25, 25, 25), width=width)
    draw.line((lx + rw, (ly + ry) / 2, rx - rw, (ly + ry) / 2), fill=(25, 25, 25), width=width)
    return out


def with_iris_hue(image: Image.Image, eyes: tuple[tuple[int, int], tuple[int, int]], hue: int) -> Image.Image:
    """The irises recoloured to `hue` (degrees: 215 blue, 110 green) and lightened as light
    eyes are: a disc of a tenth of the eye distance around each eye centre (the pupil stays
    darkest: only hue and brightness change)."""
    (lx, ly), (rx, ry) = eyes
    radius = 0.1 * ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    for x, y in eyes:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    h, s, v = image.convert("HSV").split()
    h.paste(round(hue / 360 * 255), mask=mask)
    v = Image.composite(v.point(lambda value: min(255, round(value * 1.6))), v, mask)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def with_hat(image: Image.Image, eyes: tuple[tuple[int, int], tuple[int, int]], colour=(150, 30, 40)) -> Image.Image:
    """A cap pulled down to just above the brows: a rounded crown over the hair and a darker
    brim, sized from the eye distance."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    (lx, ly), (rx, ry) = eyes
    gap = ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5
    cx, brim_y = (lx + rx) / 2, (ly + ry) / 2 - 0.42 * gap
    draw.ellipse((cx - 1.25 * gap, brim_y - 2.2 * gap, cx + 1.25 * gap, brim_y + 0.4 * gap), fill=colour)
    draw.rectangle((cx - 1.5 * gap, brim_y - 0.25 * gap, cx + 1.5 * gap, brim_y), fill=tuple(c // 2 for c in colour))
    # Below the brim is the face again: the ellipse must not hide the brows.
    out.paste(image.crop((0, round(brim_y), image.width, image.height)), (0, round(brim_y)))
    return out


def with_open_mouth(
    image: Image.Image, corners: tuple[tuple[int, int], tuple[int, int]], drop: float = 0.3
) -> Image.Image:
    """The jaw dropped: everything below the mouth line (within the face's width) moved down by
    `drop` mouth widths, the gap shown as a dark open mouth, as in a shout or a grimace."""
    out = image.copy()
    (lx, ly), (rx, ry) = corners
    width = rx - lx
    cy, shift = round((ly + ry) / 2 + 0.08 * width), round(drop * width)
    x0, x1 = round(lx - 0.6 * width), round(rx + 0.6 * width)
    lower = image.crop((x0, cy, x1, min(image.height, cy + 3 * width)))
    # An oval mask keeps the seams soft: the jaw moves, the cheeks' outer edges stay put.
    mask = Image.new("L", lower.size, 0)
    ImageDraw.Draw(mask).ellipse(
        (0.15 * lower.width, -0.6 * lower.height, 0.85 * lower.width, 0.6 * lower.height), fill=255
    )
    out.paste(lower, (x0, cy + shift), mask.filter(ImageFilter.GaussianBlur(width / 6)))
    draw = ImageDraw.Draw(out)
    draw.ellipse((lx + 0.05 * width, cy - 0.1 * width, rx - 0.05 * width, cy + shift + 0.1 * width), fill=(45, 12, 18))
    return out


def with_second_face(image: Image.Image, donor: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """`donor` resized into `box` of `image` (a second person in the frame)."""
    out = image.copy()
    out.paste(donor.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2])
    return out


def on_canvas(image: Image.Image, size: tuple[int, int], at: tuple[int, int], scale: float) -> Image.Image:
    """`image` scaled by `scale` and placed at `at` on a canvas of its border colour."""
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, _border_colour(image))
    canvas.paste(small, at)
    return canvas


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    edge = image.convert("RGB").resize((16, 16), Image.Resampling.BOX)
    pixels = [edge.getpixel((x, y)) for x in range(16) for y in (0, 15)]
    return tuple(sum(p[c] for p in pixels) // len(pixels) for c in range(3))


# -- files ---------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 92)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    """A JPEG whose pixels are stored turned 90° clockwise with EXIF Orientation 6 (rotate 90° CW
    to display, phones write this): a viewer that honours EXIF shows `image` upright."""
    stored = image.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise; orientation 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif)


def truncated_jpeg(image: Image.Image) -> bytes:
    data = encode(image, "JPEG")
    return data[: len(data) // 2]


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height (400 megapixels at the default) that is ~50 KB on disk."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512">'
    b'<circle cx="256" cy="256" r="200" fill="tan"/></svg>\n'
)
TEXT_AS_JPG = b"These are my holiday notes, not a photo.\n" * 20
