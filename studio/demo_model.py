"""The embedded demo base model: a tiny SD-1.5-shaped pipeline built offline.

It has every part a real SD 1.5 checkpoint has (UNet, VAE with the 8x latent factor, CLIP text
encoder and tokenizer, CLIP image encoder) at a size that runs in seconds on a laptop CPU. The
weights are random from a fixed seed, so its images are textures, not photographs; everything
around it (loading, LoRA training and loading, adapters, packs, likes, the API) runs the same
code a real model runs. It is written once with `save_pretrained` and loaded with
`from_pretrained(local_files_only=True)`, the path a downloaded model takes.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the built files change, so existing homes rebuild the demo model once.
VERSION = 1
TOKEN_WORDS = ("ohwx", "sks", "man", "woman", "photo", "portrait")
SEED = 20261122


def ensure_demo_model(folder: Path) -> Path:
    """Build the demo model into `folder` unless the current version is already there.
    Returns `folder`. The build goes to a sibling temp folder first and is renamed into place,
    so an interrupted build never leaves a half-written model."""
    folder = Path(folder)
    marker = folder / "demo_model.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".demo-build-"))
    try:
        log.info("building the embedded demo model in %s", folder)
        build_demo_model(staging)
        (staging / "demo_model.json").write_text(json.dumps({"version": VERSION, "seed": SEED}))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def build_demo_model(folder: Path) -> None:
    """Write the tiny pipeline's components to `folder` with `save_pretrained`."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    tokenizer = build_tokenizer(Path(folder) / "_tokenizer_src")
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=256,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=32,
            hidden_act="quick_gelu",
        )
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=4,
            hidden_act="quick_gelu",
        )
    )
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=feature_extractor,
        image_encoder=image_encoder,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(Path(folder) / "_tokenizer_src", ignore_errors=True)


def build_tokenizer(scratch: Path):
    """A CLIP tokenizer over a byte-level vocabulary generated here: the 256 byte symbols, each
    also as a word end, merges that make a few words (the default token `ohwx` among them) single
    tokens, and CLIP's two special tokens. Every string tokenizes; real models bring their own."""
    from transformers import CLIPTokenizer

    byte_symbols = list(_bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    merges: list[tuple[str, str]] = []
    for word in TOKEN_WORDS:
        left = word[0]
        for index, char in enumerate(word[1:], start=1):
            right = char + "</w>" if index == len(word) - 1 else char
            if (left, right) not in merges:
                merges.append((left, right))
                vocab.append(left + right)
            left = left + right
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab = list(dict.fromkeys(vocab))
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (scratch / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return CLIPTokenizer(str(scratch / "vocab.json"), str(scratch / "merges.txt"), model_max_length=77)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode symbols."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))
