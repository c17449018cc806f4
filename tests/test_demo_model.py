import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def pipe(demo_model_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(demo_model_dir, local_files_only=True, safety_checker=None)


def _run(pipe, seed):
    import torch

    out = pipe(
        "a photo of ohwx man",
        num_inference_steps=3,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return out.images[0]


def test_layout_is_a_diffusers_pipeline(demo_model_dir):
    index = json.loads((demo_model_dir / "model_index.json").read_text())
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder"):
        assert part in index and (demo_model_dir / part).is_dir()
    assert list((demo_model_dir / "unet").glob("*.safetensors"))


def test_vae_has_the_8x_latent_factor(pipe):
    assert pipe.vae_scale_factor == 8


def test_tokenizer_knows_the_default_token(pipe):
    ids = pipe.tokenizer("ohwx").input_ids
    assert len(ids) == 3  # start, ohwx, end


def test_seeded_generation_is_deterministic_and_seeds_differ(pipe):
    a1, a2, b = _run(pipe, 1), _run(pipe, 1), _run(pipe, 2)
    assert a1.shape == (64, 64, 3)
    np.testing.assert_array_equal(a1, a2)
    assert np.abs(a1 - b).max() > 0.05


def test_rebuild_is_skipped_when_current(demo_model_dir):
    from studio.demo_model import ensure_demo_model

    before = (demo_model_dir / "model_index.json").stat().st_mtime_ns
    ensure_demo_model(demo_model_dir)
    assert (demo_model_dir / "model_index.json").stat().st_mtime_ns == before
