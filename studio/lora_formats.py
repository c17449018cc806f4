"""LoRA files as people download them: which family a file is for, and Flux key layouts.

- `lora_family(header)` reads a safetensors header (no tensor data) and says which family the
  LoRA was made for: from its metadata (`modelspec.architecture`, sd-scripts'
  `ss_base_model_version`) when present, else from its key names and shapes. SD 1.5 and SDXL
  differ by their cross-attention width; FLUX.1 and FLUX.2 share block names, so their
  single-stream block's fused input projection (FLUX.1: q, k, v and a GELU MLP, 7x the width;
  FLUX.2: q, k, v and a gated MLP, 9x) or their double-stream MLP (4x against 6x) tells them
  apart. None when nothing says.
- `flux1_state_dict(tensors, transformer)` turns a FLUX.1 LoRA in BFL/ComfyUI naming
  (`diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`) or kohya naming
  (`lora_unet_single_blocks_0_linear1.lora_down.weight`) into diffusers' naming. diffusers
  converts kohya files itself but splits the single-stream blocks' fused projection by the
  real FLUX.1 [dev] sizes, so any other width (the embedded demo, a pruned model) fails there;
  here the split uses the loaded transformer's own sizes, and the rest goes to diffusers'
  converter. XLabs and diffusers/peft files are left for diffusers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from studio.families import LORA_ARCHITECTURES, LORA_BASE_VERSIONS

_SD_BLOCKS = re.compile(r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)")
_SD_WIDTHS = {768: "sd15", 2048: "sdxl"}
_BFL_BLOCKS = re.compile(r"(double_blocks|single_blocks)[._]\d+[._]")
_DIFFUSERS_BLOCKS = re.compile(r"(^|[._])(single_transformer_blocks|transformer_blocks)[._]\d+[._]")
# Module name (separators as "_") -> {width multiple: family}, for the fused/MLP input projections.
_FLUX_RATIOS = {
    "linear1": {7: "flux1", 9: "flux2"},
    "img_mlp_0": {4: "flux1", 6: "flux2"},
    "txt_mlp_0": {4: "flux1", 6: "flux2"},
}
_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".down.weight")
_UP = (".lora_up.weight", ".lora_B.weight", ".lora.up.weight", ".up.weight")


def lora_family(header: Mapping[str, Any]) -> str | None:
    """The family a LoRA file is for ("sd15", "sdxl", "flux1", "flux2"), from its safetensors
    header; None when neither its metadata nor its keys say."""
    declared = _declared_family(header.get("__metadata__"))
    if declared is not None:
        return declared
    keys = [k for k in header if k != "__metadata__"]
    lowered = [k.lower() for k in keys]
    if any(_SD_BLOCKS.search(k) for k in lowered):
        return _sd_family(header)
    if any("processor.proj_lora" in k or "processor.qkv_lora" in k for k in lowered):
        return "flux1"  # XLabs trains FLUX.1 only
    if any(_BFL_BLOCKS.search(k) for k in lowered):
        return _flux_by_ratio(header, keys) or ("flux1" if any("mod_lin" in _flat(k) for k in keys) else None)
    if any(_DIFFUSERS_BLOCKS.search(k) for k in lowered):
        flat = [_flat(k) for k in keys]
        if any(m in k for k in flat for m in ("to_qkv_mlp_proj", "ff_linear_in", "ff_context_linear_in")):
            return "flux2"
        if any(m in k for k in flat for m in ("proj_mlp", "ff_net_0_proj", "ff_context_net_0_proj")):
            return "flux1"
    return None


def _declared_family(metadata: Any) -> str | None:
    if not isinstance(metadata, Mapping):
        return None
    architecture = metadata.get("modelspec.architecture")
    if isinstance(architecture, str):
        for prefix, name in LORA_ARCHITECTURES.items():
            if architecture.startswith(prefix):
                return name
    version = metadata.get("ss_base_model_version")
    if isinstance(version, str):
        for prefix, name in LORA_BASE_VERSIONS.items():
            if version.startswith(prefix):
                return name
    return None


def _sd_family(header: Mapping[str, Any]) -> str | None:
    """sd15 or sdxl from the cross-attention input width (768 or 2048), else None."""
    for key, info in header.items():
        lowered = key.lower()
        if "attn2" in lowered and "to_k" in lowered and any(d in lowered for d in ("lora_down", "lora.down", "lora_a")):
            shape = info.get("shape") if isinstance(info, Mapping) else None
            return _SD_WIDTHS.get(shape[-1]) if isinstance(shape, list) and shape else None
    return None


def _flux_by_ratio(header: Mapping[str, Any], keys: list[str]) -> str | None:
    """flux1 or flux2 from how much wider than the model a fused/MLP input projection is."""
    for key in keys:
        module, down = _split_factor(key, _DOWN)
        if down is None:
            continue
        name = _flat(module).rsplit("blocks_", 1)[-1].split("_", 1)[-1]  # "linear1", "img_mlp_0"…
        ratios = _FLUX_RATIOS.get(name)
        up_key = next((module + up for up in _UP if module + up in header), None)
        if ratios is None or up_key is None:
            continue
        up_shape, down_shape = _shape(header, up_key), _shape(header, key)
        if len(up_shape) == 2 and len(down_shape) == 2 and down_shape[1]:
            found = ratios.get(up_shape[0] / down_shape[1])
            if found is not None:
                return found
    return None


def _split_factor(key: str, suffixes: tuple[str, ...]) -> tuple[str, str | None]:
    for suffix in suffixes:
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return key, None


def _shape(header: Mapping[str, Any], key: str) -> list:
    info = header.get(key)
    shape = info.get("shape") if isinstance(info, Mapping) else None
    return shape if isinstance(shape, list) else []


def _flat(key: str) -> str:
    return key.lower().replace(".", "_")


# -- FLUX.1 key layouts -------------------------------------------------------------------------


def flux1_needs_conversion(keys) -> bool:
    """Whether a FLUX.1 LoRA with these keys goes through `flux1_state_dict` (BFL/ComfyUI or
    kohya names); other layouts load from their file, so diffusers also reads the alpha its
    metadata carries."""
    keys = list(keys)
    bfl = any(k.startswith("diffusion_model.") for k in keys) and any(_BFL_BLOCKS.search(k) for k in keys)
    return bfl or any(k.endswith(".lora_down.weight") for k in keys)


def flux1_state_dict(tensors: dict, transformer) -> dict:
    """`tensors` (a FLUX.1 LoRA file's) in a layout diffusers' FLUX.1 loader takes for
    `transformer`: BFL/ComfyUI names become kohya names, and kohya files get their
    single-stream fused projections split by `transformer`'s sizes before diffusers converts
    the rest. Other layouts are returned as they are."""
    if any(k.startswith("diffusion_model.") for k in tensors) and any(_BFL_BLOCKS.search(k) for k in tensors):
        tensors = {_bfl_to_kohya(k): v for k, v in tensors.items()}
    if not any(k.endswith(".lora_down.weight") for k in tensors):
        return tensors
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    rest = dict(tensors)
    split: dict = {}
    for key in [k for k in tensors if re.fullmatch(r"lora_unet_single_blocks_\d+_linear1\.lora_down\.weight", k)]:
        module = key[: -len(".lora_down.weight")]
        index = int(module.split("_")[4])
        block = transformer.single_transformer_blocks[index]
        targets = {"attn.to_q": block.attn.to_q, "attn.to_k": block.attn.to_k, "attn.to_v": block.attn.to_v}
        targets["proj_mlp"] = block.proj_mlp
        down, up = rest.pop(key), rest.pop(module + ".lora_up.weight")
        alpha = rest.pop(module + ".alpha", None)
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        prefix = f"transformer.single_transformer_blocks.{index}."
        for name, (a, b) in zip(targets, _split_fused(down * scale, up, [m.out_features for m in targets.values()])):
            split[f"{prefix}{name}.lora_A.weight"] = a
            split[f"{prefix}{name}.lora_B.weight"] = b
    converted = _convert_kohya_flux_lora_to_diffusers(rest) if rest else {}
    return {**converted, **split}


def _bfl_to_kohya(key: str) -> str:
    """`diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight` ->
    `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` (CLIP keys likewise to lora_te1_)."""
    for old, new in (("diffusion_model.", "lora_unet_"), ("text_encoders.clip_l.transformer.", "lora_te1_")):
        if key.startswith(old):
            for suffix, kohya in ((".lora_A.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_up.weight")):
                if key.endswith(suffix):
                    return new + key[len(old) : -len(suffix)].replace(".", "_") + kohya
            if key.endswith(".alpha"):
                return new + key[len(old) : -len(".alpha")].replace(".", "_") + ".alpha"
    return key


def _split_fused(down, up, dims: list[int]) -> list[tuple[Any, Any]]:
    """(down, up) per part of a LoRA on a fused projection whose outputs are `dims` long. A
    block-diagonal `up` (what exporting separate per-part LoRAs gives) splits the rank too;
    otherwise every part shares `down`."""
    import torch

    if sum(dims) != up.shape[0]:
        raise ValueError(f"a fused projection LoRA has {up.shape[0]} outputs; this model's has {sum(dims)}")
    parts, rank = len(dims), down.shape[0]
    ups = torch.split(up, dims, dim=0)
    if rank % parts == 0:
        width = rank // parts
        blocks = [u[:, j * width : (j + 1) * width] for u in ups for j in range(parts)]
        off_diagonal = [blocks[i * parts + j] for i in range(parts) for j in range(parts) if i != j]
        if all(not b.any() for b in off_diagonal):
            downs = torch.chunk(down, parts, dim=0)
            return [(downs[i].contiguous(), blocks[i * parts + i].contiguous()) for i in range(parts)]
    return [(down.clone(), u.contiguous()) for u in ups]
