"""The look of a finished image: Astria's `color_grading` film looks and `film_grain`, run
after the post-processing plug-ins (so grain sits at the final resolution) and recorded in the
PNG parameters. Built in code from the curves below: no LUT files to install.

Each film look is three tone curves (control points, input -> output on 0-255, joined by
straight lines into a 256-entry lookup table per channel) and a saturation factor (1 keeps it;
the mix is with Rec. 601 luma):

| look        | contrast                                 | colour                                        | saturation |
|-------------|------------------------------------------|-----------------------------------------------|------------|
| Film Portra | soft, lifted blacks, rolled-off whites   | warm: red up, blue down in the highlights     | 0.90       |
| Film Velvia | strong S-curve, deep blacks              | cool-magenta shadows, rich greens and blues   | 1.35       |
| Ektar       | punchy S-curve                           | warm reds, clean blues                        | 1.20       |

Film grain is monochrome Gaussian noise (standard deviation GRAIN_STRENGTH of the 0-255
range), slightly blurred so it reads as grain rather than pixel noise, from a generator seeded
with the image's seed: the same seed gives the same grain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from studio.errors import InvalidInput

GRAIN_STRENGTH = 6.0


@dataclass(frozen=True)
class FilmLook:
    red: tuple[tuple[int, int], ...]
    green: tuple[tuple[int, int], ...]
    blue: tuple[tuple[int, int], ...]
    saturation: float

    def lut(self) -> list[int]:
        """The 768-entry table PIL's Image.point takes (R, then G, then B)."""
        table: list[int] = []
        for points in (self.red, self.green, self.blue):
            xs, ys = zip(*points)
            table += np.clip(np.round(np.interp(np.arange(256), xs, ys)), 0, 255).astype(int).tolist()
        return table


COLOR_GRADINGS: dict[str, FilmLook] = {
    "Film Portra": FilmLook(
        red=((0, 14), (64, 74), (128, 140), (192, 204), (255, 248)),
        green=((0, 12), (64, 70), (128, 132), (192, 196), (255, 244)),
        blue=((0, 16), (64, 68), (128, 124), (192, 184), (255, 232)),
        saturation=0.90,
    ),
    "Film Velvia": FilmLook(
        red=((0, 4), (64, 52), (128, 130), (192, 208), (255, 255)),
        green=((0, 0), (64, 50), (128, 128), (192, 210), (255, 255)),
        blue=((0, 10), (64, 60), (128, 134), (192, 210), (255, 250)),
        saturation=1.35,
    ),
    "Ektar": FilmLook(
        red=((0, 2), (64, 58), (128, 136), (192, 206), (255, 255)),
        green=((0, 0), (64, 56), (128, 128), (192, 200), (255, 252)),
        blue=((0, 4), (64, 60), (128, 126), (192, 196), (255, 250)),
        saturation=1.20,
    ),
}


def canonical_grading(name: str) -> str:
    """The canonical name of a film look (any case, 'Portra' for 'Film Portra'); InvalidInput
    naming the looks for an unknown one."""
    wanted = name.strip().lower()
    for canonical in COLOR_GRADINGS:
        if wanted in (canonical.lower(), canonical.lower().removeprefix("film ")):
            return canonical
    raise InvalidInput(f"color_grading '{name}' is not one of: {', '.join(COLOR_GRADINGS)}.", field="color_grading")


def grade(image, name: str):
    """`image` (RGB PIL) in the film look `name`."""
    from PIL import Image

    look = COLOR_GRADINGS[canonical_grading(name)]
    graded = image.convert("RGB").point(look.lut())
    if look.saturation == 1:
        return graded
    pixels = np.asarray(graded, dtype=np.float32)
    luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mixed = luma[..., None] + (pixels - luma[..., None]) * look.saturation
    return Image.fromarray(np.clip(np.round(mixed), 0, 255).astype(np.uint8))


def add_grain(image, seed: int, strength: float = GRAIN_STRENGTH):
    """`image` (RGB PIL) with monochrome film grain drawn from `seed`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noise = rng.normal(0.0, strength, pixels.shape[:2]).astype(np.float32)
    # A light 3x3 box blur gives the noise a grain size above one pixel, then its strength back.
    padded = np.pad(noise, 1, mode="reflect")
    blurred = sum(padded[y : y + noise.shape[0], x : x + noise.shape[1]] for y in range(3) for x in range(3)) / 9
    blurred *= strength / max(float(blurred.std()), 1e-6)
    return Image.fromarray(np.clip(np.round(pixels + blurred[..., None]), 0, 255).astype(np.uint8))


def finish(images: Sequence, seeds: Sequence[int], *, color_grading: str | None, film_grain: bool) -> list:
    """Each image graded, then grained with its own seed (no-op when neither is asked)."""
    out = []
    for image, seed in zip(images, seeds):
        if color_grading:
            image = grade(image, color_grading)
        if film_grain:
            image = add_grain(image, seed)
        out.append(image)
    return out


def parameters(color_grading: str | None, film_grain: bool) -> dict[str, str]:
    """The A1111 parameter pairs recording the look."""
    out = {}
    if color_grading:
        out["Color grading"] = canonical_grading(color_grading)
    if film_grain:
        out["Film grain"] = f"{GRAIN_STRENGTH:g}"
    return out
