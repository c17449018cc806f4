"""Role-tagged reference images on FLUX.2 [klein] (the tiny demo, CPU, 64 px): the engine passes
them as klein's `image` list, so the output depends on each reference, and records the roles
and their instructions; FLUX.1 and too many references are refused naming the field; the role
instructions name each image by its place in the list."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.engine import Engine, GenerateRequest
from studio.errors import InvalidInput
from studio.prompts import PromptError, PromptRequest, reference_instructions


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


def make(folder, family: str = "flux2", **overrides) -> GenerateRequest:
    options = dict(
        model=str(folder),
        family=family,
        prompt="a portrait",
        num_inference_steps=3,
        width=64,
        height=64,
        guidance_scale=3.5,
        scheduler="euler",
        seed=5,
    )
    return GenerateRequest(**(options | overrides))


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((80, 80, 3)) * 255).astype("uint8"))


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def test_reference_images_reach_klein_and_each_one_changes_the_image(flux_demo_dirs, engine):
    folder = flux_demo_dirs["flux2"]
    face = make(folder, reference_images=(("face", photo(1)),))
    alone = engine.generate(face)[0]
    other_face = engine.generate(make(folder, reference_images=(("face", photo(2)),)))[0]
    outfit = make(folder, reference_images=(("face", photo(1)), ("outfit", photo(3))))
    dressed = engine.generate(outfit)[0]
    again = engine.generate(face)[0]
    assert not np.array_equal(pixels(alone), pixels(other_face))
    assert not np.array_equal(pixels(alone), pixels(dressed))
    assert np.array_equal(pixels(alone), pixels(again))  # removing the outfit restores the image
    assert 'Reference roles: "face, outfit"' in dressed.parameters
    assert 'Reference instructions: "Show the person from image 1, wearing the outfit from image 2."' in (
        dressed.parameters
    )


@pytest.mark.parametrize(
    ("family", "count", "message"),
    [("flux1", 1, "takes no reference images"), ("flux2", 5, "takes 4")],
)
def test_references_where_the_model_cannot_take_them_are_refused(flux_demo_dirs, engine, family, count, message):
    request = make(flux_demo_dirs[family], family, reference_images=tuple(("outfit", photo(i)) for i in range(count)))
    with pytest.raises(InvalidInput, match=message) as info:
        engine.generate(request)
    assert info.value.field == "reference_images"


def test_role_instructions_number_the_images_in_order():
    assert reference_instructions(["face", "face", "outfit", "background"]) == (
        "Show the person from images 1 and 2, wearing the outfit from image 3, in the background from image 4."
    )
    assert (
        reference_instructions(["pose", "style"])
        == "Show the subject, in the pose from image 1, in the style of image 2."
    )
    assert reference_instructions([]) == ""


def test_an_unknown_role_is_refused_naming_it():
    with pytest.raises(PromptError, match="'hat'") as info:
        PromptRequest.from_dict({"text": "a portrait", "references": [("hat", b"x")]}).validate()
    assert info.value.field == "references"
