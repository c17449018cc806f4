"""What the studio reports matches what ran: mock-mode prompts report the capped steps and size
their PNGs carry, and prompts show canonical token kinds (`<style:…>` for `<be-style:…>`)."""

import io

import pytest
from PIL import Image
from test_likeness import _faceid_tune

from studio.prompts import canonical_text, parse_parameters, parse_prompt
from studio.services.resolution import MOCK_STEPS


def test_a_mock_mode_prompt_reports_the_steps_and_size_that_ran(studio):
    tune = _faceid_tune(studio)  # branch=fast: mock mode
    asked = {"text": "a portrait", "num_images": 1, "seed": 2, "steps": 30, "w": 512, "h": 512}
    created = studio.create_prompt(tune["id"], asked)
    side = studio.settings.demo_size
    assert (created["params"]["steps"], created["params"]["w"], created["params"]["h"]) == (MOCK_STEPS, side, side)
    studio.run_pending()
    body = studio.prompt_json(created["id"])
    assert (body["steps"], body["w"], body["h"]) == (MOCK_STEPS, side, side)
    [row] = studio.store.prompt_images(created["id"])
    with Image.open(io.BytesIO(studio.files.read(row["path"]))) as image:
        ran = parse_parameters(image.info["parameters"])
        assert image.size == (side, side)
    assert (ran["steps"], ran["width"], ran["height"]) == (MOCK_STEPS, side, side)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("<be-style:cartoon:0.5> a cat", "<style:cartoon:0.5> a cat"),
        ("a <BE-face:ann> portrait, <be-pose:wave:0.8>", "a <face:ann> portrait, <pose:wave:0.8>"),
        ("<be-lora:toy:-0.5> <lora:12:1> a <3 b", "<lora:toy:-0.5> <lora:12:1> a <3 b"),
        ("<style:x> plain", "<style:x> plain"),
    ],
)
def test_token_kinds_are_shown_in_their_canonical_spelling(written, canonical):
    assert canonical_text(written) == canonical
    assert parse_prompt(canonical) == parse_prompt(written)  # the same references (and text)
