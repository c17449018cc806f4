"""The SDXL family on the embedded tiny SDXL demo (two text encoders, text-time embedding)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.errors import InvalidInput


@pytest.fixture(scope="module")
def sdxl_dir(sdxl_demo_dir):
    """The embedded SDXL demo (conftest builds it once per session)."""
    return sdxl_demo_dir


def test_an_sdxl_model_generates_reproducibly_and_replaces_the_sd15_one(sdxl_dir, demo_model_dir):
    from studio.engine import Engine, GenerateRequest

    engine = Engine("cpu")
    request = GenerateRequest(
        model=str(sdxl_dir), family="sdxl", prompt="ohwx woman", num_inference_steps=3, width=64, height=64, seed=3
    )
    first, again = engine.generate(request), engine.generate(request)
    assert first[0].image.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(first[0].image), np.asarray(again[0].image))
    assert engine.loaded_model == (str(sdxl_dir.resolve()), "sdxl")
    start = Image.fromarray((np.random.RandomState(1).rand(64, 64, 3) * 255).astype(np.uint8))
    (img2img,) = engine.generate(dataclasses.replace(request, init_image=start, strength=0.5))
    assert img2img.image.size == (64, 64) and "Denoising strength: 0.5" in img2img.parameters
    sd15 = GenerateRequest(model=str(demo_model_dir), prompt="x", num_inference_steps=2, width=64, height=64)
    engine.generate(sd15)
    assert engine.loaded_model == (str(demo_model_dir.resolve()), "sd15")


def test_a_model_of_the_other_family_is_named_as_such(sdxl_dir, demo_model_dir):
    from studio.engine import Engine

    engine = Engine("cpu")
    with pytest.raises(InvalidInput, match="StableDiffusionXLPipeline, not a sd15") as info:
        engine.load_model(str(sdxl_dir), "sd15")
    assert info.value.field == "family"
    with pytest.raises(InvalidInput, match="not a sdxl"):
        engine.load_model(str(demo_model_dir), "sdxl")
