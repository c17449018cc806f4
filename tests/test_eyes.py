"""Eye colour on the dlib backend (studio/eyes.py): read from the eyelid landmarks and the iris
pixels of the test photos where the eyes are clear, and not reported where they are not."""

from __future__ import annotations

import numpy as np
import photos as P
import pytest

from studio import eyes
from studio.faces import DlibAnalyzer
from studio.inspection import analyze_photo


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def _inspect(analyzer, image):
    return analyze_photo(np.asarray(image), analyzer, "woman")


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        (P.astronaut, "brown eyes"),
        (lambda: P.mirrored(P.astronaut()), "brown eyes"),
        (lambda: P.with_iris_hue(P.astronaut(), P.ASTRONAUT_EYES, 215), "blue eyes"),
        (lambda: P.with_iris_hue(P.astronaut(), P.ASTRONAUT_EYES, 110), "green eyes"),
    ],
    ids=["astronaut", "mirrored", "blue", "green"],
)
def test_clear_eyes_get_their_colour_with_a_confidence(analyzer, photo, expected):
    inspection = _inspect(analyzer, photo())
    assert inspection.characteristics["eye_color"] == expected
    evidence = inspection.measurements["eye_color"]
    assert evidence.value and 0.8 <= evidence.score <= 1.0 and evidence.threshold == eyes.MIN_CONFIDENCE
    assert inspection.to_json()["eye_color"] == expected


@pytest.mark.parametrize(
    "photo",
    [
        P.hanks_padded,  # a black-and-white photo: no colour to read
        lambda: P.with_sunglasses(P.astronaut(), P.ASTRONAUT_EYES),
        lambda: P.friend("rachel"),  # smiling: the eyes are narrowed to a slit
        lambda: P.friend("chandler"),
        lambda: P.friend("monica"),  # open, but a few blurred pixels across
        lambda: P.blurred(P.astronaut(), 1.5),
    ],
    ids=["grey photo", "sunglasses", "rachel", "chandler", "monica", "blurred"],
)
def test_eyes_that_cannot_tell_report_no_colour(analyzer, photo):
    inspection = _inspect(analyzer, photo())
    assert inspection.subject is not None
    assert "eye_color" not in inspection.characteristics and "eye_color" not in inspection.measurements


def test_a_set_agrees_on_its_eye_colour_with_the_share_that_agrees(studio):
    astronaut = P.astronaut()
    uploads = [
        ("a.jpg", P.encode(astronaut, "PNG")),
        ("b.jpg", P.encode(P.mirrored(astronaut), "PNG")),
        ("c.jpg", P.encode(P.with_iris_hue(astronaut, P.ASTRONAUT_EYES, 215), "PNG")),
    ]
    result = studio.inspect_set(uploads, "woman")
    assert result["characteristics"]["eye_color"] == "brown eyes"
    assert result["characteristics_confidence"]["eye_color"] == pytest.approx(0.67)
    assert [p["eye_color"] for p in result["photos"]] == ["brown eyes", "brown eyes", "blue eyes"]


@pytest.mark.parametrize(
    ("lab", "name"),
    [
        ((34, 6, 19), "brown eyes"),
        ((15, 6, 12), "black eyes"),
        ((18, 1, 2), "black eyes"),
        ((45, 2, -23), "blue eyes"),
        ((55, -3, -12), "blue eyes"),
        ((58, -35, 31), "green eyes"),
        ((50, 2, -3), "gray eyes"),
    ],
)
def test_iris_colours_are_named_with_astrias_values(lab, name):
    assert eyes._color_name(*lab) == name and name in eyes.EYE_COLORS
    # The per-pixel form (the confidence) names it alike.
    assert eyes.EYE_COLORS[eyes._color_names(np.array([lab], np.float32))[0]] == name
