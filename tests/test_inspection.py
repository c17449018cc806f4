"""Photo inspection on real photos (tests/photos.py): upload validation, each finding on a photo
that should trigger it and one that should not, characteristics, the set's report card, face
crops, and the Studio calls."""

from __future__ import annotations

import io

import numpy as np
import photos as P
import pytest
from PIL import Image

from studio import inspection as I
from studio import inspection_checks as C
from studio import inspection_report as R
from studio.errors import InvalidInput
from studio.faces import DlibAnalyzer


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def inspect(analyzer, image, name: str | None = "woman") -> I.PhotoInspection:
    return I.analyze_photo(np.asarray(image.convert("RGB")), analyzer, name)


# -- validation --------------------------------------------------------------------------------


def test_bad_files_each_get_a_clear_reason_and_the_good_ones_are_kept():
    astronaut = P.astronaut()
    uploads = [
        ("empty.jpg", b""),
        ("good.jpg", P.encode(astronaut, "JPEG")),
        ("cut.jpg", P.truncated_jpeg(astronaut)),
        ("bomb.png", P.png_bomb()),
        ("drawing.svg", P.SVG),
        ("notes.jpg", P.TEXT_AS_JPG),
        ("tiny.png", P.encode(P.hanks(), "PNG")),
        ("good.webp", P.encode(P.friend("joey"), "WEBP", quality=90)),
        ("good.png", P.encode(P.friend("ross"), "PNG")),
    ]
    photos, rejections = I.validate_uploads(uploads, max_photos=50)
    assert [p.filename for p in photos] == ["good.jpg", "good.webp", "good.png"]
    assert [p.format for p in photos] == ["JPEG", "WEBP", "PNG"]
    reasons = {r.filename: r.reason for r in rejections}
    assert list(reasons) == ["empty.jpg", "cut.jpg", "bomb.png", "drawing.svg", "notes.jpg", "tiny.png"]
    assert "empty (0 bytes)" in reasons["empty.jpg"]
    assert "damaged or cut short" in reasons["cut.jpg"] and "upload the original" in reasons["cut.jpg"]
    assert "20000x20000" in reasons["bomb.png"] and "megapixel limit" in reasons["bomb.png"]
    assert "SVG drawing" in reasons["drawing.svg"] and "export it as PNG or JPEG" in reasons["drawing.svg"]
    assert "not a PNG, JPEG or WEBP image" in reasons["notes.jpg"]
    assert "only 112x112 pixels" in reasons["tiny.png"]
    assert all(reason.startswith(f"'{name}'") for name, reason in reasons.items())


def test_a_bad_file_alone_raises_invalid_input_on_the_file_field():
    with pytest.raises(InvalidInput) as error:
        I.decode_photo(P.SVG, "logo.svg")
    assert error.value.field == "file" and "'logo.svg' is an SVG drawing" in error.value.message
    with pytest.raises(InvalidInput, match="over the 0.25 MB limit"):
        I.decode_photo(P.encode(P.astronaut(), "PNG"), "big.png", max_bytes=2**18)


def test_exif_orientation_is_applied_before_anything_else(analyzer):
    upright = P.friend("phoebe", 512).crop((0, 0, 512, 384))  # landscape, so a turn shows
    photo = I.decode_photo(P.exif_rotated_jpeg(upright), "phone.jpg")
    assert photo.image.size == (512, 384)
    difference = np.abs(np.asarray(photo.image, np.float32) - np.asarray(upright, np.float32)).mean()
    assert difference < 6  # only JPEG noise, not a rotated picture
    assert inspect(analyzer, photo.image).subject is not None
    # Stored without metadata: the orientation tag is gone along with the rest of EXIF.
    data, suffix = photo.normalised_bytes()
    stored = Image.open(io.BytesIO(data))
    assert suffix == ".jpg" and stored.size == (512, 384) and not stored.getexif()


def test_limits_keep_the_first_photos_and_refuse_copies():
    files = [(f"p{i}.jpg", P.encode(P.rotated(P.astronaut(), i))) for i in range(4)]
    photos, rejections = I.validate_uploads([*files, ("again.jpg", files[0][1])], max_photos=3)
    assert [p.filename for p in photos] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert [r.filename for r in rejections] == ["p3.jpg", "again.jpg"]
    assert "over the limit of 3 photos" in rejections[0].reason
    assert "same file as 'p0.jpg'" in rejections[1].reason


def test_transparency_becomes_white_and_big_photos_are_shrunk():
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    photo = I.decode_photo(P.encode(rgba, "PNG"), "cutout.png")
    assert photo.image.mode == "RGB" and photo.image.getpixel((10, 10)) == (255, 255, 255)
    big = I.decode_photo(P.encode(P.scaled(P.astronaut(), 4100), "JPEG"), "big.jpg")
    assert max(big.image.size) == I.STORE_MAX_SIDE and big.original_size == (4100, 4100)


# -- per-photo findings ------------------------------------------------------------------------

A = P.astronaut
FINDINGS = {
    "blurry": lambda: P.blurred(A(), 2),
    "low_resolution": P.hanks_padded,  # 448 px
    "low_quality": lambda: P.darkened(A(), 0.2),
    "includes_multiple_people": lambda: P.with_second_face(A(), P.hanks(), (330, 60, 450, 180)),
    "selfie": lambda: P.cropped(A(), (160, 50, 285, 175), 512),
    "full_body_image_or_longshot": lambda: P.on_canvas(A(), (1024, 1024), (400, 400), 0.5),
    "wearing_sunglasses": lambda: P.with_sunglasses(A(), P.ASTRONAUT_EYES),
    "wearing_hat": lambda: P.with_hat(A(), P.ASTRONAUT_EYES),
    "funny_face": lambda: P.with_open_mouth(A(), P.ASTRONAUT_MOUTH),
    "no_face": P.coffee,
    "face_cut_off": lambda: A().crop((200, 0, 512, 312)).resize((512, 512)),
}


@pytest.fixture(scope="module")
def plain(analyzer) -> I.PhotoInspection:
    return inspect(analyzer, A())


@pytest.mark.parametrize("key", list(FINDINGS))
def test_each_finding_triggers_on_its_photo_and_not_on_the_plain_one(analyzer, plain, key):
    flagged = inspect(analyzer, FINDINGS[key]())
    finding = flagged.findings[key]
    assert finding.value, f"{key}: score {finding.score} vs threshold {finding.threshold}"
    assert finding.message in flagged.warnings
    assert flagged.to_json()[key] is True
    assert plain.findings[key].value is False and plain.to_json()[key] is False
    # The two scores lie on either side of the threshold (the plain one may sit on it).
    assert finding.score != finding.threshold
    assert (finding.score - finding.threshold) * (plain.findings[key].score - plain.findings[key].threshold) <= 0


def test_a_hazy_over_exposed_photo_is_low_quality_too(analyzer):
    assert inspect(analyzer, P.washed_out(A(), 0.75)).findings["low_quality"].value


@pytest.mark.parametrize("person", ["astronaut", *P.FRIENDS])
def test_clean_photos_of_real_people_raise_no_warning(analyzer, person):
    image = P.astronaut() if person == "astronaut" else P.friend(person)
    result = inspect(analyzer, image)
    assert result.subject is not None
    assert result.warnings == [], result.to_json()["findings"]


def test_the_json_has_astrias_fields_with_score_and_threshold(plain):
    data = plain.to_json()
    for key in ("name", "blurry", "low_resolution", "low_quality", "includes_multiple_people", "selfie"):
        assert key in data
    for key in ("full_body_image_or_longshot", "wearing_sunglasses", "wearing_hat", "funny_face", "glasses"):
        assert key in data
    assert data["name"] == "woman" and data["face_backend"] == "dlib" and len(data["faces"]) == 1
    assert set(data["findings"]["blurry"]) == {"value", "score", "threshold", "message"}
    assert data["findings"]["blurry"]["threshold"] == C.BLUR_THRESHOLD
    assert data["warnings"] == [] and (data["width"], data["height"]) == (512, 512)


def test_name_is_empty_without_a_face_and_other_classes_get_quality_checks_only(analyzer):
    assert inspect(analyzer, P.coffee(), "man").name == ""
    assert inspect(analyzer, A(), None).name == "person"
    cat = inspect(analyzer, P.cat(), "cat")
    assert cat.name == "cat" and cat.faces == ()
    assert set(cat.findings) == {"blurry", "low_resolution", "low_quality"}


# -- characteristics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "hair"),
    [(A, "brown hair"), (lambda: P.friend("phoebe"), "blonde hair"), (lambda: P.friend("joey"), "black hair")],
)
def test_hair_colour_is_read_above_the_forehead(analyzer, image, hair):
    assert inspect(analyzer, image()).characteristics["hair_color"] == hair


def test_a_black_and_white_photo_has_no_hair_colour(analyzer):
    assert "hair_color" not in inspect(analyzer, P.hanks_padded()).characteristics


def test_glasses_and_head_cover_are_characteristics(analyzer, plain):
    glasses = inspect(analyzer, P.with_glasses(A(), P.ASTRONAUT_EYES))
    assert glasses.characteristics["glasses"] == "glasses" and not glasses.findings["wearing_sunglasses"].value
    assert glasses.measurements["glasses"].score > C.GLASSES_THRESHOLD
    assert plain.characteristics["glasses"] == "" and plain.characteristics["headcover"] == ""
    hat = inspect(analyzer, P.with_hat(A(), P.ASTRONAUT_EYES))
    assert hat.characteristics["headcover"] == "with head cover" and "hair_color" not in hat.characteristics


# -- the set -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_set(analyzer) -> list[I.PhotoInspection]:
    """Five different photos of one person (flip, rotation, two crops) in front of one
    background, all looking at the camera."""
    a = A()
    images = [a, P.mirrored(a), P.rotated(a, 7), P.cropped(a, (60, 0, 420, 360), 512), P.cropped(a, (0, 0, 440, 440))]
    return [inspect(analyzer, image) for image in images]


def test_five_photos_of_one_person_and_one_of_another_flag_exactly_the_other(analyzer, astronaut_set):
    joey = inspect(analyzer, P.friend("joey"))
    card = R.report_card([*astronaut_set[:3], joey, *astronaut_set[3:]], analyzer.same_person_distance)
    assert [o["index"] for o in card["identity_outliers"]] == [3]
    assert card["identity_outliers"][0]["distance"] > analyzer.same_person_distance
    assert card["usable"] == [0, 1, 2, 4, 5]
    assert "photos[3] may be a different person: remove it." in card["warnings"]  # the index of the fields


def test_two_photos_of_two_people_are_both_reported(analyzer, astronaut_set):
    ross = inspect(analyzer, P.friend("ross"))
    outliers = R.identity_outliers([astronaut_set[0], ross], analyzer.same_person_distance)
    assert [o["index"] for o in outliers] == [0, 1]
    assert R.identity_outliers(astronaut_set[:2], analyzer.same_person_distance) == []


def test_near_duplicates_are_grouped(analyzer, astronaut_set):
    copy = Image.open(io.BytesIO(P.encode(P.darkened(A(), 0.93), "JPEG", quality=70)))
    again = inspect(analyzer, copy)
    assert R.hamming(astronaut_set[0].phash, again.phash) <= R.DUPLICATE_BITS
    card = R.report_card([astronaut_set[0], astronaut_set[1], again], analyzer.same_person_distance)
    assert card["near_duplicates"] == [[0, 2]]
    assert "photos[0], photos[2] are near-duplicates: keep one and add different photos." in card["warnings"]
    named = R.report_card([astronaut_set[0], astronaut_set[1], again], analyzer.same_person_distance, ["a.jpg", "b.jpg", "c.jpg"])  # fmt: skip
    assert "a.jpg, c.jpg are near-duplicates: keep one and add different photos." in named["warnings"]
    assert R.near_duplicates(astronaut_set) == []


def test_too_few_photos_and_no_variety(analyzer, astronaut_set):
    card = R.report_card(astronaut_set, analyzer.same_person_distance)
    assert card["too_few_photos"]["value"] is False and card["usable"] == [0, 1, 2, 3, 4]
    assert card["no_variety"]["value"] is True  # one photo, five ways: frontal, one background
    few = R.report_card(astronaut_set[:3], analyzer.same_person_distance)
    assert few["too_few_photos"]["value"] is True and few["too_few_photos"]["score"] == 3
    friends = [inspect(analyzer, P.friend(name)) for name in ("rachel", "chandler", "joey")]
    assert R.no_variety(friends).value is False  # turned heads


def test_characteristics_are_what_most_usable_photos_agree_on(analyzer, astronaut_set):
    phoebe = inspect(analyzer, P.friend("phoebe"))
    blurred = inspect(analyzer, P.blurred(A(), 2))
    card = R.report_card([*astronaut_set, phoebe, blurred], analyzer.same_person_distance)
    assert card["usable"] == [0, 1, 2, 3, 4]  # Phoebe is another person, the blurred one is blurry
    assert card["characteristics"]["hair_color"] == "brown hair"
    assert card["characteristics_confidence"]["hair_color"] == 1.0
    assert card["characteristics"]["name"] == "woman"


# -- face crops --------------------------------------------------------------------------------


def test_face_crops_are_centred_on_the_face_with_more_context_for_a_bigger_ratio(analyzer, plain):
    face = plain.subject
    tight = I.face_crop_region(face, (512, 512), 1.0)
    loose = I.face_crop_region(face, (512, 512), 2.5)
    for x0, y0, x1, y1 in (tight, loose):
        assert x1 - x0 == y1 - y0 and x0 < face.center[0] < x1 and y0 < face.center[1] < y1
    assert loose[2] - loose[0] == pytest.approx(2.5 * (tight[2] - tight[0]), abs=2)
    huge = I.face_crop_region(face, (512, 512), 20.0)
    assert huge == (0, 0, 512, 512)  # shrunk to fit, never outside the photo
    wide = I.face_crop_region(face, (512, 512), 2.0, aspect=0.75)
    assert (wide[2] - wide[0]) / (wide[3] - wide[1]) == pytest.approx(0.75, abs=0.01)
    crop = I.face_crop(A(), face, 2.0, (256, 256))
    assert crop.size == (256, 256)
    assert inspect(analyzer, crop).subject is not None
    with pytest.raises(InvalidInput):
        I.face_crop_region(face, (512, 512), 0.0)


# -- through the Studio ------------------------------------------------------------------------


@pytest.mark.slow  # the set goes through worker processes, each loading dlib's models
def test_studio_inspects_one_photo_and_a_set(studio):
    data = studio.inspect_photo(P.encode(A()), "woman")
    assert data["name"] == "woman" and data["blurry"] is False and data["face_backend"] == "dlib"
    with pytest.raises(InvalidInput) as error:
        studio.inspect_photo(b"", "woman")
    assert error.value.field == "file"
    a = A()
    files = [
        ("a.jpg", P.encode(a)),
        ("b.jpg", P.encode(P.mirrored(a))),
        ("c.jpg", P.encode(P.rotated(a, 7))),
        ("d.png", P.encode(P.cropped(a, (60, 0, 420, 360), 512), "PNG")),
        ("e.jpg", P.encode(P.cropped(a, (0, 0, 440, 440)))),
        ("other.jpg", P.encode(P.friend("joey"))),
        ("notes.jpg", P.TEXT_AS_JPG),
    ]
    result = studio.inspect_set(files, "woman")
    assert [p["filename"] for p in result["photos"]] == ["a.jpg", "b.jpg", "c.jpg", "d.png", "e.jpg", "other.jpg"]
    assert [r["filename"] for r in result["rejected"]] == ["notes.jpg"]
    assert [o["index"] for o in result["report"]["identity_outliers"]] == [5]
    assert result["photos"][5]["index"] == 5  # one convention: indexes from 0, sentences by file name
    assert "other.jpg may be a different person: remove it." in result["report"]["warnings"]
    assert result["characteristics"]["hair_color"] == "brown hair"
    assert result["face_backend"] == "dlib"
    assert "dlib" in studio.status()["face_backend"]


def test_a_stored_photo_sets_inspection_is_computed_once_per_set_and_class(studio, monkeypatch):
    rows, rejected = studio.add_photos(
        [("a.jpg", P.encode(P.friend("rachel"))), ("b.jpg", P.encode(P.mirrored(P.friend("rachel"))))]
    )
    assert not rejected
    ids = [row["id"] for row in rows]
    calls = []
    analyze = I.analyze_photo
    monkeypatch.setattr(I, "analyze_photo", lambda *args, **kw: calls.append(1) or analyze(*args, **kw))
    first = studio.inspect_photo_set(ids, "woman")
    first["photos"][0]["reasons"].append("changed by a caller")  # callers get their own copy
    again = studio.inspect_photo_set(ids, "woman")
    assert len(calls) == 2 and "changed by a caller" not in again["photos"][0]["reasons"]
    assert [p["id"] for p in again["photos"]] == ids
    studio.inspect_photo_set(ids[:1], "woman")  # another set is inspected on its own
    studio.inspect_photo_set(ids, "man")  # and so is the same set as another class
    assert len(calls) == 2 + 1 + 2
