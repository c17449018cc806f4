"""Photo inspection: upload validation, one photo's inspection, face crops.

1. `decode_photo` / `validate_uploads` turn uploaded bytes into upright RGB photos, or into a
   rejection whose reason says what to do (DESIGN.md §7). The decoding is `studio.images`'
   `open_image` (only PNG/JPEG/WEBP, EXIF orientation first, decompression bombs, truncated
   and zero-byte files refused); on top of it photos under MIN_SIDE are refused, big ones are
   shrunk to STORE_MAX_SIDE, and an upload over the photo limit keeps the first photos.
2. `analyze_photo` (= the analyzer's `detect` and `embed`, then `check_photo`) measures one photo
   and returns a `PhotoInspection`: findings named as in Astria's inspect API (`blurry`,
   `selfie`, `wearing_sunglasses`…) plus `no_face` and `face_cut_off`, each with the score and
   threshold that decided it, and characteristics (hair colour, glasses, head cover; age and
   class where the backend knows age and gender). `to_json()` is the Astria-shaped answer. The
   checks themselves are in `studio.inspection_checks`; the set's report card, which compares
   inspections, is `studio.inspection_report.report_card`. `InspectionPool` runs
   `analyze_photo` in worker processes.
3. `face_crop_region` / `face_crop` cut training crops around a face, so training and
   inspection share one face pipeline.

The README's "Photo inspection" section lists which findings are heuristics and how they
scored. Heavy imports (cv2, PIL codecs) happen inside functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.errors import InvalidInput
from studio.faces import Face, FaceAnalyzer
from studio.images import UnreadableImage, clean_bytes, image_format, open_image
from studio.inspection_checks import (
    TRAINING_SIDE,
    Finding,
    appearance,
    border_histogram,
    face_yaw,
    framing_findings,
    perceptual_hash,
    quality_findings,
)

if TYPE_CHECKING:
    from PIL import Image

# -- limits ------------------------------------------------------------------------------------
MIN_SIDE = 256  # refused below this; `low_resolution` below TRAINING_SIDE
STORE_MAX_SIDE = 2048  # the normalised photo kept and analysed
MAX_ASPECT = STORE_MAX_SIDE // MIN_SIDE  # longer than this to one: MIN_SIDE lost once shrunk

# Classes whose photos must show a human face; others (cat, dog, style…) get quality checks only.
HUMAN_CLASSES = frozenset({"man", "woman", "boy", "girl", "baby", "person", "couple"})


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
        """The photo as stored: re-encoded from its upright pixels alone (no comment, EXIF,
        GPS, XMP, ICC profile or trailing bytes), JPEG sources as JPEG quality 95 and others as
        PNG. Returns (bytes, suffix); InvalidInput (field 'file') naming the photo when it
        cannot be encoded."""
        try:
            data = clean_bytes(self.image, self.format)
        except UnreadableImage as error:
            raise InvalidInput(f"{_label(self.filename)} {error.reason}", field="file") from None
        return data, ".jpg" if self.format == "JPEG" else ".png"


@dataclass(frozen=True)
class Rejection:
    """An upload that was not accepted, with a reason a person can act on."""

    filename: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"filename": self.filename, "reason": self.reason}


def decode_photo(data: bytes, filename: str = "photo", *, max_bytes: int | None = None) -> Photo:
    """Open one upload as an upright RGB photo, its long side at most STORE_MAX_SIDE.

    Raises InvalidInput (field 'file') naming the file and what to do when it is empty, over
    `max_bytes`, not PNG/JPEG/WEBP, over the decoder's pixel limit, damaged or cut short,
    under MIN_SIDE pixels on its short side, or longer than MAX_ASPECT to one (the sizes named
    are the file's own)."""
    from PIL import Image

    label = _label(filename)
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidInput(
            f"{label} is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB limit: "
            "export it at a smaller size.",
            field="file",
        )
    try:
        image, stored_size = open_image(data, draft_side=STORE_MAX_SIDE)
    except UnreadableImage as error:
        raise InvalidInput(f"{label} {error.reason}", field="file") from None
    # Sizes in messages are the file's own: a JPEG may have been decoded at 1/8 scale.
    width, height = stored_size
    if min(stored_size) < MIN_SIDE:
        raise InvalidInput(
            f"{label} is only {width}x{height} pixels: use photos at least "
            f"{TRAINING_SIDE} px on the short side ({MIN_SIDE} is the minimum).",
            field="file",
        )
    if max(stored_size) > MAX_ASPECT * min(stored_size) or min(image.size) < MIN_SIDE:
        # Shrunk to STORE_MAX_SIDE, such a strip would keep a few pixels on its short side.
        raise InvalidInput(
            f"{label} is {width}x{height} pixels, too long and narrow (over {MAX_ASPECT}:1): "
            "crop it around the subject.",
            field="file",
        )
    if max(image.size) > STORE_MAX_SIDE:
        image.thumbnail((STORE_MAX_SIDE, STORE_MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return Photo(filename, image, image_format(data), hashlib.sha256(data).hexdigest(), stored_size)


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


def _label(filename: str) -> str:
    return repr(filename[:120] or "photo")


# ============================================================================================
# 2. One photo
# ============================================================================================


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
    findings = quality_findings(gray, subject)
    characteristics: dict[str, str] = {}
    measurements: dict[str, Finding] = {}
    if _expects_face(name):
        findings.update(framing_findings(gray.shape, faces, name))
        if subject is not None:
            looks, characteristics = appearance(rgb, subject, measurements)
            findings.update(looks)
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
        background=border_histogram(rgb),
        yaw=None if subject is None else face_yaw(subject),
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


# ============================================================================================
# 3. Face crops for training
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
