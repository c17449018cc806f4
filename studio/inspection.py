"""Photo inspection: upload validation, per-photo findings, the set's report card, face crops.

Three layers, each usable on its own:

1. `decode_photo` / `validate_uploads` turn uploaded bytes into upright RGB photos, or into a
   rejection whose reason says what to do (DESIGN.md §7): only PNG/JPEG/WEBP are opened, EXIF
   orientation is applied first, decompression bombs, truncated and zero-byte files and tiny
   images are refused, and an upload over the photo limit keeps the first photos.
2. `analyze_photo` (= the analyzer's `detect` and `embed`, then `check_photo`) measures one photo
   and returns a `PhotoInspection`: findings named as in Astria's inspect API (`blurry`,
   `selfie`, `wearing_sunglasses`…) plus `no_face` and `face_cut_off`, each with the score and
   threshold that decided it, and characteristics (hair colour, glasses, head cover; age and
   class where the backend knows age and gender). `to_json()` is the Astria-shaped answer.
3. `report_card` judges the set: near-duplicates, identity outliers (far from the set's medoid),
   too few usable photos, no variety (all frontal, one background), and the characteristics
   most photos agree on, with a confidence.

`face_crop_region` / `face_crop` cut training crops around a face, so training and inspection
share one face pipeline. All thresholds below were calibrated on the test photos
(tests/photos.py); the README's "Photo inspection" section lists which findings are heuristics
and how they scored. Heavy imports (cv2, PIL codecs) happen inside functions.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.errors import InvalidInput
from studio.faces import Face, FaceAnalyzer

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# -- limits ------------------------------------------------------------------------------------
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MIN_SIDE = 256  # refused below this; `low_resolution` below TRAINING_SIDE
TRAINING_SIDE = 512
MAX_PIXELS = 50_000_000  # a 20000x20000 PNG (400 MP) is refused before a byte is decoded
STORE_MAX_SIDE = 2048  # the normalised photo kept and analysed

# Classes whose photos must show a human face; others (cat, dog, style…) get quality checks only.
HUMAN_CLASSES = frozenset({"man", "woman", "boy", "girl", "baby", "person", "couple"})

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

# -- set report card ---------------------------------------------------------------------------
MIN_PHOTOS = 5
DUPLICATE_BITS = 10  # perceptual-hash Hamming distance (of 64) at or under which two photos match
FRONTAL_YAW = 0.12  # |nose offset| / eye distance under which a face looks straight at the camera
SAME_BACKGROUND = 0.75  # mean histogram intersection of the photos' borders


# ============================================================================================
# 1. Validation and decoding
# ============================================================================================


@dataclass(frozen=True, eq=False)
class Photo:
    """An accepted upload: `image` is upright RGB with its long side at most STORE_MAX_SIDE;
    `sha256` is of the uploaded bytes; `format` the detected one (PNG, JPEG or WEBP)."""

    filename: str
    image: Image.Image
    format: str
    sha256: str
    original_size: tuple[int, int]

    def rgb(self) -> np.ndarray:
        return np.asarray(self.image)

    def normalised_bytes(self) -> tuple[bytes, str]:
        """The photo as stored: re-encoded without metadata (EXIF, GPS), JPEG sources as JPEG
        quality 95 and others as PNG. Returns (bytes, suffix)."""
        buffer = io.BytesIO()
        if self.format == "JPEG":
            self.image.save(buffer, format="JPEG", quality=95)
            return buffer.getvalue(), ".jpg"
        self.image.save(buffer, format="PNG")
        return buffer.getvalue(), ".png"


@dataclass(frozen=True)
class Rejection:
    """An upload that was not accepted, with a reason a person can act on."""

    filename: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"filename": self.filename, "reason": self.reason}


def decode_photo(data: bytes, filename: str = "photo", *, max_bytes: int | None = None) -> Photo:
    """Open one upload as an upright RGB photo.

    Raises InvalidInput (field 'file') naming the file and what to do when it is empty, over
    `max_bytes`, not PNG/JPEG/WEBP, over MAX_PIXELS, damaged or cut short, or under MIN_SIDE
    pixels on its short side."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = _label(filename)
    if not data:
        raise InvalidInput(f"{label} is empty (0 bytes): upload the photo again.", field="file")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidInput(
            f"{label} is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB limit: "
            "export it at a smaller size.",
            field="file",
        )
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidInput(f"{label} {_not_a_photo(data)}", field="file") from None
    except Image.DecompressionBombError:
        # Pillow refuses it before we see its size; a PNG states it in the first 24 bytes.
        size = struct.unpack(">II", data[16:24]) if data.startswith(b"\x89PNG") and len(data) >= 24 else None
        raise InvalidInput(f"{label} {_too_many_pixels(size)}", field="file") from None
    except _DAMAGED as error:  # a header Pillow recognised but could not read to its end
        raise InvalidInput(_damaged(label, error), field="file") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidInput(f"{label} {_too_many_pixels((width, height))}", field="file")
    image = _load(image, label)
    try:
        image = ImageOps.exif_transpose(image)
    except _DAMAGED as error:  # EXIF is read only now, and it can be as broken as the rest
        raise InvalidInput(_damaged(label, error), field="file") from None
    if min(image.size) < MIN_SIDE:
        raise InvalidInput(
            f"{label} is only {image.width}x{image.height} pixels: use photos at least "
            f"{TRAINING_SIDE} px on the short side ({MIN_SIDE} is the minimum).",
            field="file",
        )
    image = _to_rgb(image)
    if max(image.size) > STORE_MAX_SIDE:
        image.thumbnail((STORE_MAX_SIDE, STORE_MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return Photo(filename, image, _format_of(data), hashlib.sha256(data).hexdigest(), (width, height))


def validate_uploads(
    files: Iterable[tuple[str, bytes]], *, max_photos: int, max_bytes: int | None = None
) -> tuple[list[Photo], list[Rejection]]:
    """Decode every upload; keep the good ones in order, reject the rest with a reason.

    Photos after the first `max_photos` good ones, and second copies of the same bytes, are
    rejected too. Never raises for a bad file."""
    photos: list[Photo] = []
    rejections: list[Rejection] = []
    seen: dict[str, str] = {}
    for filename, data in files:
        try:
            photo = decode_photo(data, filename, max_bytes=max_bytes)
        except InvalidInput as error:
            rejections.append(Rejection(filename, error.message))
            continue
        if photo.sha256 in seen:
            rejections.append(
                Rejection(filename, f"{_label(filename)} is the same file as {_label(seen[photo.sha256])}.")
            )
        elif len(photos) >= max_photos:
            rejections.append(
                Rejection(
                    filename, f"{_label(filename)} is over the limit of {max_photos} photos: choose your best ones."
                )
            )
        else:
            seen[photo.sha256] = filename
            photos.append(photo)
    return photos, rejections


def _load(image: Image.Image, label: str) -> Image.Image:
    from PIL import Image

    if image.format == "JPEG" and max(image.size) >= 2 * STORE_MAX_SIDE:
        # Decode big JPEGs at 1/2, 1/4 or 1/8 scale: the result is downscaled to STORE_MAX_SIDE.
        factor = STORE_MAX_SIDE / max(image.size)
        image.draft("RGB", (math.ceil(image.width * factor), math.ceil(image.height * factor)))
    try:
        image.load()
    except Image.DecompressionBombError:
        raise InvalidInput(f"{label} {_too_many_pixels(image.size)}", field="file") from None
    except _DAMAGED as error:
        raise InvalidInput(_damaged(label, error), field="file") from None
    return image


# What Pillow raises for a file that starts like an image but is broken further on.
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)


def _damaged(label: str, error: Exception) -> str:
    return f"{label} is damaged or cut short ({error}): upload the original file again."


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


def _format_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "JPEG"


def _not_a_photo(data: bytes) -> str:
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


def _label(filename: str) -> str:
    return repr(filename[:120] or "photo")


# ============================================================================================
# 2. One photo
# ============================================================================================


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


@dataclass(frozen=True, eq=False)
class PhotoInspection:
    """What `check_photo` measured on one photo. `subject` is the best-scoring face (the one
    the findings are about), `embedding` its identity vector; `phash` (64-bit perceptual hash),
    `background` (border colour histogram) and `yaw` feed the set's report card."""

    width: int
    height: int
    name: str
    backend: str
    faces: tuple[Face, ...]
    subject: Face | None
    embedding: np.ndarray | None
    findings: dict[str, Finding]
    characteristics: dict[str, str]
    measurements: dict[str, Finding]
    phash: int
    background: np.ndarray
    yaw: float | None

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings.values() if f.value]

    def to_json(self) -> dict[str, Any]:
        """Astria's inspect shape (name, characteristics as strings, findings as booleans) plus
        `findings` (score and threshold of each), `warnings`, `faces` and `face_backend`."""
        out: dict[str, Any] = {"name": self.name, **self.characteristics}
        out.update({key: finding.value for key, finding in self.findings.items()})
        out["findings"] = {key: finding.to_json() for key, finding in self.findings.items()}
        out["measurements"] = {key: finding.to_json() for key, finding in self.measurements.items()}
        out["warnings"] = self.warnings
        out["faces"] = [face.to_json() for face in self.faces]
        out["face_backend"] = self.backend
        out["width"], out["height"] = self.width, self.height
        return out


def analyze_photo(rgb: np.ndarray, analyzer: FaceAnalyzer, name: str | None = None) -> PhotoInspection:
    """Detect faces, embed the best one and run every check (see `check_photo`)."""
    faces = analyzer.detect(rgb) if _expects_face(name) else []
    if not faces and _expects_face(name):
        # A second, closer look (slower): a person far from the camera is then reported as a
        # long shot rather than as no face.
        faces = analyzer.detect(rgb, small_faces=True)
    embedding = analyzer.embed(rgb, faces[0]) if faces else None
    return check_photo(rgb, faces, embedding, name=name, backend=analyzer.name)


class InspectionPool:
    """`analyze_photo` in `workers` processes, each with its own analyzer of `backend`.

    dlib holds the GIL while it detects and embeds, so threads cannot use a second core; worker
    processes can (about 1.9x on 2 cores for the dlib backend). Each worker loads the models
    once (about a second) and keeps them until `close()`. Results come back in input order."""

    def __init__(self, backend: str = "dlib", workers: int = 2):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.backend = backend
        self.workers = workers
        # spawn, not fork: the parent may hold threads (Gradio, the job worker) and locks.
        self._executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_open_worker, initargs=(backend,)
        )

    def analyze(self, images: list[np.ndarray], name: str | None = None) -> list[PhotoInspection]:
        """`analyze_photo` of each RGB image, in order."""
        return list(self._executor.map(_analyze_in_worker, images, [name] * len(images)))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# The analyzer of a pool's worker process: set once by the pool's initializer in that process,
# never in the studio's own process.
_worker_analyzer: FaceAnalyzer | None = None


def _open_worker(backend: str) -> None:
    from studio.faces import open_analyzer

    global _worker_analyzer
    _worker_analyzer = open_analyzer(backend)


def _analyze_in_worker(rgb: np.ndarray, name: str | None) -> PhotoInspection:
    return analyze_photo(rgb, _worker_analyzer, name)


def check_photo(
    rgb: np.ndarray,
    faces: list[Face],
    embedding: np.ndarray | None,
    *,
    name: str | None = None,
    backend: str = "",
) -> PhotoInspection:
    """Every per-photo check on an upright RGB uint8 image whose faces are already found
    (best first). Cheap (a few ms): crops are measured at fixed small sizes."""
    import cv2

    height, width = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    subject = faces[0] if faces else None
    findings = _quality_findings(gray, subject)
    characteristics: dict[str, str] = {}
    measurements: dict[str, Finding] = {}
    if _expects_face(name):
        findings.update(_framing_findings(gray.shape, faces, name))
        if subject is not None:
            appearance, characteristics = _appearance(rgb, subject, measurements)
            findings.update(appearance)
            characteristics.update(_age_and_class(subject))
    return PhotoInspection(
        width=width,
        height=height,
        name=_detected_name(name, subject),
        backend=backend,
        faces=tuple(faces),
        subject=subject,
        embedding=embedding,
        findings=findings,
        characteristics=characteristics,
        measurements=measurements,
        phash=perceptual_hash(gray),
        background=_border_histogram(rgb),
        yaw=None if subject is None else _yaw(subject),
    )


def _expects_face(name: str | None) -> bool:
    return name is None or name.strip().lower() in HUMAN_CLASSES


def _detected_name(name: str | None, subject: Face | None) -> str:
    """Astria's `name`: the class seen in the photo, "" when no person is found. A backend that
    knows age and gender decides man/woman/boy/girl/baby; otherwise a found face confirms the
    class asked for (the backend cannot tell more). Classes without faces are echoed."""
    wanted = (name or "person").strip().lower()
    if wanted not in HUMAN_CLASSES:
        return wanted
    if subject is None:
        return ""
    if subject.age is not None and subject.gender is not None:
        return _class_from(subject.age, subject.gender)
    return wanted


def _class_from(age: float, gender: str) -> str:
    if age < 3:
        return "baby"
    if age < 16:
        return "boy" if gender == "male" else "girl"
    return "man" if gender == "male" else "woman"


def _age_and_class(face: Face) -> dict[str, str]:
    if face.age is None or face.age < 18:
        return {}
    decade = int(min(70, max(20, face.age // 10 * 10)))
    return {"age": f"{decade} yo"}


# -- quality -------------------------------------------------------------------------------------


def _quality_findings(gray: np.ndarray, subject: Face | None) -> dict[str, Finding]:
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


def _framing_findings(shape: tuple[int, int], faces: list[Face], name: str | None) -> dict[str, Finding]:
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


def _yaw(face: Face) -> float:
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


def _appearance(
    rgb: np.ndarray, face: Face, measurements: dict[str, Finding]
) -> tuple[dict[str, Finding], dict[str, str]]:
    """wearing_sunglasses, wearing_hat, funny_face and the characteristics glasses, headcover and
    hair_color, from regions placed relative to the eyes. The evidence for a characteristic
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


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _border_histogram(rgb: np.ndarray) -> np.ndarray:
    """Colour histogram (4x4x4 bins, sums to 1) of the photo's top, left and right borders,
    where the background usually is."""
    import cv2

    small = cv2.resize(rgb, (48, 48), interpolation=cv2.INTER_AREA)
    border = np.concatenate([small[:8].reshape(-1, 3), small[8:, :8].reshape(-1, 3), small[8:, -8:].reshape(-1, 3)])
    bins = (border // 64).astype(np.int64)
    hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).astype(np.float32)
    return hist / hist.sum()


# ============================================================================================
# 3. The set
# ============================================================================================


def report_card(inspections: list[PhotoInspection], same_person_distance: float) -> dict[str, Any]:
    """Judge a set of inspected photos (in upload order; indexes refer to it).

    Returns `near_duplicates` (groups of indexes), `identity_outliers` (index, distance to the
    medoid), `too_few_photos` and `no_variety` (findings as JSON), `usable` (indexes with one
    face, no serious finding and not an outlier), `characteristics` (the value most usable
    photos agree on, where at least half have one) with `characteristics_confidence`, and
    `warnings`, one sentence each."""
    duplicates = near_duplicates(inspections)
    outliers = identity_outliers(inspections, same_person_distance)
    outlier_set = {o["index"] for o in outliers}
    usable = [i for i, p in enumerate(inspections) if i not in outlier_set and _usable(p)]
    too_few = Finding(
        len(usable) < MIN_PHOTOS,
        float(len(usable)),
        float(MIN_PHOTOS),
        f"Only {len(usable)} usable photos: add more (at least {MIN_PHOTOS}; 10 to 20 give the best likeness).",
    )
    variety = no_variety([inspections[i] for i in usable])
    characteristics, confidence = aggregate_characteristics([inspections[i] for i in usable])
    warnings = [_duplicate_warning(group) for group in duplicates]
    warnings += [f"Photo {o['index'] + 1} may be a different person: remove it." for o in outliers]
    warnings += [finding.message for finding in (too_few, variety) if finding.value]
    return {
        "photos": len(inspections),
        "usable": usable,
        "near_duplicates": duplicates,
        "identity_outliers": outliers,
        "too_few_photos": too_few.to_json(),
        "no_variety": variety.to_json(),
        "characteristics": characteristics,
        "characteristics_confidence": confidence,
        "warnings": warnings,
    }


# Findings that make a photo useless for learning a face (the others are advice).
_SERIOUS = ("no_face", "includes_multiple_people", "wearing_sunglasses", "blurry", "face_cut_off")


def _usable(inspection: PhotoInspection) -> bool:
    return inspection.subject is not None and not any(
        inspection.findings[key].value for key in _SERIOUS if key in inspection.findings
    )


def near_duplicates(inspections: list[PhotoInspection]) -> list[list[int]]:
    """Groups (each sorted, two or more) of photos whose perceptual hashes are within
    DUPLICATE_BITS of each other, joined transitively."""
    parent = list(range(len(inspections)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(inspections)):
        for j in range(i + 1, len(inspections)):
            if hamming(inspections[i].phash, inspections[j].phash) <= DUPLICATE_BITS:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(inspections)):
        groups.setdefault(root(i), []).append(i)
    return [group for group in groups.values() if len(group) > 1]


def identity_outliers(inspections: list[PhotoInspection], same_person_distance: float) -> list[dict[str, Any]]:
    """Photos whose face is further than `same_person_distance` from the medoid (the face with
    the smallest total distance to the others). Needs three faces: with two, which one is the
    stranger cannot be told, so both are reported when they differ."""
    indexed = [(i, p.embedding) for i, p in enumerate(inspections) if p.embedding is not None]
    if len(indexed) < 2:
        return []
    vectors = np.stack([v for _, v in indexed])
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
    if len(indexed) == 2:
        gap = float(distances[0, 1])
        return [{"index": i, "distance": round(gap, 3)} for i, _ in indexed] if gap > same_person_distance else []
    medoid = int(np.argmin(distances.sum(axis=1)))
    return [
        {"index": i, "distance": round(float(distances[medoid, k]), 3)}
        for k, (i, _) in enumerate(indexed)
        if distances[medoid, k] > same_person_distance
    ]


def no_variety(inspections: list[PhotoInspection]) -> Finding:
    """True when three or more photos are all frontal and share one background. The score is
    the mean border-histogram intersection when all faces are frontal, else 0."""
    message = "The photos are all frontal shots in front of one background: add other angles and places."
    if len(inspections) < 3:
        return Finding(False, 0.0, SAME_BACKGROUND, message)
    frontal = all(p.yaw is not None and abs(p.yaw) < FRONTAL_YAW for p in inspections)
    pairs = [
        float(np.minimum(a.background, b.background).sum())
        for k, a in enumerate(inspections)
        for b in inspections[k + 1 :]
    ]
    same = float(np.mean(pairs))
    return Finding(frontal and same >= SAME_BACKGROUND, same if frontal else 0.0, SAME_BACKGROUND, message)


def aggregate_characteristics(inspections: list[PhotoInspection]) -> tuple[dict[str, str], dict[str, float]]:
    """Astria's aggregation: per attribute, the most common non-empty value, kept when at least
    half of the photos have a value; confidence = share of photos that agree with it."""
    values: dict[str, list[str]] = {}
    for inspection in inspections:
        attributes = {"name": inspection.name, **inspection.characteristics}
        for key, value in attributes.items():
            if value:
                values.setdefault(key, []).append(value)
    chosen: dict[str, str] = {}
    confidence: dict[str, float] = {}
    for key, found in values.items():
        if len(found) * 2 < len(inspections):
            continue
        value, count = Counter(found).most_common(1)[0]
        chosen[key] = value
        confidence[key] = round(count / len(inspections), 2)
    return chosen, confidence


def _duplicate_warning(group: list[int]) -> str:
    listed = ", ".join(str(i + 1) for i in group)
    return f"Photos {listed} are near-duplicates: keep one and add different photos."


# ============================================================================================
# 4. Face crops for training
# ============================================================================================


def face_crop_region(
    face: Face, image_size: tuple[int, int], ratio: float = 2.0, aspect: float = 1.0
) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) pixel box to crop around `face` in an image of `image_size` (w, h).

    Its height is `ratio` times the face box's larger side (1 = just the face, >1 = more
    context) and its width `aspect` times that; it is centred on the middle of eyes and mouth,
    moved to stay inside the image and shrunk (keeping `aspect`) when it cannot fit."""
    if ratio <= 0 or aspect <= 0:
        raise InvalidInput("The crop ratio and aspect must be positive.", field="ratio")
    width, height = image_size
    crop_h = ratio * face.size
    crop_w = crop_h * aspect
    shrink = min(1.0, width / crop_w, height / crop_h)
    crop_w, crop_h = crop_w * shrink, crop_h * shrink
    points = face.landmarks
    cx = float(points[:, 0].mean())
    cy = float((points[:2, 1].mean() + points[3:, 1].mean()) / 2)
    x0 = min(max(cx - crop_w / 2, 0.0), width - crop_w)
    y0 = min(max(cy - crop_h / 2, 0.0), height - crop_h)
    return round(x0), round(y0), round(x0 + crop_w), round(y0 + crop_h)


def face_crop(image: Image.Image, face: Face, ratio: float, size: tuple[int, int]) -> Image.Image:
    """`image` cropped around `face` (see `face_crop_region`, aspect from `size`) and resized to
    `size` (w, h) with Lanczos filtering, e.g. (512, 512) for SD 1.5 training."""
    from PIL import Image

    region = face_crop_region(face, image.size, ratio, size[0] / size[1])
    return image.crop(region).resize(size, Image.Resampling.LANCZOS)
