"""Eye colour from a face's 68 landmarks and its pixels: the backend every install has (dlib)
reports Astria's `eye_color` too, not only the insightface models.

For each open eye the six eyelid landmarks outline the visible eye; it is resampled to a fixed
width, the lids' edge is eroded away, the iris is found as the darkest column band and read in a
disc of an iris's radius, without its darkest quarter (pupil, lashes) and its brightest tenth
(catch lights). The median CIE L*a*b* colour of the iris pixels of both eyes is named with
Astria's values; the confidence is the share of those pixels that are that colour themselves.

Nothing is reported for closed or squinting eyes, eyes too small to hold an iris, blurred eyes
or eyes without a visible white (too little contrast), an iris the colour of the skin around it
(the landmarks missed it), a photo without colour, or when fewer than half the iris pixels
agree. Calibrated on the test photos (tests/photos.py).
"""

from __future__ import annotations

import math

import numpy as np

from studio.faces import Face

#: Astria's eye_color values this detector can name.
EYE_COLORS = ("blue eyes", "brown eyes", "green eyes", "gray eyes", "black eyes")
MIN_OPENNESS = 0.22  # eyelid gap / eye width; a squint below this shows too little iris
MIN_EYE_WIDTH = 12.0  # px in the photo: below it an iris is a few pixels
MIN_CONTRAST = 50.0  # L* between the eye's darkest and lightest 5 %: the white of the eye shows
MIN_SHARPNESS = 8.0  # std of the Laplacian of the resampled eye: a blurred eye mixes its colours
MIN_SKIN_DISTANCE = 12.0  # CIE76 between iris and skin: closer, and the disc missed the iris
MIN_CONFIDENCE = 0.5  # share of iris pixels of the colour named
_WIDTH = 48  # px an eye is resampled to
_IRIS_RADIUS = 0.21  # of the eye's width (an iris spans about 0.42 of the visible eye)
_EYES = (slice(36, 42), slice(42, 48))  # iBUG 300-W: the two eyelid contours


def eye_color(rgb: np.ndarray, face: Face, skin: np.ndarray) -> tuple[str, float] | None:
    """(Astria's eye_color, confidence 0..1) of `face` in the upright RGB uint8 photo, given
    the median skin colour (RGB) of its cheeks; None when the eyes cannot tell (see above) or
    the backend gives no 68 landmarks."""
    if face.landmarks68 is None or float(np.ptp(skin)) < 6.0:  # no landmarks, or no colour
        return None
    skin_lab = _lab(skin[None].round().astype(np.uint8))[0]
    pixels = []
    for contour in _EYES:
        iris = _iris_pixels(rgb, np.asarray(face.landmarks68[contour], np.float64))
        if iris is not None and np.linalg.norm(np.median(iris, axis=0) - skin_lab) >= MIN_SKIN_DISTANCE:
            pixels.append(iris)
    if not pixels:
        return None
    iris = np.concatenate(pixels)
    name = _color_name(*np.median(iris, axis=0))
    confidence = float(np.mean(_color_names(iris) == EYE_COLORS.index(name)))
    return (name, round(confidence, 2)) if confidence >= MIN_CONFIDENCE else None


def _iris_pixels(rgb: np.ndarray, contour: np.ndarray) -> np.ndarray | None:
    """The L*a*b* pixels (N, 3) of the iris inside one eyelid contour (6 points, corner to
    corner along the upper lid, back along the lower); None for a closed, tiny, blurred or
    low-contrast eye."""
    import cv2

    width = float(np.linalg.norm(contour[3] - contour[0]))
    gap = (np.linalg.norm(contour[1] - contour[5]) + np.linalg.norm(contour[2] - contour[4])) / 2
    if width < MIN_EYE_WIDTH or gap / width < MIN_OPENNESS:
        return None
    scale = _WIDTH / width
    origin = contour.min(axis=0) - 0.2 * width
    size = np.ceil((contour.max(axis=0) + 0.2 * width - origin) * scale).astype(int)
    matrix = np.array([[scale, 0, -origin[0] * scale], [0, scale, -origin[1] * scale]])
    crop = cv2.warpAffine(
        rgb, matrix, tuple(int(s) for s in size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round((contour - origin) * scale).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=2) > 0  # off the lids' edge
    if mask.sum() < 40:
        return None
    lab = _lab(crop.reshape(-1, 3)).reshape(*crop.shape)
    darkest, lightest = np.percentile(lab[..., 0][mask], [5, 95])
    sharpness = cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[mask].std()
    if lightest - darkest < MIN_CONTRAST or sharpness < MIN_SHARPNESS:
        return None
    # The iris and pupil are the darkest band across the eye; the white of the eye is lighter.
    counts = mask.sum(axis=0)
    columns = np.where(counts > 0, (lab[..., 0] * mask).sum(axis=0) / np.maximum(counts, 1), np.inf)
    smooth = np.convolve(np.where(np.isfinite(columns), columns, 100.0), np.ones(7) / 7, mode="same")
    cx = int(np.argmin(np.where(counts > 0, smooth, np.inf)))
    cy = float(np.flatnonzero(mask[:, cx]).mean())
    rows, cols = np.mgrid[: mask.shape[0], : mask.shape[1]]
    disc = mask & ((cols - cx) ** 2 + (rows - cy) ** 2 <= (_IRIS_RADIUS * _WIDTH) ** 2)
    pixels = lab[disc]
    if len(pixels) < 20:
        return None
    low, high = np.percentile(pixels[:, 0], [25, 90])
    return pixels[(pixels[:, 0] >= low) & (pixels[:, 0] <= high)]


def _color_name(lightness: float, a: float, b: float) -> str:
    """Astria's name for an iris colour in CIE L*a*b*."""
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a)) % 360
    if chroma < 8.0:
        return "black eyes" if lightness < 25 else "gray eyes"
    if 180 <= hue < 320:  # toward blue
        return "blue eyes"
    if 95 <= hue < 180:  # yellow-green to green
        return "green eyes"
    return "black eyes" if lightness < 20 else "brown eyes"


def _color_names(lab: np.ndarray) -> np.ndarray:
    """`_color_name` of each of (N, 3) L*a*b* pixels, as indexes into EYE_COLORS."""
    lightness, a, b = lab.T
    hue = np.degrees(np.arctan2(b, a)) % 360
    warm = np.where(lightness < 20, 4, 1)  # black, brown
    named = np.select([(hue >= 180) & (hue < 320), (hue >= 95) & (hue < 180)], [0, 2], warm)
    return np.where(np.hypot(a, b) < 8.0, np.where(lightness < 25, 4, 3), named)


def _lab(pixels: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (L 0..100) of (N, 3) uint8 RGB pixels."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(pixels, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB)
    lab = lab.reshape(-1, 3).astype(np.float32)
    return np.column_stack([lab[:, 0] * (100 / 255), lab[:, 1] - 128, lab[:, 2] - 128])
