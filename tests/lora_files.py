"""Fabricated LoRA files for tests, in the two key layouts people upload.

- kohya (sd-scripts, A1111, Civitai): `lora_unet_<module path with _>.lora_down.weight`,
  `.lora_up.weight` and `.alpha`; text-encoder modules as `lora_te_text_model_<path>`.
- diffusers: what diffusers' training scripts write with `save_lora_weights` from a peft model:
  `unet.<module path>.lora.down.weight` / `.lora.up.weight`, and the text encoder's
  `text_encoder.<module path>.lora_linear_layer.down.weight` / `.up.weight`.

Both are built from one set of random low-rank factors (seeded) over the modules a real LoRA
targets, so a kohya file and a diffusers file made with the same seed hold the same deltas
(kohya's alpha equals the rank, a scale of 1).
"""

from __future__ import annotations

from pathlib import Path

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_factors(pipe, *, seed: int, rank: int = 4, strength: float = 0.3, text_encoder: bool = True) -> dict:
    """{("unet" | "text_encoder", module path): (down [rank, in], up [out, rank])} for the
    attention projections of `pipe`'s UNet (and its text encoder when asked)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    parts = [("unet", pipe.unet, UNET_TARGETS)]
    if text_encoder:
        parts.append(("text_encoder", pipe.text_encoder, TEXT_TARGETS))
    factors = {}
    for part, model, targets in parts:
        for name, module in model.named_modules():
            if any(name == t or name.endswith("." + t) for t in targets):
                down = torch.randn(rank, module.in_features, generator=generator) / module.in_features**0.5
                up = torch.randn(module.out_features, rank, generator=generator) * strength
                factors[(part, name)] = (down, up)
    return factors


def write_kohya_lora(path: Path, factors: dict) -> Path:
    """Save `factors` in kohya's layout (alpha = rank, so the scale is 1)."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for (part, name), (down, up) in factors.items():
        if part == "unet":
            key = "lora_unet_" + name.replace(".", "_")
        else:
            # transformers 5 dropped CLIPTextModel's `text_model.` level; kohya files keep it.
            key = "lora_te_text_model_" + name.replace(".", "_")
        tensors[f"{key}.lora_down.weight"] = down.contiguous()
        tensors[f"{key}.lora_up.weight"] = up.contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(down.shape[0]))
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora"})
    return Path(path)


def write_diffusers_lora(path: Path, factors: dict) -> Path:
    """Save `factors` the way diffusers' training scripts do: peft state dicts converted with
    `convert_state_dict_to_diffusers` and written by `save_lora_weights`."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = {"unet": {}, "text_encoder": {}}
    for (part, name), (down, up) in factors.items():
        layers[part][f"{name}.lora_A.weight"] = down.contiguous()
        layers[part][f"{name}.lora_B.weight"] = up.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        path.parent,
        unet_lora_layers=convert_state_dict_to_diffusers(layers["unet"]),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(layers["text_encoder"]) or None,
        weight_name=path.name,
        safe_serialization=True,
    )
    return path


def write_sd15_lora(path: Path) -> Path:
    """A minimal kohya-layout LoRA whose cross-attention input is 768 wide (SD 1.5's), as a
    person would upload one: one projection, random factors, an alpha."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file(
        {
            f"{key}.lora_down.weight": rng.standard_normal((4, 768)).astype(np.float32),
            f"{key}.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float32),
            f"{key}.alpha": np.array(4.0, dtype=np.float32),
        },
        str(path),
    )
    return path
