"""Captions of training photos: made from the inspection (and a captioning model when one is
configured, here a tiny BLIP built in code), stored with the tune, edited, and read by the
training's text encoder; the face-focused loss is on for a person tune and recorded."""

import numpy as np
import pytest
from photos import encode, friend
from tiny_captioner import WORDS, save_tiny_captioner

from studio import captions, training_objectives
from studio.captions import TransformersCaptioner
from studio.errors import InvalidInput
from studio.training import read_metadata
from studio.tune_requests import TuneRequest, tune_request_from_fields


def test_a_caption_names_the_subject_then_what_is_not_the_person():
    inspection = {"glasses": "glasses", "wearing_hat": True, "selfie": True, "faces": [{"bbox": [0, 0, 9, 9]}]}
    white = np.full((64, 64, 3), 240, np.uint8)
    white[20:44, 20:44] = 90  # the subject in the middle
    text = captions.caption_from_inspection("ohwx", "woman", inspection, white, "a woman  on a bench")
    assert text == "ohwx woman, wearing glasses, wearing a hat, selfie, plain white background, a woman on a bench"
    busy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert captions.caption_from_inspection("sks", "man", {"faces": [{}]}, busy) == "sks man, close-up, busy background"
    assert captions.caption_from_inspection("sks", "man", None) == "sks man"


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    return TransformersCaptioner(save_tiny_captioner(tmp_path_factory.mktemp("captioner")))


def test_the_captioning_model_describes_a_photo_in_its_words_the_same_each_time(captioner):
    first = captioner.describe(friend("rachel"))
    assert first and set(first.split()) <= set(WORDS)
    assert captioner.describe(friend("rachel")) == first


def _woman(**changes) -> TuneRequest:
    return TuneRequest(**{"title": "Rachel", "name": "woman", "branch": "fast", "seed": 3, **changes})


def test_captions_are_made_edited_stored_and_read_by_the_training(studio, captioner, monkeypatch):
    studio.runtime._captioner = captioner
    photos = [("a.jpg", encode(friend("rachel"))), ("b.png", encode(friend("monica"), "PNG"))]
    mine = "ohwx woman, laughing at the camera"
    tune = studio.create_tune(_woman(captions=(mine,)), photos=photos)
    first, second = tune["captions"]
    assert first["caption"] == mine
    made = second["caption"]
    assert made.startswith("ohwx woman, ") and "background" in made
    assert set(made.split(", ")[-1].split()) <= set(WORDS)  # the model's description comes last
    # the person defaults: the face-focused loss is on and stored with the tune
    assert (tune["face_loss_weight"], tune["background_loss_weight"]) == (2.0, 0.5)

    edited = "ohwx woman, wearing a green scarf"
    with pytest.raises(InvalidInput) as refused:
        studio.set_captions(tune["id"], {second["photo_id"]: "a woman in a scarf"})
    assert refused.value.field == "captions"
    rows = studio.set_captions(tune["id"], {str(second["photo_id"]): edited})
    assert [r["caption"] for r in rows] == [mine, edited]
    assert studio.get_tune(tune["id"])["captions"][1]["caption"] == edited

    seen = []
    encode_prompt = training_objectives._encode_sd_prompt

    def spy(pipe, prompt, device):
        seen.append(prompt)
        return encode_prompt(pipe, prompt, device)

    monkeypatch.setattr(training_objectives, "_encode_sd_prompt", spy)
    assert studio.run_pending() == 1
    assert {mine, edited} <= set(seen)  # each caption reached the text encoder
    weights = studio.files.path(studio.store.get_tune(tune["id"])["weights_path"])
    meta = read_metadata(weights)
    assert (meta["ss_masked_loss"], meta["ss_face_loss_weight"], meta["ss_background_loss_weight"]) == (
        "True",
        "2.0",
        "0.5",
    )


def test_captions_and_face_loss_come_from_api_fields():
    request = tune_request_from_fields(
        {"title": "t", "name": "man", "captions": '["ohwx man, smiling", ""]', "face_loss_weight": "3"}
    )
    assert request.captions == ("ohwx man, smiling", None) and request.face_loss_weight == 3.0
    with pytest.raises(InvalidInput) as refused:
        from studio.tune_requests import check_request

        check_request(tune_request_from_fields({"title": "t", "name": "man", "captions": ["a man smiling"]}))
    assert refused.value.field == "captions"
