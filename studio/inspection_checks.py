"""The checks run on one photo, each a `Finding` with the score and threshold that decided it.

`studio.inspection.check_photo` calls them on an upright RGB photo whose faces are found:

- quality: `blurry`, `low_quality` (exposure and contrast) and `low_resolution`;
- framing: `no_face`, `includes_multiple_people`, `selfie`, `full_body_image_or_longshot`,
  `face_cut_off`;
- appearance, read on a face canvas aligned to the eyes: `wearing_sunglasses`, `wearing_hat`,
  `funny_face`, and the characteristics glasses, headcover and hair_color; eye_color from the
  eyelid landmarks (studio/eyes.py);
- signatures the set's report card compares: perceptual hash, border histogram, yaw.

Thresholds were calibrated on the test photos (tests/photos.py). cv2 is imported inside
functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.eyes import MIN_CONFIDENCE, eye_color
from studio.faces import Face

TRAINING_SIDE = 512  # `low_resolution` below this on the short side

# -- thresholds (scores are unitless ratios unless stated) ------------------------------------
BLUR_THRESHOLD = 0.016  # variance of the Laplacian / variance of the face resized to 128 px
DARK_THRESHOLD = 0.22  # mean luminance of the face, 0..1
BRIGHT_THRESHOLD = 0.85
FLAT_THRESHOLD = 0.07  # standard deviation of the face's luminance, 0..1
SELFIE_THRESHOLD = 0.20  # face scale (see `_face_scale`) / short side of the photo
LONGSHOT_THRESHOLD = 0.045
SECOND_FACE_RATIO = 0.3  # a face smaller than this share of the subject's is background
CUT_OFF_THRESHOLD = 0.1  # share of the (10 % enlarged) face box outside the photo
SUNGLASSES_THRESHOLD = 0.35  # eye-area luminance / cheek luminance
GLASSES_THRESHOLD = 10.0  # horizontal-edge strength on the nose bridge / on the cheeks
HAT_THRESHOLD = 40.0  # colour distance (CIE76) between forehead and cheeks
MOUTH_OPEN_THRESHOLD = 0.3  # inner-lip gap / mouth width (68-point landmarks only)


@dataclass(frozen=True)
class Finding:
    """One check's verdict: `value` is what Astria's boolean field says; `score` the measured
    quantity and `threshold` the value it was compared with; `message` what to do about it."""

    value: bool
    score: float
    threshold: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "message": self.message,
        }


# -- quality -------------------------------------------------------------------------------------


def quality_findings(gray: np.ndarray, subject: Face | None) -> dict[str, Finding]:
    """blurry, low_quality (on the face, or the whole photo without one) and low_resolution."""
    import cv2

    patch = _face_patch(gray, subject, 128) if subject is not None else None
    if patch is None:
        patch = cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA)
    # Divided by the patch's own variance, so that a dark or flat photo is not also "blurry".
    sharpness = float(cv2.Laplacian(patch, cv2.CV_64F).var()) / max(float(patch.var()), 1.0)
    where = "face" if subject is not None else "photo"
    short = min(gray.shape)
    return {
        "blurry": Finding(
            sharpness < BLUR_THRESHOLD,
            sharpness,
            BLUR_THRESHOLD,
            f"The {where} is blurry: use a sharp photo (hold still, tap to focus on the face).",
        ),
        "low_resolution": Finding(
            short < TRAINING_SIDE,
            float(short),
            float(TRAINING_SIDE),
            f"The photo is {short} px on its short side: use photos of at least {TRAINING_SIDE} px.",
        ),
        "low_quality": _exposure(patch / 255.0, where),
    }


def _exposure(luma: np.ndarray, where: str) -> Finding:
    """One score for exposure and contrast: the smallest of mean/DARK, (1-mean)/(1-BRIGHT) and
    std/FLAT; under 1 means too dark, too bright or too flat."""
    mean, std = float(luma.mean()), float(luma.std())
    margins = {
        "too dark": mean / DARK_THRESHOLD,
        "too bright": (1.0 - mean) / (1.0 - BRIGHT_THRESHOLD),
        "too flat (no contrast)": std / FLAT_THRESHOLD,
    }
    worst = min(margins, key=margins.get)
    return Finding(
        margins[worst] < 1.0,
        margins[worst],
        1.0,
        f"The {where} is {worst}: use a photo in even, bright light.",
    )


def _face_patch(gray: np.ndarray, face: Face, size: int) -> np.ndarray | None:
    import cv2

    x0, y0, x1, y1 = _clip_box(face.bbox, gray.shape)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    crop = gray[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


# -- framing -------------------------------------------------------------------------------------


def framing_findings(shape: tuple[int, int], faces: list[Face], name: str | None) -> dict[str, Finding]:
    """no_face, includes_multiple_people, selfie, full_body_image_or_longshot, face_cut_off."""
    height, width = shape
    subject = faces[0] if faces else None
    out = {
        "no_face": Finding(
            subject is None, float(len(faces)), 1.0, "No face was found: use photos where the face is clearly visible."
        )
    }
    if subject is None:
        return out
    people = [f for f in faces if f.size >= SECOND_FACE_RATIO * subject.size]
    allowed = 2 if (name or "").strip().lower() == "couple" else 1
    scale = _face_scale(subject) / min(height, width)
    out["includes_multiple_people"] = Finding(
        len(people) > allowed,
        float(len(people)),
        float(allowed),
        f"{len(people)} faces are in the photo: use photos of the subject alone (crop the others out).",
    )
    out["selfie"] = Finding(
        scale >= SELFIE_THRESHOLD,
        scale,
        SELFIE_THRESHOLD,
        "A close-up selfie: arm's-length photos distort the face; add photos taken from further away.",
    )
    out["full_body_image_or_longshot"] = Finding(
        scale < LONGSHOT_THRESHOLD,
        scale,
        LONGSHOT_THRESHOLD,
        "The face is small in the frame: crop closer to the face or use a closer photo.",
    )
    outside = _share_outside(subject.bbox, 0.1, (height, width))
    out["face_cut_off"] = Finding(
        outside > CUT_OFF_THRESHOLD,
        outside,
        CUT_OFF_THRESHOLD,
        "The face is cut off at the edge of the photo: use photos with the whole face in the frame.",
    )
    return out


def _face_scale(face: Face) -> float:
    """A face size that does not depend on how the backend draws its box: the larger of the
    eye distance and the eyes-to-mouth distance (about a third of the head's height)."""
    left, right, _, mouth_l, mouth_r = face.landmarks
    eyes = (left + right) / 2
    mouth = (mouth_l + mouth_r) / 2
    return float(max(np.linalg.norm(right - left), np.linalg.norm(mouth - eyes)))


def _share_outside(box: tuple[float, float, float, float], margin: float, shape: tuple[int, int]) -> float:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    x0, x1, y0, y1 = x0 - margin * w, x1 + margin * w, y0 - margin * h, y1 + margin * h
    inside_w = max(0.0, min(x1, shape[1]) - max(x0, 0.0))
    inside_h = max(0.0, min(y1, shape[0]) - max(y0, 0.0))
    return 1.0 - inside_w * inside_h / ((x1 - x0) * (y1 - y0))


def face_yaw(face: Face) -> float:
    """How far the nose sits from the eyes' midpoint, in eye distances (0 = frontal; the sign
    tells left from right)."""
    left, right, nose = face.landmarks[:3]
    gap = float(np.linalg.norm(right - left)) or 1.0
    return float((nose[0] - (left[0] + right[0]) / 2) / gap)


# -- appearance ----------------------------------------------------------------------------------

# The face is resampled upright onto a canvas measured in eye distances ("gaps"): the eyes' midpoint
# at (0, 0), the eyes at (-0.5, 0) and (0.5, 0), y growing towards the chin. Regions below are
# (x0, y0, x1, y1) in gaps on that canvas, so they follow a tilted head.
_PX = 32  # canvas pixels per gap
_SPAN_X, _SPAN_Y = (-2.0, 2.0), (-2.4, 1.6)
_EYES = ((-0.75, -0.14, -0.25, 0.14), (0.25, -0.14, 0.75, 0.14))
_CHEEKS = ((-0.7, 0.43, -0.3, 0.67), (0.3, 0.43, 0.7, 0.67))
_FOREHEAD = (-0.3, -0.57, 0.3, -0.43)
_BRIDGE = (-0.12, -0.2, 0.12, 0.2)
_HAIR_STRIP = (-0.45, -2.15, 0.45, -0.45)


@dataclass(frozen=True, eq=False)
class _Aligned:
    """The face resampled upright on the gap canvas (`rgb`, `gray`), with `valid` marking the
    canvas pixels that lie inside the photo."""

    rgb: np.ndarray
    gray: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray, face: Face) -> _Aligned:
        import cv2

        matrix, scale = _canvas_transform(face)
        size = (round((_SPAN_X[1] - _SPAN_X[0]) * _PX), round((_SPAN_Y[1] - _SPAN_Y[0]) * _PX))
        # Where the canvas comes from in the photo: only that part is cropped (and shrunk).
        inverse = cv2.invertAffineTransform(matrix)
        grid = np.stack(np.meshgrid(np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5), axis=-1)
        source_xy = grid @ inverse[:, :2].T + inverse[:, 2]
        height, width = rgb.shape[:2]
        valid = (source_xy[..., 0] >= 0) & (source_xy[..., 0] < width)
        valid &= (source_xy[..., 1] >= 0) & (source_xy[..., 1] < height)
        x0, y0 = np.clip(np.floor(source_xy.reshape(-1, 2).min(axis=0)) - 1, 0, [width - 1, height - 1]).astype(int)
        x1, y1 = np.clip(np.ceil(source_xy.reshape(-1, 2).max(axis=0)) + 2, 1, [width, height]).astype(int)
        source = rgb[y0:y1, x0:x1]
        matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
        if scale < 0.5:
            # Shrink first: warpAffine samples without averaging and would alias a big face.
            source = cv2.resize(source, None, fx=2 * scale, fy=2 * scale, interpolation=cv2.INTER_AREA)
            matrix[:, :2] /= 2 * scale
        aligned = cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cls(aligned, cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY), valid)

    def region(self, box: tuple[float, float, float, float], gray: bool = False) -> np.ndarray | None:
        """The canvas pixels of `box` (gaps), as (rows, cols[, 3]); None when a quarter or more
        of it lies outside the photo."""
        x0, y0, x1, y1 = (
            round((box[0] - _SPAN_X[0]) * _PX),
            round((box[1] - _SPAN_Y[0]) * _PX),
            round((box[2] - _SPAN_X[0]) * _PX),
            round((box[3] - _SPAN_Y[0]) * _PX),
        )
        inside = self.valid[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
        if inside.size == 0 or inside.mean() < 0.75:
            return None
        return (self.gray if gray else self.rgb)[y0:y1, x0:x1]


def _canvas_transform(face: Face) -> tuple[np.ndarray, float]:
    """The 2x3 affine matrix from photo to gap canvas (rotation that levels the eyes, scale
    `_PX` / eye distance, eyes' midpoint to the canvas origin), and that scale."""
    left, right = (np.asarray(p, np.float64) for p in face.landmarks[:2])
    gap = float(np.linalg.norm(right - left)) or 1.0
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    scale = _PX / gap
    cos, sin = math.cos(-angle) * scale, math.sin(-angle) * scale
    mid = (left + right) / 2
    origin = (-_SPAN_X[0] * _PX, -_SPAN_Y[0] * _PX)
    matrix = np.array(
        [
            [cos, -sin, origin[0] - (cos * mid[0] - sin * mid[1])],
            [sin, cos, origin[1] - (sin * mid[0] + cos * mid[1])],
        ]
    )
    return matrix, scale


def appearance(
    rgb: np.ndarray, face: Face, measurements: dict[str, Finding]
) -> tuple[dict[str, Finding], dict[str, str]]:
    """wearing_sunglasses, wearing_hat, funny_face and the characteristics glasses, headcover,
    hair_color (regions placed relative to the eyes) and eye_color (studio/eyes.py). The evidence for a characteristic
    goes into `measurements` (it is not a warning)."""
    canvas = _Aligned.of(rgb, face)
    cheeks = [canvas.region(box) for box in _CHEEKS]
    findings: dict[str, Finding] = {}
    characteristics: dict[str, str] = {}
    if any(c is None for c in cheeks):
        return findings, characteristics
    skin = np.median(np.concatenate([c.reshape(-1, 3) for c in cheeks]), axis=0)
    for key, finding in (("wearing_sunglasses", _sunglasses(canvas, skin)), ("wearing_hat", _hat(canvas, skin))):
        if finding is not None:
            findings[key] = finding
    if face.landmarks68 is not None:
        findings["funny_face"] = _mouth_open(face.landmarks68)
    glasses = _glasses(canvas)
    if glasses is not None:
        measurements["glasses"] = glasses
        sunglasses = findings.get("wearing_sunglasses")
        characteristics["glasses"] = "glasses" if glasses.value or (sunglasses and sunglasses.value) else ""
    if "wearing_hat" in findings:
        characteristics["headcover"] = "with head cover" if findings["wearing_hat"].value else ""
    # A black-and-white photo (skin without colour) cannot tell a hair colour.
    colourless = float(np.ptp(skin)) < 6.0
    hair = None if characteristics.get("headcover") or colourless else _hair_color(canvas, skin)
    if hair is not None:
        characteristics["hair_color"] = hair
    sunglasses = findings.get("wearing_sunglasses")
    eyes = None if sunglasses and sunglasses.value else eye_color(rgb, face, skin)
    if eyes is not None:
        characteristics["eye_color"] = eyes[0]
        measurements["eye_color"] = Finding(True, eyes[1], MIN_CONFIDENCE, f"{eyes[0]}: the iris pixels' share")
    return findings, characteristics


def _sunglasses(canvas: _Aligned, skin: np.ndarray) -> Finding | None:
    """Dark lenses: the eye areas are much darker than the cheeks (bare eyes: 0.6-0.8)."""
    eyes = [canvas.region(box, gray=True) for box in _EYES]
    if any(e is None for e in eyes):
        return None
    skin_luma = float(skin @ np.array([0.299, 0.587, 0.114]))
    ratio = float(np.mean([e.mean() for e in eyes])) / max(1.0, skin_luma)
    return Finding(
        ratio < SUNGLASSES_THRESHOLD,
        ratio,
        SUNGLASSES_THRESHOLD,
        "Sunglasses hide the eyes: use photos without them.",
    )


def _glasses(canvas: _Aligned) -> Finding | None:
    """Frames: a thin dark bar across the nose bridge between the eyes, which bare skin does not
    have (a brow or shadow is an edge, darker on one side only, and does not count). Score:
    the bridge's strongest bar response / the cheeks' mean response."""
    bridge = canvas.region(_BRIDGE, gray=True)
    cheeks = [canvas.region(box, gray=True) for box in _CHEEKS]
    if bridge is None or any(c is None for c in cheeks):
        return None

    def bars(patch: np.ndarray, reach: int = 3) -> np.ndarray:
        # How much darker each pixel is than both the pixels `reach` rows above and below it.
        values = patch.astype(np.float32)
        around = np.minimum(values[: -2 * reach], values[2 * reach :])
        return np.maximum(around - values[reach:-reach], 0.0)

    strongest = float(bars(bridge).max(axis=0).mean())
    reference = float(np.mean([bars(c).mean() for c in cheeks])) + 2.0
    ratio = strongest / reference
    return Finding(
        ratio > GLASSES_THRESHOLD, ratio, GLASSES_THRESHOLD, "Glasses: fine if the subject always wears them."
    )


def _hat(canvas: _Aligned, skin: np.ndarray) -> Finding | None:
    """A hat (or anything else) over the forehead: the band above the brows is not skin."""
    forehead = canvas.region(_FOREHEAD)
    if forehead is None:
        return None
    delta = _colour_distance(np.median(forehead.reshape(-1, 3), axis=0), skin)
    return Finding(
        delta > HAT_THRESHOLD,
        delta,
        HAT_THRESHOLD,
        "Something covers the forehead (a hat or cap): use photos with the head uncovered.",
    )


def _mouth_open(points: np.ndarray) -> Finding:
    gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    width = float(np.linalg.norm(points[54] - points[48])) or 1.0
    ratio = float(gap / width)
    return Finding(
        ratio > MOUTH_OPEN_THRESHOLD,
        ratio,
        MOUTH_OPEN_THRESHOLD,
        "The mouth is wide open (a funny face): use photos with a neutral or smiling expression.",
    )


def _hair_color(canvas: _Aligned, skin: np.ndarray) -> str | None:
    """Astria's hair_color, read just above the hairline. Going up a strip as wide as the eyes
    from the forehead, the hairline is the first row that is mostly unlike skin (the cheeks',
    or the forehead's when that looks like skin: foreheads are lighter); the hair is the band
    above it. None when no hairline is found (bald, or the head cut off)."""
    x0, y0, x1, y1 = _HAIR_STRIP
    valid_rows = canvas.valid[round((y0 - _SPAN_Y[0]) * _PX) : round((y1 - _SPAN_Y[0]) * _PX)].mean(axis=1)
    top = y0 + float(np.argmax(valid_rows > 0.9)) / _PX if (valid_rows > 0.9).any() else y1
    region = canvas.region((x0, top, x1, y1))
    if region is None or region.shape[0] < 8:
        return None
    strip = _lab(region.reshape(-1, 3)).reshape(*region.shape)
    references = [_lab(skin[None].round().astype(np.uint8))[0]]
    forehead = np.median(strip[-3:].reshape(-1, 3), axis=0)
    # A forehead is lighter than the cheeks, not darker (a darker band is hair: bangs).
    if np.linalg.norm(forehead - references[0]) < 28.0 and forehead[0] >= references[0][0] - 8.0:
        references.append(forehead)
    unlike = np.min([np.linalg.norm(strip - ref, axis=2) for ref in references], axis=0) > 14.0
    rows = np.flatnonzero(unlike.mean(axis=1) > 0.6)
    skip, band = 3, 10  # 0.1 and 0.3 gaps: past the blurred hairline, then the hair
    if rows.size == 0 or rows.max() - skip < band:
        return None
    bottom = int(rows.max()) - skip
    hair = strip[bottom - band : bottom][unlike[bottom - band : bottom]]
    lightness, a, b = np.median(hair, axis=0)
    return _hair_name(float(lightness), float(a), float(b))


def _hair_name(lightness: float, a: float, b: float) -> str:
    chroma = math.hypot(a, b)
    if lightness < 30:
        return "black hair"
    if chroma < 8:
        return "white hair" if lightness > 75 else "grey hair" if lightness > 45 else "black hair"
    if a > 18 and a > 0.8 * b:
        return "red hair"
    if lightness > 55 and b > 18:
        return "blonde hair"
    return "brown hair"


def _lab(pixels: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (L 0..100) of (N, 3) uint8 RGB pixels."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(pixels, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB)
    lab = lab.reshape(-1, 3).astype(np.float32)
    return np.column_stack([lab[:, 0] * (100 / 255), lab[:, 1] - 128, lab[:, 2] - 128])


def _colour_distance(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
    pair = _lab(np.stack([rgb_a, rgb_b]).round().astype(np.uint8))
    return float(np.linalg.norm(pair[0] - pair[1]))


def _clip_box(box: Iterable[float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    height, width = shape[:2]
    return (
        int(max(0, math.floor(x0))),
        int(max(0, math.floor(y0))),
        int(min(width, math.ceil(x1))),
        int(min(height, math.ceil(y1))),
    )


# -- signatures for the set ----------------------------------------------------------------------


def perceptual_hash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash) of a grayscale image: near-identical photos (another
    JPEG encoding, a small brightness change) differ in a few bits, different photos in ~32."""
    import cv2

    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].reshape(-1)
    bits = low > np.median(low[1:])
    return int("".join("1" if bit else "0" for bit in bits), 2)


def border_histogram(rgb: np.ndarray) -> np.ndarray:
    """Colour histogram (4x4x4 bins, sums to 1) of the photo's top, left and right borders,
    where the background usually is."""
    import cv2

    small = cv2.resize(rgb, (48, 48), interpolation=cv2.INTER_AREA)
    border = np.concatenate([small[:8].reshape(-1, 3), small[8:, :8].reshape(-1, 3), small[8:, -8:].reshape(-1, 3)])
    bins = (border // 64).astype(np.int64)
    hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).astype(np.float32)
    return hist / hist.sum()
