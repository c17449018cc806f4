"""Face analysis: one `FaceAnalyzer` protocol, two real backends.

- `DlibAnalyzer`, the offline default: dlib's HOG detector, its 5- and 68-point shape predictors
  and its 128-d ResNet identity model, from the weights the `face-recognition-models` package
  ships. Nothing is downloaded.
- `InsightFaceAnalyzer`: insightface's `FaceAnalysis` on an installed model pack (buffalo_l:
  SCRFD detection, 512-d ArcFace, age and gender). It is what IP-Adapter-FaceID needs on real
  models. insightface ships no weights; when the pack is missing the studio says so plainly.

`open_analyzer(choice)` picks one (STUDIO_FACE_BACKEND: auto | dlib | insightface). All images
are RGB `uint8` arrays of shape (H, W, 3); all coordinates are pixels of that array. Embeddings
are unit-normalised, so the L2 distance between two lies in [0, 2]; each backend carries the
distance under which two faces are the same person. Heavy imports (dlib, insightface, cv2)
happen inside the functions that use them.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

BACKENDS = ("auto", "dlib", "insightface")
INSIGHTFACE_PACK = "buffalo_l"
DEFAULT_INSIGHTFACE_ROOT = Path("~/.insightface")
#: The dlib backend's second scale when its first look finds nothing (see `DlibAnalyzer.detect`).
SHIFTED_LOOK = 0.6


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    `bbox` is (x0, y0, x1, y1) in pixels; `score` is the backend's detection score (dlib: SVM
    margin, about 0 to 3; insightface: probability 0 to 1). `landmarks` is (5, 2) float32 in
    insightface's order whatever the backend: left eye centre, right eye centre, nose tip, left
    mouth corner, right mouth corner ("left" = smaller x in the image). `landmarks68` is the
    iBUG 300-W layout when the backend has it (dlib), else None. `age` is in years and `gender`
    is "male" or "female" where the backend can tell, else None.
    """

    bbox: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    landmarks68: np.ndarray | None = None
    age: float | None = None
    gender: str | None = None

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def size(self) -> float:
        """The larger side of the box, in pixels."""
        return max(self.width, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2)

    def to_json(self) -> dict[str, Any]:
        """The face as plain JSON (box rounded to pixels, score to 3 decimals)."""
        out: dict[str, Any] = {"bbox": [round(v, 1) for v in self.bbox], "score": round(float(self.score), 3)}
        if self.age is not None:
            out["age"] = round(float(self.age), 1)
        if self.gender is not None:
            out["gender"] = self.gender
        return out


class FaceAnalyzer(Protocol):
    """What inspection, training (FaceID reference embeddings) and likeness scoring use.

    Implementations are safe to call from several threads and deterministic: the same image
    gives the same faces and the same embedding."""

    name: str
    embedding_dim: int
    #: L2 distance between unit embeddings under which two faces are the same person.
    same_person_distance: float
    #: Detection score under which a box is not reported as a face.
    detect_threshold: float

    def detect(self, rgb: np.ndarray, *, small_faces: bool = False) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, highest detection score first. `small_faces`
        asks for a slower, closer look that also finds faces far from the camera."""
        ...

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The unit-normalised identity vector (embedding_dim,) float32 of `face` in `rgb`."""
        ...


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance between two embeddings (0 identical, 2 opposite for unit vectors)."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def _unit(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("face analysis needs an RGB uint8 array of shape (H, W, 3)")
    return np.ascontiguousarray(rgb)


# -- dlib ------------------------------------------------------------------------------------


def dlib_models_dir() -> Path | None:
    """Where `face-recognition-models` keeps dlib's weights, or None when it is not installed.

    The package is located without importing it: its `__init__` needs `pkg_resources`, which
    current setuptools no longer has (NOTES-offline §6c)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


class DlibAnalyzer:
    """dlib HOG detection, 5/68-point landmarks and 128-d ResNet embeddings (CPU, offline).

    The HOG window is 80 px, so an image is looked at with its long side at `detect_side`
    pixels (upsampled twice when it is much smaller); faces below about 80 px at that scale are
    not found. HOG reports low-score false positives (the astronaut's badge scores 0.13), hence
    `detect_threshold`. dlib's own same-person rule, L2 < 0.6, is for its raw descriptors,
    whose length is about 1.47 (1.36-1.59 on the test photos); `embed` returns unit vectors, on
    which the same rule is 0.6 / 1.47 = 0.41. Unit distances on the test photos: same person
    (augmented copies) 0.14-0.15, different people 0.43 and more, 0.52 on average (raw: 0.20-0.22
    and 0.63, NOTES-offline §6c).
    """

    name = "dlib"
    embedding_dim = 128
    # 0.6 here (the raw threshold) took nearly everyone for the same person: 0.45-0.55 apart.
    same_person_distance = 0.41
    detect_threshold = 0.3

    def __init__(self, models_dir: Path | None = None, *, detect_side: int = 1024):
        import dlib

        folder = models_dir or dlib_models_dir()
        if folder is None:
            raise Unavailable(
                "dlib's face models are not installed: run "
                "`pip install --no-deps face-recognition-models==0.3.0` (see requirements-nodeps.txt)."
            )
        self.detect_side = detect_side
        self._detector = dlib.get_frontal_face_detector()
        self._shape5 = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._shape68 = dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))
        self._resnet = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        # dlib's objects hold scratch buffers and never release the GIL: one caller at a time.
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, *, small_faces: bool = False) -> list[Face]:
        import dlib

        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        scale = min(1.0, self.detect_side / max(height, width))
        # A small image (or a second look) is searched at twice the size: faces of 40 px are
        # then found too, at four times the cost.
        upsample = (1 if max(height, width) * scale <= self.detect_side // 2 else 0) + (1 if small_faces else 0)
        with self._lock:
            rects, scores, scale = self._search(rgb, scale, upsample)
            if not rects and not upsample:
                # HOG's pyramid steps by 5/6: a big face whose size falls between two steps can
                # score under the threshold (the astronaut in sunglasses, 250 px). A look at
                # 0.6x, another phase of the pyramid, finds it for a third of the first look's
                # cost; before it, such photos took the 2x closer look (4x the cost).
                rects, scores, scale = self._search(rgb, scale * SHIFTED_LOOK, 0)
            found = []
            for rect, score in sorted(zip(rects, scores), key=lambda pair: -pair[1]):
                box = dlib.rectangle(
                    round(rect.left() / scale),
                    round(rect.top() / scale),
                    round(rect.right() / scale),
                    round(rect.bottom() / scale),
                )
                points = self._shape68(rgb, box)
                found.append((box, float(score), np.array([(p.x, p.y) for p in points.parts()], np.float32)))
        return [
            Face(
                bbox=(float(box.left()), float(box.top()), float(box.right()), float(box.bottom())),
                score=score,
                landmarks=_five_from_68(points),
                landmarks68=points,
            )
            for box, score, points in found
        ]

    def _search(self, rgb: np.ndarray, scale: float, upsample: int) -> tuple[list, list, float]:
        """dlib's HOG detector on `rgb` shrunk by `scale` (<= 1): (rects in the shrunk image,
        scores, scale). The caller holds the lock."""
        import cv2

        height, width = rgb.shape[:2]
        small = rgb if scale == 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(small, upsample, self.detect_threshold)
        return list(rects), list(scores), scale

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        import dlib

        rgb = _check_rgb(rgb)
        x0, y0, x1, y1 = (round(v) for v in face.bbox)
        with self._lock:
            shape = self._shape5(rgb, dlib.rectangle(x0, y0, x1, y1))
            vector = self._resnet.compute_face_descriptor(rgb, shape)
        return _unit(vector)


def _five_from_68(points: np.ndarray) -> np.ndarray:
    """insightface's 5 keypoints from the 68-point layout: eye centres, nose tip, mouth corners."""
    return np.stack(
        [points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]]
    ).astype(np.float32)


# -- insightface -----------------------------------------------------------------------------


def insightface_pack_dir(root: Path | None = None, pack: str = INSIGHTFACE_PACK) -> Path:
    """Where insightface keeps a model pack: `<root>/models/<pack>` (root ~/.insightface)."""
    return (root or DEFAULT_INSIGHTFACE_ROOT).expanduser() / "models" / pack


def insightface_missing(root: Path | None = None, pack: str = INSIGHTFACE_PACK) -> str | None:
    """Why the insightface backend cannot be used, or None when it can (without loading it)."""
    if importlib.util.find_spec("insightface") is None:
        return "insightface is not installed: `pip install --no-deps insightface==2.1` (see requirements-nodeps.txt)."
    folder = insightface_pack_dir(root, pack)
    if not any(folder.glob("*.onnx")):
        return (
            f"insightface's {pack} model pack is not installed: unzip {pack}.zip from "
            f"https://github.com/deepinsight/insightface/releases (model-zoo) into {folder}, "
            "or use STUDIO_FACE_BACKEND=dlib."
        )
    return None


class InsightFaceAnalyzer:
    """insightface `FaceAnalysis` on an installed pack: SCRFD boxes with 5 keypoints, ArcFace
    512-d embeddings, age and gender when the pack has its genderage model.

    The pack folder is passed to insightface directly, so it never tries to download anything.
    For ArcFace, unit embeddings of one person are typically within 1.1 of each other (cosine
    similarity above 0.4) and different people around 1.3-1.4 apart."""

    name = "insightface"
    same_person_distance = 1.1

    def __init__(self, pack_dir: Path, *, det_size: tuple[int, int] = (640, 640), detect_threshold: float = 0.5):
        from insightface.app import FaceAnalysis

        self.detect_threshold = detect_threshold
        self.pack_dir = Path(pack_dir)
        self._app = FaceAnalysis(name=str(self.pack_dir), allowed_modules=["detection", "recognition", "genderage"])
        if "recognition" not in self._app.models:
            raise Unavailable(
                f"the insightface pack in {self.pack_dir} has no recognition model (e.g. w600k_r50.onnx)."
            )
        self._app.prepare(ctx_id=0, det_size=det_size, det_thresh=detect_threshold)
        self._recognition = self._app.models["recognition"]
        self._genderage = self._app.models.get("genderage")
        self.embedding_dim = int(self._recognition.output_shape[1])
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, *, small_faces: bool = False) -> list[Face]:
        # SCRFD at 640 px already finds faces of about 10 px: `small_faces` changes nothing.
        bgr = np.ascontiguousarray(_check_rgb(rgb)[:, :, ::-1])
        with self._lock:
            boxes, keypoints = self._app.det_model.detect(bgr, max_num=0, metric="default")
            faces = []
            for i in np.argsort(-boxes[:, 4], kind="stable"):
                native = self._native(boxes[i], keypoints[i])
                if self._genderage is not None:
                    self._genderage.get(bgr, native)
                faces.append(
                    Face(
                        bbox=tuple(float(v) for v in boxes[i, :4]),
                        score=float(boxes[i, 4]),
                        landmarks=np.asarray(keypoints[i], np.float32),
                        age=None if native.get("age") is None else float(native["age"]),
                        gender=None
                        if native.get("gender") is None
                        else ("male" if native["gender"] == 1 else "female"),
                    )
                )
        return faces

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        bgr = np.ascontiguousarray(_check_rgb(rgb)[:, :, ::-1])
        native = self._native(np.array([*face.bbox, face.score], np.float32), face.landmarks)
        with self._lock:
            vector = self._recognition.get(bgr, native)
        return _unit(vector)

    @staticmethod
    def _native(box: np.ndarray, keypoints: np.ndarray):
        from insightface.app.common import Face as NativeFace

        return NativeFace(bbox=np.asarray(box[:4], np.float32), kps=np.asarray(keypoints, np.float32), det_score=box[4])


# -- choosing one ----------------------------------------------------------------------------


def resolve_backend(choice: str = "auto", insightface_root: Path | None = None) -> str:
    """The backend `choice` means here: 'auto' is insightface when its pack is installed, else
    dlib. Cheap (looks at files only)."""
    if choice not in BACKENDS:
        raise InvalidInput(f"face backend {choice!r} is not one of: {', '.join(BACKENDS)}.", field="face_backend")
    if choice != "auto":
        return choice
    return "insightface" if insightface_missing(insightface_root) is None else "dlib"


def open_analyzer(choice: str = "auto", insightface_root: Path | None = None) -> FaceAnalyzer:
    """Load the analyzer `choice` names (see `resolve_backend`). Raises Unavailable, with what
    to install, when the chosen backend's weights are missing. Takes about a second."""
    backend = resolve_backend(choice, insightface_root)
    if backend == "dlib":
        return DlibAnalyzer()
    missing = insightface_missing(insightface_root)
    if missing is not None:
        raise Unavailable(missing)
    return InsightFaceAnalyzer(insightface_pack_dir(insightface_root))


def backends_report(choice: str = "auto", insightface_root: Path | None = None) -> dict[str, Any]:
    """What the status view shows: the backend in use and, per backend, why it is unavailable
    (None when it can be used). Looks at files only."""
    dlib_missing = None
    if importlib.util.find_spec("dlib") is None:
        dlib_missing = "dlib is not installed: `pip install dlib-bin`."
    elif dlib_models_dir() is None:
        dlib_missing = "dlib's models are not installed: `pip install --no-deps face-recognition-models==0.3.0`."
    return {
        "choice": choice,
        "backend": resolve_backend(choice, insightface_root),
        "missing": {"dlib": dlib_missing, "insightface": insightface_missing(insightface_root)},
    }
