"""The embedded Flux demos: a tiny FLUX.1 [dev]-shaped and a tiny FLUX.2 [klein]-shaped pipeline,
built offline.

Each has every part its real family has, at a size a laptop CPU runs in seconds:

- FLUX.1: a `FluxTransformer2DModel` with the guidance embedding of [dev] (double- and
  single-stream blocks), a 16-channel-shaped `AutoencoderKL` with Flux's scaling and shift
  factors, a CLIP text encoder (pooled prompt) and a T5 encoder (sequence), with their
  tokenizers, and the flow-matching Euler scheduler with dynamic shifting.
- FLUX.2 [klein]: a `Flux2Transformer2DModel`, an `AutoencoderKLFlux2`, and a Qwen3 causal LM as
  text encoder (the pipeline stacks hidden states 9, 18 and 27, so it has 28 layers, each tiny)
  with a byte-level BPE tokenizer carrying Qwen's chat template.

The tokenizers are generated here (no hub download): the same words the SD demo makes single
tokens (`ohwx` among them) are whole pieces. Weights are random from a fixed seed, so the images
are textures; loading (`from_pretrained(local_files_only=True)`), LoRAs, training and the API run
the same code a real FLUX model runs. `ensure_flux_demos` writes them beside the SD demo.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from studio.demo_model import SEED, TOKEN_WORDS, _bytes_to_unicode, build_in_place, build_tokenizer

log = logging.getLogger(__name__)

# Bump when the built files change, so existing homes rebuild the Flux demos once.
VERSION = 1
MANIFEST = "demo_model.json"
FLUX1, FLUX2 = "flux1", "flux2"
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def ensure_flux_demo(folder: Path, family: str) -> Path:
    """Build the tiny demo of `family` ("flux1" or "flux2") into `folder` unless the current
    version is there. Returns `folder`. Built in a sibling temp folder and renamed into place,
    so an interrupted build never leaves a half-written model."""
    builders = {FLUX1: build_flux1_demo, FLUX2: build_flux2_demo}
    if family not in builders:
        raise ValueError(f"no embedded demo for family {family!r}")
    folder = Path(folder)
    marker = folder / MANIFEST
    if marker.exists():
        manifest = json.loads(marker.read_text())
        if manifest.get("version") == VERSION and manifest.get("family") == family:
            return folder
    manifest = {"version": VERSION, "seed": SEED, "family": family}
    return build_in_place(folder, family, builders[family], manifest)


def build_flux1_pipeline(*, guidance_embeds: bool = True, layers: tuple[int, int] = (1, 2), width: int = 32):
    """A tiny `FluxPipeline` (random weights from the fixed seed). `layers` is (double-stream,
    single-stream) blocks; `width` the text encoders' hidden size."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    scratch = Path(tempfile.mkdtemp(prefix="clip-tokenizer-"))
    try:
        tokenizer = build_tokenizer(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tokenizer_2 = build_t5_tokenizer()
    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2, as FLUX.1's 16 are packed to 64
        num_layers=layers[0],
        num_single_layers=layers[1],
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=width,
        pooled_projection_dim=width,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=width,
            hidden_act="quick_gelu",
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=width,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
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
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,  # FLUX.1's VAE factors
        shift_factor=0.1159,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build_flux1_demo(folder: Path) -> None:
    """Write the tiny FLUX.1 [dev]-shaped pipeline to `folder` with `save_pretrained`."""
    build_flux1_pipeline().save_pretrained(folder, safe_serialization=True)


def build_flux2_pipeline(*, layers: tuple[int, int] = (1, 2), width: int = 16, is_distilled: bool = False):
    """A tiny `Flux2KleinPipeline` (random weights from the fixed seed). `is_distilled` False is
    klein's base variant, which takes true classifier-free guidance."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_qwen_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=width * 2,
            num_hidden_layers=28,  # the pipeline reads hidden states 9, 18 and 27
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
    )
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels patchified 2x2
        num_layers=layers[0],
        num_single_layers=layers[1],
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * width,  # three stacked hidden states
        timestep_guidance_channels=64,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
    )
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=is_distilled,
    )


def build_flux2_demo(folder: Path) -> None:
    """Write the tiny FLUX.2 [klein]-shaped pipeline to `folder` with `save_pretrained`."""
    build_flux2_pipeline().save_pretrained(folder, safe_serialization=True)


def build_t5_tokenizer():
    """A T5 (Unigram, SentencePiece-style) tokenizer over printable ASCII, with the demo's words
    as whole pieces; `</s>` ends every sequence, `<pad>` pads."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(chr(c), -5.0) for c in range(33, 127)]
    pieces += [("▁" + word, -1.0) for word in TOKEN_WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def build_qwen_tokenizer():
    """A Qwen2-style byte-level BPE tokenizer: the 256 byte symbols, merges that make the demo's
    words single tokens, Qwen's special tokens and its chat template (the FLUX.2 pipeline wraps
    every prompt in it)."""
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(_bytes_to_unicode().values())}
    merges: list[tuple[str, str]] = []
    for word in TOKEN_WORDS:
        left = word[0]
        for char in word[1:]:
            if (left, char) not in merges:
                merges.append((left, char))
                vocab.setdefault(left + char, len(vocab))
            left += char
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
