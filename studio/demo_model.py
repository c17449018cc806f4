"""The embedded demo base model: a tiny SD-1.5-shaped pipeline built offline.

It has every part a real SD 1.5 checkpoint has (UNet, VAE with the 8x latent factor, CLIP text
encoder and tokenizer, CLIP image encoder) at a size that runs in seconds on a laptop CPU, plus
the adapters the prompt tokens need: a plain IP-Adapter (style), IP-Adapter-FaceID files (with
their LoRA) for the face backends' embedding sizes, and a ControlNet (pose). The weights are
random from a fixed seed, so its images are textures, not photographs; everything around it
(loading, LoRA training and loading, adapters, packs, likes, the API) runs the same code a real
model runs. It is written once with `save_pretrained` / `safetensors` and loaded with
`from_pretrained(local_files_only=True)` and `load_ip_adapter`, the paths downloaded weights take.

`demo_model.json` in the folder says where each adapter is (`read_manifest`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when the built files change, so existing homes rebuild the demo model once.
VERSION = 2
TOKEN_WORDS = ("ohwx", "sks", "man", "woman", "photo", "portrait")
SEED = 20261122
# The offline dlib backend's embedding size; insightface's ArcFace gives 512.
FACEID_DIMS = (128,)
MANIFEST = "demo_model.json"
STYLE_ADAPTER = "ip_adapter/ip-adapter_demo.safetensors"
CONTROLNET = "controlnet"


def ensure_demo_model(folder: Path, *, faceid_dims: tuple[int, ...] = FACEID_DIMS) -> Path:
    """Build the demo model into `folder` unless the current version, with FaceID adapters for
    `faceid_dims`, is already there. Returns `folder`. The build goes to a sibling temp folder
    first and is renamed into place, so an interrupted build never leaves a half-written model."""
    folder = Path(folder)
    marker = folder / MANIFEST
    if marker.exists():
        manifest = json.loads(marker.read_text())
        if manifest.get("version") == VERSION and set(manifest.get("faceid", ())) == {str(d) for d in faceid_dims}:
            return folder
    return build_in_place(folder, "demo", lambda staging: build_demo_model(staging, faceid_dims=faceid_dims))


def build_in_place(folder: Path, name: str, build: Callable[[Path], None], manifest: dict | None = None) -> Path:
    """Run `build` on a sibling temp folder, write `manifest` there (when given) and rename it
    to `folder`, so an interrupted build never leaves a half-written model. Returns `folder`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-build-"))
    try:
        log.info("building the embedded %s model in %s", name, folder)
        build(staging)
        if manifest is not None:
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_manifest(folder: Path) -> dict:
    """The demo model's manifest: `version`, `seed`, and the adapters relative to `folder`:
    `style` (IP-Adapter file), `image_encoder` (folder), `faceid` ({embedding size as a string:
    IP-Adapter-FaceID file}) and `controlnet` ({"pose": folder, "canny": folder})."""
    return json.loads((Path(folder) / MANIFEST).read_text())


def build_demo_model(folder: Path, *, faceid_dims: tuple[int, ...] = FACEID_DIMS) -> None:
    """Write the tiny pipeline's components to `folder` with `save_pretrained`, its adapters
    beside them, and the manifest last."""
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

    from safetensors.torch import save_file

    folder = Path(folder)
    (folder / "ip_adapter").mkdir()
    save_file(ip_adapter_weights(unet, image_encoder.config.projection_dim), folder / STYLE_ADAPTER)
    faceid = {}
    for dim in faceid_dims:
        faceid[str(dim)] = f"ip_adapter/ip-adapter-faceid_{dim}d_demo.safetensors"
        save_file(faceid_adapter_weights(unet, dim), folder / faceid[str(dim)])
    build_controlnet(unet).save_pretrained(folder / CONTROLNET, safe_serialization=True)
    manifest = {
        "version": VERSION,
        "seed": SEED,
        "style": STYLE_ADAPTER,
        "image_encoder": "image_encoder",
        "faceid": faceid,
        "controlnet": {"pose": CONTROLNET, "canny": CONTROLNET},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _cross_attention_sizes(unet) -> list[tuple[str, int, int | None]]:
    """(processor name, hidden size, cross-attention size or None for self-attention) for every
    attention processor, in `unet.attn_processors` order: the order IP-Adapter files number
    their keys in (diffusers' `_convert_ip_adapter_attn_to_diffusers`)."""
    channels = list(unet.config.block_out_channels)
    sizes = []
    for name in unet.attn_processors:
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        cross = None if name.endswith("attn1.processor") else unet.config.cross_attention_dim
        sizes.append((name, hidden, cross))
    return sizes


def _ip_attention_weights(unet, generator) -> dict:
    """`ip_adapter.{k}.to_k_ip/to_v_ip` for every cross-attention processor, k = 1, 3, 5, …"""
    import torch

    weights, key = {}, 1
    for _name, hidden, cross in _cross_attention_sizes(unet):
        if cross is None:
            continue
        for part in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{key}.{part}.weight"] = torch.randn(hidden, cross, generator=generator) / cross**0.5
        key += 2
    return weights


def ip_adapter_weights(unet, image_embed_dim: int, *, seed: int = SEED + 1) -> dict:
    """A plain IP-Adapter (SD 1.5 layout, 4 image tokens) for `unet`, fed by a CLIP image
    encoder whose projection has `image_embed_dim` values."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    weights = {
        "image_proj.proj.weight": torch.randn(4 * cross, image_embed_dim, generator=generator) / image_embed_dim**0.5,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    return weights | _ip_attention_weights(unet, generator)


def faceid_adapter_weights(unet, id_dim: int, *, seed: int = SEED + 2, rank: int = 4, mult: int = 2) -> dict:
    """An IP-Adapter-FaceID for `unet` fed by `id_dim`-value face embeddings: the FaceID image
    projection (4 tokens), the IP attention weights, and the LoRA that FaceID files carry on
    every attention processor (loaded by diffusers as the adapter `faceid_0`)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    hidden_ff = id_dim * mult
    weights = {
        "image_proj.proj.0.weight": torch.randn(hidden_ff, id_dim, generator=generator) * 2 / id_dim**0.5,
        "image_proj.proj.0.bias": torch.zeros(hidden_ff),
        "image_proj.proj.2.weight": torch.randn(4 * cross, hidden_ff, generator=generator) / hidden_ff**0.5,
        "image_proj.proj.2.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    } | _ip_attention_weights(unet, generator)
    for index, (_name, hidden, cross_dim) in enumerate(_cross_attention_sizes(unet)):
        inputs = {"to_q": hidden, "to_k": cross_dim or hidden, "to_v": cross_dim or hidden, "to_out": hidden}
        for part, size_in in inputs.items():
            down = torch.randn(rank, size_in, generator=generator) / size_in**0.5
            weights[f"ip_adapter.{index}.{part}_lora.down.weight"] = down
            weights[f"ip_adapter.{index}.{part}_lora.up.weight"] = torch.randn(hidden, rank, generator=generator) * 0.1
    return weights


def build_controlnet(unet, *, seed: int = SEED + 3):
    """A ControlNet made from `unet` (diffusers' `ControlNetModel.from_unet`). `from_unet` zeroes
    the blocks that feed the UNet, so an untrained ControlNet has no effect at all; they get
    random weights here so the control image visibly steers the demo model."""
    import torch
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=generator) * 0.2)
    return controlnet


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
