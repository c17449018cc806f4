"""Write a diffusers SD 1.5 pipeline as one original-layout (LDM / A1111) `.safetensors` file,
the format of checkpoints people download as a single file: `model.diffusion_model.*` (UNet),
`first_stage_model.*` (VAE) and `cond_stage_model.transformer.text_model.*` (CLIP).

It is the inverse of diffusers' single-file conversion for the layouts the demo model uses, made
from the diffusers config (any number of blocks and layers), so tests can load a single file
through `from_single_file` offline.
"""

from __future__ import annotations

from pathlib import Path


def unet_names(config) -> dict[str, str]:
    """{diffusers module prefix: LDM module prefix} for a UNet2DConditionModel config."""
    blocks, layers = len(config.block_out_channels), config.layers_per_block
    names = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.resnets.0": "middle_block.0",
        "mid_block.attentions.0": "middle_block.1",
        "mid_block.resnets.1": "middle_block.2",
    }
    for i in range(blocks):
        for j in range(layers):
            index = 1 + i * (layers + 1) + j
            names[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{index}.0"
            names[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{index}.1"
        if i < blocks - 1:
            names[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op"
    for i, block_type in enumerate(config.up_block_types):
        for j in range(layers + 1):
            index = i * (layers + 1) + j
            names[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{index}.0"
            names[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{index}.1"
        if i < blocks - 1:
            slot = 2 if "CrossAttn" in block_type else 1
            names[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (layers + 1) + layers}.{slot}.conv"
    return names


RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(key: str, prefixes: dict[str, str], inner: dict[str, str]) -> str:
    for source in sorted(prefixes, key=len, reverse=True):
        if key.startswith(source + "."):
            rest = key[len(source) + 1 :]
            for old, new in inner.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            return f"{prefixes[source]}.{rest}"
    return key


def vae_names(config) -> dict[str, str]:
    blocks = len(config.block_out_channels)
    names = {"encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
    for part in ("encoder", "decoder"):
        names[f"{part}.mid_block.resnets.0"] = f"{part}.mid.block_1"
        names[f"{part}.mid_block.resnets.1"] = f"{part}.mid.block_2"
        names[f"{part}.mid_block.attentions.0"] = f"{part}.mid.attn_1"
    for i in range(blocks):
        for j in range(config.layers_per_block + 1):
            names[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
            names[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{blocks - 1 - i}.block.{j}"
        names[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"encoder.down.{i}.downsample.conv"
        names[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"decoder.up.{blocks - 1 - i}.upsample.conv"
    return names


def write_ldm_checkpoint(pipe, path: Path) -> Path:
    """Save `pipe` (an SD 1.5 pipeline) as one LDM-layout safetensors file."""
    from safetensors.torch import save_file

    tensors = {}
    unet_map = unet_names(pipe.unet.config)
    for key, tensor in pipe.unet.state_dict().items():
        tensors["model.diffusion_model." + _rename(key, unet_map, RESNET)] = tensor
    vae_map = vae_names(pipe.vae.config)
    for key, tensor in pipe.vae.state_dict().items():
        inner = VAE_ATTENTION if ".attentions." in key else VAE_RESNET
        name = _rename(key, vae_map, inner)
        if ".attn_1." in name and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        tensors["first_stage_model." + name] = tensor
    for key, tensor in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        tensors["cond_stage_model.transformer." + key] = tensor
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return Path(path)
