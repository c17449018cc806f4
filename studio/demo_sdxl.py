"""The embedded SDXL demo: a tiny SDXL-shaped pipeline built offline.

It has the parts a real SDXL checkpoint has that SD 1.5 lacks: two CLIP text encoders (the
second with a projection, giving the pooled prompt), the UNet's text-time embedding fed by the
pooled prompt and the six size/crop numbers, and a VAE with the 8x latent factor. The tokenizer
is the SD demo's (generated here, `ohwx` a single token) for both encoders. Weights are random
from a fixed seed, so the images are textures; loading, LoRA training and loading, and the API
run the same code a real SDXL model runs. `ensure_sdxl_demo` writes it beside the SD demo.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from studio.demo_model import SEED, build_in_place, build_tokenizer

log = logging.getLogger(__name__)

# Bump when the built files change, so existing homes rebuild the SDXL demo once.
VERSION = 1
MANIFEST = "demo_model.json"


def ensure_sdxl_demo(folder: Path) -> Path:
    """Build the tiny SDXL demo into `folder` unless the current version is there. Returns
    `folder`. Built in a sibling temp folder and renamed into place, so an interrupted build
    never leaves a half-written model."""
    folder = Path(folder)
    marker = folder / MANIFEST
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return folder
    manifest = {"version": VERSION, "seed": SEED, "family": "sdxl"}
    return build_in_place(folder, "sdxl", build_sdxl_demo, manifest)


def build_sdxl_pipeline(*, sample_size: int = 32):
    """A tiny `StableDiffusionXLPipeline` (random weights from the fixed seed) whose native
    image side is `sample_size` x 8."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    scratch = Path(tempfile.mkdtemp(prefix="clip-tokenizer-"))
    try:
        tokenizer = build_tokenizer(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    torch.manual_seed(SEED)
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
        sample_size=sample_size,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,  # both encoders' hidden states, concatenated
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled prompt + six time ids
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=sample_size * 8,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(CLIPTextConfig(**config)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
        ),
    )


def build_sdxl_demo(folder: Path) -> None:
    """Write the tiny SDXL pipeline to `folder` with `save_pretrained`."""
    build_sdxl_pipeline().save_pretrained(folder, safe_serialization=True)
