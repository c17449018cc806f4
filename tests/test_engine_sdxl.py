"""The SDXL family on a tiny SDXL pipeline built here (two text encoders, text-time embedding)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.errors import InvalidInput


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory, demo_model_dir):
    """A tiny SDXL pipeline saved with save_pretrained, reusing the demo model's tokenizer."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(demo_model_dir / "tokenizer")
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "projection_dim": 32,
        "hidden_act": "quick_gelu",
    }
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=32 + 6 * 8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(CLIPTextConfig(**config)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


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
