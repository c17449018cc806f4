"""The engine on the Flux families, with the tiny FLUX.1 [dev] and FLUX.2 [klein] flux_demo_dirs: text to
image, seeds, progress and cancel, the family's guidance (distilled for FLUX.1, true CFG with
the negative prompt for klein), flow-match schedulers, img2img, klein's reference edit, FLUX.1
ControlNet, what a Flux base refuses, and the memory options. All offline, CPU, 64 px."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from studio.engine import Engine, GenerateRequest, make_scheduler
from studio.errors import Canceled, InvalidInput, Unavailable


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


@pytest.fixture(scope="module")
def flux_controlnet(tmp_path_factory):
    """A tiny FluxControlNetModel folder matching the FLUX.1 demo transformer."""
    import torch
    from diffusers import FluxControlNetModel

    torch.manual_seed(0)
    model = FluxControlNetModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    with torch.no_grad():  # a trained ControlNet's zero-initialised outputs have moved away from zero
        for block in (model.controlnet_x_embedder, *model.controlnet_blocks, *model.controlnet_single_blocks):
            block.weight.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("controlnet") / "flux-canny"
    model.save_pretrained(folder)
    return folder


def make(folder, family: str, **overrides) -> GenerateRequest:
    options = dict(
        model=str(folder),
        family=family,
        prompt="a photo of ohwx man",
        num_inference_steps=3,
        width=64,
        height=64,
        guidance_scale=3.5,
        scheduler="euler",
        seed=11,
    )
    return GenerateRequest(**(options | overrides))


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((80, 80, 3)) * 255).astype("uint8"))


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_flux_generates_reproducibly_with_progress_and_parameters(flux_demo_dirs, engine, family):
    steps = []
    first = engine.generate(
        make(flux_demo_dirs[family], family, num_images=2), on_step=lambda i, n: steps.append((i, n))
    )
    again = engine.generate(make(flux_demo_dirs[family], family, num_images=2))
    assert steps == [(1, 3), (2, 3), (3, 3)] * 1 and [r.seed for r in first] == [11, 12]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again))
    assert not np.array_equal(pixels(first[0]), pixels(first[1]))  # one seed per image
    assert first[0].image.size == (64, 64) and engine.loaded_model[1] == family
    text = Image.open(io.BytesIO(first[0].png)).info["parameters"]
    assert text == first[0].parameters and f"Model: {family}" in text and "Seed: 11" in text


def test_flux_honours_cancel_between_steps(flux_demo_dirs, engine):
    steps = []
    with pytest.raises(Canceled, match="after step 2"):
        engine.generate(
            make(flux_demo_dirs["flux1"], "flux1", num_inference_steps=5),
            on_step=lambda i, n: steps.append(i),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]


def test_flux1_guidance_is_distilled_and_a_negative_prompt_is_reported_unused(flux_demo_dirs, engine):
    folder = flux_demo_dirs["flux1"]
    plain = engine.generate(make(folder, "flux1"))[0]
    negative = engine.generate(make(folder, "flux1", negative_prompt="blurry"))[0]
    assert np.array_equal(pixels(plain), pixels(negative)) and plain.warnings == ()
    assert negative.warnings == (
        "The negative prompt was not used: FLUX.1 has no negative side (it uses distilled guidance).",
    )
    assert "Negative prompt" not in negative.parameters  # the PNG does not claim it was used
    # guidance_scale is the embedded guidance value: it changes the image with one pass per step.
    stronger = engine.generate(make(folder, "flux1", guidance_scale=7.0))[0]
    assert not np.array_equal(pixels(plain), pixels(stronger))


def test_flux2_klein_base_uses_true_cfg_with_the_negative_prompt(flux_demo_dirs, engine):
    folder = flux_demo_dirs["flux2"]
    plain = engine.generate(make(folder, "flux2"))[0]
    negative = engine.generate(make(folder, "flux2", negative_prompt="blurry"))[0]
    assert not np.array_equal(pixels(plain), pixels(negative)) and negative.warnings == ()
    assert "Negative prompt: blurry" in negative.parameters
    pair = engine.generate(make(folder, "flux2", negative_prompt="blurry", num_images=2))  # one embedding per image
    # A batch of two may round one channel of one pixel the other way (CPU kernels by batch size).
    assert np.abs(pixels(pair[0]) - pixels(negative)).max() <= 1 and pair[1].seed == 12
    # At guidance 1 there is no unconditional pass: the negative prompt cannot act, and says so.
    unguided = engine.generate(make(folder, "flux2", negative_prompt="blurry", guidance_scale=1.0))[0]
    assert "The negative prompt was not used" in unguided.warnings[0]


def test_flux_takes_only_its_flow_match_schedulers(flux_demo_dirs, engine):
    import diffusers

    folder = flux_demo_dirs["flux1"]
    euler = pixels(engine.generate(make(folder, "flux1"))[0])
    ancestral = pixels(engine.generate(make(folder, "flux1", scheduler="euler_a"))[0])
    lcm = engine.generate(make(folder, "flux1", scheduler="lcm"))[0]
    assert not np.array_equal(euler, ancestral) and lcm.image.size == (64, 64)
    config = engine.models.scheduler_config
    assert isinstance(make_scheduler("euler", config, "flux1"), diffusers.FlowMatchEulerDiscreteScheduler)
    assert make_scheduler("euler_a", config, "flux1").config.stochastic_sampling
    assert make_scheduler("euler", config, "flux1").config.use_dynamic_shifting  # the model's own config
    for family, scheduler in (("flux1", "dpm++2m_karras"), ("flux2", "euler_a"), ("flux1", "tcd")):
        with pytest.raises(InvalidInput, match=f"'{re.escape(scheduler)}' does not apply to FLUX") as info:
            engine.generate(make(flux_demo_dirs[family], family, scheduler=scheduler))
        assert info.value.field == "scheduler"


def test_flux1_img2img_keeps_the_input_and_names_its_strength(flux_demo_dirs, engine):
    folder = flux_demo_dirs["flux1"]
    text = pixels(engine.generate(make(folder, "flux1"))[0])
    light = engine.generate(make(folder, "flux1", init_image=photo(), strength=0.5))[0]
    heavy = engine.generate(make(folder, "flux1", init_image=photo(1), strength=0.5))[0]
    assert not np.array_equal(pixels(light), text) and not np.array_equal(pixels(light), pixels(heavy))
    assert "Denoising strength: 0.5" in light.parameters and light.warnings == ()


def test_flux2_uses_an_input_image_as_klein_reference_and_says_strength_does_not_apply(flux_demo_dirs, engine):
    folder = flux_demo_dirs["flux2"]
    text = pixels(engine.generate(make(folder, "flux2"))[0])
    edit = engine.generate(make(folder, "flux2", init_image=photo(), strength=0.4))[0]
    other = engine.generate(make(folder, "flux2", init_image=photo(1), strength=0.4))[0]
    assert not np.array_equal(pixels(edit), text) and not np.array_equal(pixels(edit), pixels(other))
    assert edit.warnings == (
        "FLUX.2 [klein] has no strength img2img: the input image was the reference to edit, and strength did not apply.",
    )
    assert "Denoising strength" not in edit.parameters


def test_flux1_controlnet_conditions_the_image(flux_demo_dirs, engine, flux_controlnet):
    folder = flux_demo_dirs["flux1"]
    text = pixels(engine.generate(make(folder, "flux1"))[0])
    control = dict(control_image=photo(2), controlnet=str(flux_controlnet), control_mode="image")
    guided = engine.generate(make(folder, "flux1", **control))[0]
    other = engine.generate(make(folder, "flux1", **(control | {"control_image": photo(3)})))[0]
    assert not np.array_equal(pixels(guided), text) and not np.array_equal(pixels(guided), pixels(other))
    assert "ControlNet: flux-canny 1.0" in guided.parameters
    both = engine.generate(make(folder, "flux1", init_image=photo(), strength=0.6, **control))[0]
    assert "Denoising strength: 0.6" in both.parameters and "ControlNet: flux-canny" in both.parameters


@pytest.mark.parametrize(
    ("family", "overrides", "field", "message"),
    [
        ("flux1", {"faceid_embedding": (0.1,) * 512, "faceid_adapter": "f.bin"}, "faceid_adapter", "no FaceID adapter"),
        ("flux2", {"style_image": "img", "style_adapter": "s.bin"}, "style_adapter", r"no style \(IP-Adapter\)"),
        ("flux2", {"control_image": "img", "controlnet": "c"}, "controlnet", "no ControlNet pipeline"),
        ("flux1", {"width": 72}, "width", "multiple of 16"),
    ],
)
def test_what_a_flux_base_cannot_do_is_refused_naming_the_field(
    flux_demo_dirs, engine, family, overrides, field, message
):
    with pytest.raises(InvalidInput, match=message) as info:
        engine.generate(make(flux_demo_dirs[family], family, **overrides))
    assert info.value.field == field


def test_a_flux_folder_is_not_taken_for_another_family(flux_demo_dirs, engine, demo_model_dir):
    with pytest.raises(InvalidInput, match="is a FluxPipeline, not a sd15 model") as info:
        engine.load_model(str(flux_demo_dirs["flux1"]), "sd15")
    assert info.value.field == "family"
    with pytest.raises(InvalidInput, match="is a Flux2KleinPipeline, not a flux1 model"):
        engine.load_model(str(flux_demo_dirs["flux2"]), "flux1")
    with pytest.raises(InvalidInput, match="not a flux2 model"):
        engine.load_model(str(demo_model_dir), "flux2")


def test_memory_options_say_what_is_active():
    plain = Engine("cpu")
    assert plain.memory_options() == {
        "device": "cpu",
        "dtype": "float32",
        "cpu_offload": False,
        "quantize": None,
        "notes": [],
    }
    offload = Engine("cpu", cpu_offload=True).memory_options()
    assert offload["cpu_offload"] is False and "needs CUDA" in offload["notes"][0]
    with pytest.raises(InvalidInput, match="quantize 'fp3' is not one of nf4, int8") as info:
        Engine("cpu", quantize="fp3")
    assert info.value.field == "quantize"
    with pytest.raises(Unavailable, match="quantize=nf4 needs a CUDA GPU"):
        Engine("cpu", quantize="nf4")
