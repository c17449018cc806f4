"""Image bytes in, upright RGB PIL images out: the one decoder every uploaded image goes through.

`open_image` does the decoding and says why bytes are refused; `decode_image` is the form for a
request field (an input image, an avatar), with the field's name in its messages;
`studio.inspection.decode_photo` words the same refusals for training photos. Pure functions:
no settings, no files. PIL is imported inside functions.
"""

from __future__ import annotations

import io
import math
import struct
from typing import TYPE_CHECKING

import numpy as np

from studio.errors import InvalidInput, TooLarge

if TYPE_CHECKING:
    from PIL import Image

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 50_000_000  # a 20000x20000 PNG (400 MP) is refused before a byte is decoded
MIN_SIDE = 16  # what `decode_image` refuses below, a side; photos have their own, higher minimum

# What Pillow raises for a file that starts like an image but is broken further on.
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)


class UnreadableImage(Exception):
    """Bytes `open_image` does not turn into an image. `reason` completes a sentence whose
    subject is the file ("is a GIF: use a PNG, JPEG or WEBP photo.") and says what to do."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def open_image(data: bytes, *, draft_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode PNG, JPEG or WEBP bytes into an upright RGB image.

    Returns (image, stored size): the size (w, h) as the file states it, before EXIF
    orientation. Only those three formats are opened; the pixel count is checked against
    MAX_PIXELS before decoding; EXIF orientation is applied; transparency becomes white and
    16-bit greyscale is scaled to 8 bits. With `draft_side`, a JPEG at least twice that on
    its long side is decoded at 1/2, 1/4 or 1/8 scale, never below `draft_side` (for callers
    that shrink to it anyway). Raises UnreadableImage for empty, unrecognised, oversized,
    damaged or truncated data; never anything else for bad bytes."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise UnreadableImage("is empty (0 bytes): upload the photo again.")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnreadableImage(_not_an_image(data)) from None
    except Image.DecompressionBombError:
        # Pillow refuses it before we see its size; a PNG states it in the first 24 bytes.
        size = struct.unpack(">II", data[16:24]) if data.startswith(b"\x89PNG") and len(data) >= 24 else None
        raise UnreadableImage(_too_many_pixels(size)) from None
    except _DAMAGED as error:  # a header Pillow recognised but could not read to its end
        raise UnreadableImage(_damaged(error)) from None
    stored = image.size
    if stored[0] * stored[1] > MAX_PIXELS:
        raise UnreadableImage(_too_many_pixels(stored))
    if draft_side is not None and image.format == "JPEG" and max(stored) >= 2 * draft_side:
        factor = draft_side / max(stored)
        image.draft("RGB", (math.ceil(stored[0] * factor), math.ceil(stored[1] * factor)))
    try:
        image.load()
        # EXIF is read only now, and it can be as broken as the rest.
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise UnreadableImage(_too_many_pixels(image.size)) from None
    except _DAMAGED as error:
        raise UnreadableImage(_damaged(error)) from None
    return pixels_only(_to_rgb(image)), stored


def decode_image(data: bytes, field: str, *, max_bytes: int, min_side: int = MIN_SIDE) -> Image.Image:
    """An uploaded image for the request field `field`, as an upright RGB PIL image.

    Raises TooLarge over `max_bytes` ("{field} is over N MB: use a smaller image.", N in MB);
    InvalidInput for anything `open_image` refuses ("{field} is not a readable PNG, JPEG or
    WEBP image.") and for an image under `min_side` pixels on a side; both name `field`."""
    if len(data) > max_bytes:
        raise TooLarge(f"{field} is over {max_bytes / 2**20:g} MB: use a smaller image.", field=field)
    try:
        image, _ = open_image(data)
    except UnreadableImage:
        raise InvalidInput(f"{field} is not a readable PNG, JPEG or WEBP image.", field=field) from None
    if min(image.size) < min_side:
        raise InvalidInput(f"{field} is {image.width}x{image.height}: use at least {min_side} px a side.", field=field)
    return image


def pixels_only(image: Image.Image) -> Image.Image:
    """`image` with nothing but its pixels: Pillow writes what `info` holds (a JPEG comment,
    an ICC profile, XMP) back into the files it saves, so a decoded upload keeps none of it."""
    image.info = {}
    return image


def clean_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    """`image` re-encoded from its pixels alone as PNG, or as JPEG (quality 95) when `fmt` is
    JPEG: no comment, EXIF, XMP, ICC profile or trailing bytes. Raises UnreadableImage when the
    pixels cannot be encoded."""
    from PIL import Image

    fresh = Image.frombytes("RGB", image.size, image.convert("RGB").tobytes())
    buffer = io.BytesIO()
    try:
        if fmt == "JPEG":
            fresh.save(buffer, format="JPEG", quality=95)
        else:
            fresh.save(buffer, format="PNG")
    except _DAMAGED as error:
        raise UnreadableImage(f"could not be stored ({error}): export it again as PNG or JPEG.") from None
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG from its pixels alone (no metadata)."""
    return clean_bytes(image, "PNG")


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    """A copy of `image` shrunk (never enlarged) to fit `side` x `side`, aspect kept. Raises
    InvalidInput (field 'side') under 16 px."""
    if side < 16:
        raise InvalidInput("A thumbnail needs a side of at least 16 px.", field="side")
    small = image.copy()
    small.thumbnail((side, side))
    return small


def image_format(data: bytes) -> str:
    """PNG, WEBP or JPEG by the bytes' signature, for bytes `open_image` accepted."""
    if data.startswith(b"\x89PNG"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "JPEG"


def _to_rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) or 1.0
        image = Image.fromarray((values * (255.0 / peak)).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        # Transparent areas become white, as most viewers show them, not black.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _not_an_image(data: bytes) -> str:
    head = data[:1024].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "is an SVG drawing, not a photo: export it as PNG or JPEG."
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "is a HEIC photo: export it as JPEG (on iPhone: Settings > Camera > Formats > Most Compatible)."
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "is a GIF: use a PNG, JPEG or WEBP photo."
    return "is not a PNG, JPEG or WEBP image: upload the photo itself."


def _too_many_pixels(size: tuple[int, int] | None) -> str:
    dims = f"{size[0]}x{size[1]} pixels" if size else "far too many pixels"
    return f"has {dims}, over the {MAX_PIXELS // 1_000_000} megapixel limit: resize it before uploading."


def _damaged(error: Exception) -> str:
    return f"is damaged or cut short ({error}): upload the original file again."
