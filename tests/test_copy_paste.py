"""The copy-paste flag: an image from a reference tune whose face is near-identical to one of the
tune's reference crops (far closer than two real photos of one person get) is flagged, since
reference models can paste an input face instead of drawing the person."""

import numpy as np
import pytest
from photos import encode, friend, mirrored, rotated

from studio import likeness
from studio.tune_requests import TuneRequest
from studio.ui.common import likeness_badge

# Rachel's head in friend("rachel") at 512 px, kept as the reference tune's one crop.
RACHEL_HEAD = (40, 100, 340, 400)


def test_the_copy_threshold_is_a_quarter_of_the_same_person_distance_as_a_similarity():
    assert likeness.copy_threshold(0.41) == likeness.similarity_threshold(0.41 / 4) == pytest.approx(0.9947)
    assert likeness.copy_threshold(1.1) == pytest.approx(0.9622)
    assert likeness.copy_threshold(0.41) > likeness.similarity_threshold(0.41)


def test_an_embedding_equal_to_a_crop_is_a_copy_and_ordinary_same_person_similarity_is_not():
    threshold = likeness.copy_threshold(0.41)
    crop, other = likeness.unit([1.0, 0.0, 0.0]), likeness.unit([0.0, 1.0, 0.0])
    assert likeness.copy_paste(crop * 3, [other, crop], threshold) == (1.0, True)
    # Two real photos of one person: inside the same-person range (0.916 for dlib), not a copy.
    same_person = likeness.unit([0.95, np.sqrt(1 - 0.95**2), 0.0])
    assert likeness.similarity_threshold(0.41) < 0.95
    assert likeness.copy_paste(same_person, [crop, other], threshold) == (0.95, False)
    assert likeness.copy_paste(crop, [], threshold) == (None, False)


def test_describe_says_when_an_image_copies_a_reference():
    record = {"backend": "dlib", "threshold": 0.916, "score": 0.99, "same_person": True}
    assert likeness.COPIES not in likeness.describe({**record, "copy_paste": False, "reference_similarity": 0.95})
    line = likeness.describe({**record, "copy_paste": True, "reference_similarity": 0.9991})
    assert line.endswith("copies a reference (0.999)") and line.startswith("likeness 0.990 · same person")


def _reference_tune(studio):
    """A FaceID tune of Rachel whose one reference crop is her head in her first photo (as a
    FaceID tune made on FLUX.2 [klein] keeps it)."""
    photos = [("rachel.jpg", encode(friend("rachel")))]
    tune = studio.create_tune(TuneRequest(title="Rachel", name="woman", model_type="faceid"), photos=photos)
    [photo] = studio.store.tune_photos(tune["id"])
    args = {
        **studio.store.get_tune(tune["id"])["args"],
        "references": [{"photo_id": photo["id"], "box": list(RACHEL_HEAD)}],
    }
    studio.store.update_tune(tune["id"], args=args)
    return tune


def test_a_reference_crop_scored_against_its_reference_tune_is_a_copy_and_another_photo_is_not(studio):
    tune = _reference_tune(studio)
    copy = studio.score_likeness(tune["id"], friend("rachel").crop(RACHEL_HEAD))
    assert copy["copy_paste"] and copy["reference_similarity"] >= likeness.copy_threshold(0.41)
    assert likeness.COPIES in likeness.describe(copy)
    other = studio.score_likeness(tune["id"], friend("joey"))
    assert other["faces"] == 1 and not other["copy_paste"]
    assert other["reference_similarity"] < likeness.copy_threshold(0.41)
    assert likeness.COPIES not in likeness.describe(other)


def test_a_prompts_likeness_list_carries_the_flag_and_other_tunes_have_none(studio):
    tune = _reference_tune(studio)
    prompt = studio.create_prompt(tune["id"], {"text": "a portrait", "num_images": 2, "seed": 4, "steps": 2})
    studio.run_pending()
    stored = studio.store.prompt_images(prompt["id"])
    pasted = {0: friend("rachel").crop(RACHEL_HEAD), 1: friend("joey")}
    for row in stored:
        path = studio.files.put(encode(pasted[row["idx"]], "PNG"), "outputs", ".png")
        studio.store.update_image(row["id"], path=path)
    first, second = studio.rescore_prompt(prompt["id"])["likeness"]
    assert (first["copy_paste"], second["copy_paste"]) == (True, False)
    assert first["reference_similarity"] > second["reference_similarity"]
    # the Gallery's "Copies a training photo" filter finds it
    assert [p["id"] for p in studio.gallery(likeness="copy")] == [prompt["id"]]
    assert "too alike: a copy" in likeness_badge(first) and "too alike" not in likeness_badge(second)


def test_a_training_photo_pasted_as_the_output_of_a_plain_tune_is_flagged_as_a_copy(studio):
    """A LoRA or FaceID tune without reference crops is compared with its training photos: one of
    them pasted as an output is a copy, another photo of the same person is not."""
    plain = studio.create_tune(
        TuneRequest(title="Rachel plain", name="woman", model_type="faceid"),
        photos=[("r.jpg", encode(friend("rachel")))],
    )
    pasted = studio.score_likeness(plain["id"], friend("rachel").crop(RACHEL_HEAD).resize((256, 256)))
    assert pasted["same_person"] and pasted["copy_paste"]
    assert pasted["reference_similarity"] >= likeness.copy_threshold(0.41)
    same_person = studio.score_likeness(plain["id"], mirrored(rotated(friend("rachel"), 8)))
    assert same_person["same_person"] and not same_person["copy_paste"]
    other = studio.score_likeness(plain["id"], friend("joey"))
    assert not other["copy_paste"] and other["reference_similarity"] < pasted["reference_similarity"]
