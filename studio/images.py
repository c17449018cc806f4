"""Decoding uploads and the small image helpers the services share (pure; PIL only)."""

from __future__ import annotations

import io

from studio.errors import InvalidInput, TooLarge


def decode_image(data: bytes, field: str, *, max_bytes: int):
    """An upload as an upright RGB PIL image; only PNG/JPEG/WEBP are opened. Raises TooLarge
    over `max_bytes` and InvalidInput (naming `field`) for anything unreadable or under 16 px
    a side."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise TooLarge(f"{field} is over {max_bytes // 2**20} MB: use a smaller image.", field=field)
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"])
        image.load()
        image = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise InvalidInput(f"{field} is not a readable PNG, JPEG or WEBP image.", field=field) from None
    if min(image.size) < 16:
        raise InvalidInput(f"{field} is {image.width}x{image.height}: use at least 16 px a side.", field=field)
    return image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail(image, side: int):
    """A copy of `image` shrunk (never enlarged) to fit `side` x `side`, aspect kept."""
    if side < 16:
        raise InvalidInput("A thumbnail needs a side of at least 16 px.", field="side")
    small = image.copy()
    small.thumbnail((side, side))
    return small
