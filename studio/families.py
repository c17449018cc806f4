"""Model families: every fact that differs between SD 1.5, SDXL, FLUX.1 and FLUX.2, in one place.

The engine, training, the prompt resolver, the API and the UI read a family's facts from here
instead of testing its name: which diffusers pipeline class runs each variant, the native size,
which schedulers apply, what `guidance_scale` means and whether a negative prompt is used, the
LoRA key layouts, what a LoRA trains and with which objective, and the real model's size for
memory estimates. Pure data (no torch): the UI and the API import it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.domain import FLUX1, FLUX2, SD15, SDXL

#: How `guidance_scale` acts: "cfg" is classifier-free guidance (a negative prompt is the
#: unconditional side), "distilled" is a guidance value embedded in the model (FLUX.1 [dev]; one
#: pass per step, no negative prompt), "none" ignores it (step-distilled models such as schnell).
GUIDANCE_KINDS = ("cfg", "distilled", "none")


@dataclass(frozen=True)
class Family:
    """One model family's facts. `pipelines` maps a variant ("text2img", "img2img",
    "controlnet", "controlnet_img2img", "reference", "inpaint": masked img2img, which the
    face detailer and `mask_image` use) to a diffusers class name; a variant
    missing here is not available for the family. `params_b` is the real model's size in
    billions of parameters per component, for memory estimates."""

    name: str
    label: str
    pipelines: dict[str, str]
    native_size: int
    schedulers: tuple[str, ...]
    default_scheduler: str
    guidance: str
    default_guidance_scale: float
    default_steps: int
    denoiser: str  # the pipeline attribute LoRAs train and load into: "unet" or "transformer"
    objective: str  # "epsilon" (DDPM noise / v prediction from the scheduler) or "flow" (rectified flow)
    lora_targets: tuple[str, ...]
    text_lora_targets: tuple[str, ...]
    kohya_prefixes: dict[str, str]  # pipeline component -> kohya/A1111 key prefix
    modelspec_architecture: str
    ss_base_model_version: str
    index_classes: tuple[str, ...]  # model_index.json `_class_name`s a folder of this family declares
    params_b: dict[str, float] = field(default_factory=dict)
    identity_adapters: bool = True  # IP-Adapter FaceID and style adapters exist for the family
    size_multiple: int = 8
    # Reference images one call takes (FLUX.2 [klein]'s `image=[...]`: BFL documents up to four
    # for klein); 0 where the family has no multi-reference pipeline. A reference tune keeps this
    # many face crops, and face plus role references together are capped at it.
    reference_images: int = 0
    # The `resolution` tiers the family draws well (see SIZE_TIERS); others are refused.
    resolutions: tuple[str, ...] = ("1K",)

    @property
    def uses_negative_prompt(self) -> bool:
        return self.guidance == "cfg"


_SD_SCHEDULERS = ("euler", "euler_a", "dpm++2m_karras", "dpm++sde_karras", "dpm++2m", "dpm++sde", "lcm", "tcd")
_FLOW_SCHEDULERS = ("euler", "euler_a", "lcm")
#: The double-stream (joint) attention projections both Flux generations share: image side, then text.
_JOINT_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")

FAMILIES: dict[str, Family] = {
    SD15: Family(
        name=SD15,
        label="SD 1.5",
        pipelines={
            "text2img": "StableDiffusionPipeline",
            "img2img": "StableDiffusionImg2ImgPipeline",
            "controlnet": "StableDiffusionControlNetPipeline",
            "controlnet_img2img": "StableDiffusionControlNetImg2ImgPipeline",
            "inpaint": "StableDiffusionInpaintPipeline",
        },
        native_size=512,
        schedulers=_SD_SCHEDULERS,
        default_scheduler="euler_a",
        guidance="cfg",
        default_guidance_scale=7.0,
        default_steps=30,
        denoiser="unet",
        objective="epsilon",
        lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
        text_lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
        kohya_prefixes={"unet": "lora_unet_", "text_encoder": "lora_te_"},
        modelspec_architecture="stable-diffusion-v1",
        ss_base_model_version="sd_v1",
        index_classes=("StableDiffusionPipeline",),
        params_b={"unet": 0.86, "text_encoder": 0.12, "vae": 0.08},
    ),
    SDXL: Family(
        name=SDXL,
        label="SDXL",
        pipelines={
            "text2img": "StableDiffusionXLPipeline",
            "img2img": "StableDiffusionXLImg2ImgPipeline",
            "controlnet": "StableDiffusionXLControlNetPipeline",
            "controlnet_img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
            "inpaint": "StableDiffusionXLInpaintPipeline",
        },
        native_size=1024,
        schedulers=_SD_SCHEDULERS,
        default_scheduler="euler_a",
        guidance="cfg",
        default_guidance_scale=7.0,
        default_steps=30,
        denoiser="unet",
        objective="epsilon",
        lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
        text_lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
        kohya_prefixes={"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"},
        modelspec_architecture="stable-diffusion-xl-v1-base",
        ss_base_model_version="sdxl_base_v1-0",
        index_classes=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        params_b={"unet": 2.57, "text_encoder": 0.12, "text_encoder_2": 0.69, "vae": 0.08},
    ),
    FLUX1: Family(
        name=FLUX1,
        label="FLUX.1",
        pipelines={
            "text2img": "FluxPipeline",
            "img2img": "FluxImg2ImgPipeline",
            "controlnet": "FluxControlNetPipeline",
            "controlnet_img2img": "FluxControlNetImg2ImgPipeline",
            "inpaint": "FluxInpaintPipeline",
        },
        native_size=1024,
        schedulers=_FLOW_SCHEDULERS,
        default_scheduler="euler",
        guidance="distilled",
        default_guidance_scale=3.5,
        default_steps=28,
        denoiser="transformer",
        objective="flow",
        # Attention and feed-forward projections of the double- and single-stream blocks.
        lora_targets=(
            *_JOINT_ATTENTION,
            "ff.net.0.proj",
            "ff.net.2",
            "ff_context.net.0.proj",
            "ff_context.net.2",
            "proj_mlp",
            "proj_out",
        ),
        text_lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
        kohya_prefixes={"transformer": "lora_unet_", "text_encoder": "lora_te1_"},
        modelspec_architecture="flux-1-dev",
        ss_base_model_version="flux1",
        index_classes=("FluxPipeline", "FluxImg2ImgPipeline"),
        params_b={"transformer": 11.9, "text_encoder": 0.12, "text_encoder_2": 4.76, "vae": 0.08},
        identity_adapters=False,
        size_multiple=16,
        resolutions=("1K", "2K"),
    ),
    FLUX2: Family(
        name=FLUX2,
        label="FLUX.2 [klein]",
        pipelines={"text2img": "Flux2KleinPipeline", "reference": "Flux2KleinPipeline"},
        native_size=1024,
        schedulers=("euler",),
        default_scheduler="euler",
        guidance="cfg",
        default_guidance_scale=4.0,
        default_steps=28,
        denoiser="transformer",
        objective="flow",
        lora_targets=(
            *_JOINT_ATTENTION,
            "ff.linear_in",
            "ff.linear_out",
            "ff_context.linear_in",
            "ff_context.linear_out",
            "to_qkv_mlp_proj",
            "to_out",  # the single-stream blocks' output projection (a Linear, not a list)
        ),
        text_lora_targets=(),
        kohya_prefixes={"transformer": "lora_unet_"},
        modelspec_architecture="flux-2-klein",
        ss_base_model_version="flux2_klein",
        index_classes=("Flux2KleinPipeline",),
        params_b={"transformer": 3.9, "text_encoder": 4.0, "vae": 0.08},
        identity_adapters=False,
        size_multiple=16,
        reference_images=4,
        resolutions=("1K", "2K"),
    ),
}


# -- Sizes: aspect ratios and resolution tiers ----------------------------------------------

#: Width x height for each `aspect_ratio` at about one megapixel (a 1024-px family's native
#: area), multiples of 32 and as close to the ratio as that allows (SDXL's training buckets
#: where they match). A family draws at these sizes times native_size/1024 (SD 1.5: halved, so
#: multiples of 16), at the `resolution` tier (SIZE_TIERS), rounded to its size_multiple:
#:
#: | ratio | 1024-px (SDXL, FLUX) | SD 1.5    |
#: |-------|----------------------|-----------|
#: | 1:1   | 1024x1024            | 512x512   |
#: | 16:9  | 1344x768             | 672x384   |
#: | 9:16  | 768x1344             | 384x672   |
#: | 21:9  | 1568x672             | 784x336   |
#: | 9:21  | 672x1568             | 336x784   |
#: | 3:2   | 1248x832             | 624x416   |
#: | 2:3   | 832x1248             | 416x624   |
#: | 5:4   | 1120x896             | 560x448   |
#: | 4:5   | 896x1120             | 448x560   |
#: | 4:3   | 1152x864             | 576x432   |
#: | 3:4   | 864x1152             | 432x576   |
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "21:9": (1568, 672),
    "9:21": (672, 1568),
    "3:2": (1248, 832),
    "2:3": (832, 1248),
    "5:4": (1120, 896),
    "4:5": (896, 1120),
    "4:3": (1152, 864),
    "3:4": (864, 1152),
}
#: Astria's legacy `ar` values that are not ratios.
AR_ALIASES = {"portrait": "2:3", "landscape": "3:2"}
#: `resolution` tiers: "1K" is the family's native bucket (about one megapixel; SD 1.5 draws
#: 512 px there: it repeats subjects when asked for more, use hires_fix); "2K" and "4K" scale the
#: bucket so its long side is 2048 or 4096 px (times native_size/1024). Each family lists the
#: tiers it draws (Family.resolutions); the others are refused.
SIZE_TIERS = {"1K": 1, "2K": 2, "4K": 4}


def aspect_ratio(value: str) -> str:
    """The canonical ratio for an `aspect_ratio` or legacy `ar` value ("portrait" -> "2:3");
    KeyError for an unknown one."""
    value = value.strip().lower()
    value = AR_ALIASES.get(value, value)
    if value not in ASPECT_RATIOS:
        raise KeyError(value)
    return value


def bucket_size(facts: Family, ratio: str = "1:1", tier: str = "1K", *, native: int | None = None) -> tuple[int, int]:
    """(width, height) for `ratio` at resolution `tier` on family `facts`, scaled to `native`
    (default the family's native size; a demo model's smaller size in tests) and rounded to the
    family's size_multiple (at least one multiple a side)."""
    width, height = ASPECT_RATIOS[ratio]
    scale = (native or facts.native_size) / 1024
    if SIZE_TIERS[tier] > 1:
        scale *= SIZE_TIERS[tier] * 1024 / max(width, height)
    m = facts.size_multiple
    return max(m, round(width * scale / m) * m), max(m, round(height * scale / m) * m)


def family(name: str) -> Family:
    """The facts of family `name`; KeyError for an unknown one (callers check names first)."""
    return FAMILIES[name]


def family_of_index(class_name: str) -> str | None:
    """The family whose pipeline a diffusers folder's model_index.json `_class_name` names."""
    for fam in FAMILIES.values():
        if class_name in fam.index_classes:
            return fam.name
    return None


#: The distillation LoRAs LCM and TCD sample with on a real model, per family and scheduler:
#: the scheduler alone takes few steps but draws blur with an undistilled UNet. Hub files (the
#: authors' own, kohya-style `lora_unet_…` keys), fetched once into the hub cache on first use.
DISTILLATION_LORAS = {
    SD15: {
        "lcm": "hf://latent-consistency/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors",
        "tcd": "hf://h1t/TCD-SD15/pytorch_lora_weights.safetensors",
    },
    SDXL: {
        "lcm": "hf://latent-consistency/lcm-lora-sdxl/pytorch_lora_weights.safetensors",
        "tcd": "hf://h1t/TCD-SDXL-LoRA/pytorch_lora_weights.safetensors",
    },
}


def distillation_lora(family: str, scheduler: str) -> str | None:
    """The `hf://` file of the distillation LoRA `scheduler` needs on a `family` model, or None
    when it needs none (any other scheduler, or a family whose LCM is a flow-matching one)."""
    return DISTILLATION_LORAS.get(family, {}).get(scheduler)


def hub_repo(source: str) -> str:
    """`owner/name` of an `hf://owner/name/path` source."""
    return "/".join(source[len("hf://") :].split("/")[:2])


# What a single-file checkpoint's state-dict keys contain, per family, most specific first
# (a FLUX.2 file also has `double_blocks`; an SDXL file also has `model.diffusion_model.`). The
# markers are those diffusers' single_file_utils.CHECKPOINT_KEY_NAMES tells families apart by.
SINGLE_FILE_MARKERS = (
    ("flux2", "single_stream_modulation."),
    ("flux1", "double_blocks."),
    ("sdxl", "conditioner.embedders.1."),
    ("sd15", "cond_stage_model."),
)


def family_of_files(path: Path) -> str | None:
    """The family a local model declares in its files: a diffusers folder's model_index.json
    `_class_name`, or the state-dict keys of a single .safetensors file (read from its header,
    no weights loaded). None when `path` is neither or says nothing known."""
    index = path / "model_index.json"
    if index.is_file():
        try:
            declared = json.loads(index.read_text()).get("_class_name", "")
        except (ValueError, AttributeError):
            return None
        return family_of_index(declared)
    if path.is_file() and path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
        except (OSError, SafetensorError):
            return None
        for name, marker in SINGLE_FILE_MARKERS:
            if any(marker in key for key in keys):
                return name
    return None


# -- Training facts: how a family's LoRA trains, is written, and what it costs in memory -------


@dataclass(frozen=True)
class TrainingFacts:
    """What `studio.training.train_lora` and the memory estimate need to know of a family.

    `latent_format` says how a VAE latent becomes the denoiser's input: "sd" scales it by the
    VAE's scaling factor; "flux1" shifts and scales it and packs 2x2 patches into tokens with
    (t, h, w) position ids; "flux2" patchifies it 2x2, normalises it by the VAE's batch-norm
    statistics and packs it with (t, h, w, l) ids. `lora_naming` is the key style of the
    diffusers-format file ("diffusers": `unet.…lora.down.weight`, as SD pipelines save it;
    "peft": `transformer.…lora_A.weight`, as Flux pipelines save it). `kohya_blocks` maps the
    denoiser's blocks to BFL/kohya module names: (diffusers block prefix, kohya block name,
    {kohya module: the diffusers modules fused into it, in order}); empty means the kohya name
    is the diffusers name with dots as underscores (SD)."""

    latent_format: str
    lora_naming: str
    text_lora_components: tuple[str, ...]  # text encoders `train_text_encoder` trains, in order
    free_text_encoders: bool  # drop untrained text encoders once the prompt is encoded
    kohya_network_module: str
    kohya_blocks: tuple[tuple[str, str, dict[str, tuple[str, ...]]], ...] = ()
    # Memory estimate inputs, of the real model: LoRA parameters per unit of rank on the
    # family's targets (counted on the real configurations), of its trainable text encoders,
    # and activation bytes saved for the backward pass (16-bit, batch 1, no checkpointing).
    lora_params_per_rank: int = 0
    text_lora_params_per_rank: int = 0
    text_tokens: int = 0  # prompt tokens the denoiser attends to beside the image tokens
    latent_pixels_per_token: int = 0  # image pixels per denoiser token (transformers)
    hidden_size: int = 0
    blocks: int = 0
    activation_bytes_per_token_block: float = 0.0  # times hidden_size (transformers)
    activation_bytes_per_pixel: float = 0.0  # UNets: saved activations per image pixel
    checkpointed_fraction: float = 0.0  # UNets: what gradient checkpointing keeps of them


_FLUX1_KOHYA = (
    (
        "transformer_blocks",
        "double_blocks",
        {
            "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
            "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
            "img_attn_proj": ("attn.to_out.0",),
            "txt_attn_proj": ("attn.to_add_out",),
            "img_mlp_0": ("ff.net.0.proj",),
            "img_mlp_2": ("ff.net.2",),
            "txt_mlp_0": ("ff_context.net.0.proj",),
            "txt_mlp_2": ("ff_context.net.2",),
            "img_mod_lin": ("norm1.linear",),
            "txt_mod_lin": ("norm1_context.linear",),
        },
    ),
    (
        "single_transformer_blocks",
        "single_blocks",
        {
            "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
            "linear2": ("proj_out",),
            "modulation_lin": ("norm.linear",),
        },
    ),
)
_FLUX2_KOHYA = (
    (
        "transformer_blocks",
        "double_blocks",
        {
            "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
            "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
            "img_attn_proj": ("attn.to_out.0",),
            "txt_attn_proj": ("attn.to_add_out",),
            "img_mlp_0": ("ff.linear_in",),
            "img_mlp_2": ("ff.linear_out",),
            "txt_mlp_0": ("ff_context.linear_in",),
            "txt_mlp_2": ("ff_context.linear_out",),
        },
    ),
    (
        "single_transformer_blocks",
        "single_blocks",
        {"linear1": ("attn.to_qkv_mlp_proj",), "linear2": ("attn.to_out",)},
    ),
)

# Activation figures, measured here on CPU with saved-tensor hooks (the frozen weights left out)
# on diffusers' models with LoRA on the family's targets, bf16, attention through SDPA (no score
# matrix kept): a FLUX.1 double block saves 48.9 x hidden size bytes per token and a single
# block 47.1 (over 19 + 38 blocks: 47.7); FLUX.2's 58.1 and 53.4 (over 5 + 20: 54.3); the SD 1.5
# UNet 3.5 KB and the SDXL UNet 7.0 KB per image pixel at 256 px. What gradient checkpointing
# keeps of a UNet's activations (a quarter) is assumed, not measured.
TRAINING: dict[str, TrainingFacts] = {
    SD15: TrainingFacts(
        latent_format="sd",
        lora_naming="diffusers",
        text_lora_components=("text_encoder",),
        free_text_encoders=False,
        kohya_network_module="networks.lora",
        lora_params_per_rank=215_680,
        text_lora_params_per_rank=73_728,
        activation_bytes_per_pixel=3_548.0,
        checkpointed_fraction=0.25,
    ),
    SDXL: TrainingFacts(
        latent_format="sd",
        lora_naming="diffusers",
        text_lora_components=("text_encoder", "text_encoder_2"),
        free_text_encoders=False,
        kohya_network_module="networks.lora",
        lora_params_per_rank=1_451_520,
        text_lora_params_per_rank=73_728 + 327_680,
        activation_bytes_per_pixel=7_041.0,
        checkpointed_fraction=0.25,
    ),
    FLUX1: TrainingFacts(
        latent_format="flux1",
        lora_naming="peft",
        text_lora_components=("text_encoder",),  # CLIP; T5 stays frozen, as in diffusers' trainer
        free_text_encoders=True,
        kohya_network_module="networks.lora_flux",
        kohya_blocks=_FLUX1_KOHYA,
        lora_params_per_rank=4_085_760,
        text_lora_params_per_rank=73_728,
        text_tokens=512,
        latent_pixels_per_token=16 * 16,
        hidden_size=3072,
        blocks=19 + 38,
        activation_bytes_per_token_block=47.7,
    ),
    FLUX2: TrainingFacts(
        latent_format="flux2",
        lora_naming="peft",
        text_lora_components=(),
        free_text_encoders=True,
        kohya_network_module="networks.lora_flux2",
        kohya_blocks=_FLUX2_KOHYA,
        lora_params_per_rank=1_505_280,
        text_tokens=512,
        latent_pixels_per_token=16 * 16,
        hidden_size=3072,
        blocks=5 + 20,
        activation_bytes_per_token_block=54.3,
    ),
}

#: Bytes per weight of the frozen model under each `mixed_precision` ("auto" is bf16 on a GPU).
_WEIGHT_BYTES = {"no": 4, "fp16": 2, "bf16": 2, "auto": 2}
_GB = 1e9


def estimate_training_memory(
    family: str,
    *,
    resolution: int,
    rank: int,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
    mixed_precision: str = "auto",
    train_text_encoder: bool = False,
    free_text_encoders: bool | None = None,
) -> dict:
    """Peak accelerator memory of a LoRA training of the real model of `family`, in GB.

    The training runs in two phases: encoding the prompt and the photos (text encoders and
    VAE loaded), then training (the denoiser, the LoRA with its gradients and AdamW moments in
    fp32, saved activations, and the text encoders that stay). The peak is the larger phase.
    Returns {"gb", "phase", "breakdown" (GB per part of the peak phase), "caching_gb",
    "training_gb", "assumptions"}. An estimate from parameter counts and activation figures,
    not a measurement of a run; CUDA's own context and allocator slack are one `overhead`.
    `mixed_precision` "auto" is what a GPU run picks (bf16, or fp16); "no" is fp32 throughout.
    `free_text_encoders` None takes the family's habit (Flux drops its big text encoders once
    the prompt is encoded; SD keeps them)."""
    fam, facts = FAMILIES[family], TRAINING[family]
    if mixed_precision not in _WEIGHT_BYTES:
        raise ValueError(f"mixed_precision must be one of {', '.join(_WEIGHT_BYTES)}")
    if train_text_encoder and not facts.text_lora_components:
        raise ValueError(f"{fam.label} trains no text encoder")
    weight_bytes = _WEIGHT_BYTES[mixed_precision]
    act_scale = weight_bytes / 2 * batch_size  # the activation figures are for 16-bit, batch 1
    params = fam.params_b
    text_names = [name for name in params if name.startswith("text_encoder")]
    trained_text = set(facts.text_lora_components) if train_text_encoder else set()
    drop = facts.free_text_encoders if free_text_encoders is None else free_text_encoders
    kept_text = [n for n in text_names if n in trained_text or not drop]
    denoiser = params[fam.denoiser] * 1e9 * weight_bytes
    vae = params.get("vae", 0.0) * 1e9 * weight_bytes
    # fp32 LoRA weights, their gradients and AdamW's two moments: 16 bytes a parameter.
    lora_params = rank * (facts.lora_params_per_rank + (facts.text_lora_params_per_rank if trained_text else 0))
    lora = lora_params * 16
    pixels = resolution * resolution
    if facts.blocks:
        tokens = pixels / facts.latent_pixels_per_token + facts.text_tokens
        per_block = facts.activation_bytes_per_token_block * facts.hidden_size * tokens
        if gradient_checkpointing:
            # each block's input (image and text tokens, 16 bit) plus one block recomputed
            activations = facts.blocks * tokens * facts.hidden_size * 2 + per_block
        else:
            activations = facts.blocks * per_block
    else:
        activations = facts.activation_bytes_per_pixel * pixels
        if gradient_checkpointing:
            activations *= facts.checkpointed_fraction
    activations *= act_scale
    overhead = 1.0 * _GB
    training = {
        fam.denoiser: denoiser,
        "text_encoders": sum(params[n] for n in kept_text) * 1e9 * weight_bytes,
        "vae": vae,
        "lora_and_optimizer": lora,
        "activations": activations,
        "overhead": overhead,
    }
    # Encoding: every text encoder and the VAE, with the VAE encoder's activations for the four
    # photos encoded at a time (1.3 KB per pixel in 16 bit: FLUX.1's VAE encoder grew a CPU
    # process by 2.6 KB per pixel in fp32 encoding one 512 px photo here).
    caching = {
        "text_encoders": sum(params[n] for n in text_names) * 1e9 * weight_bytes,
        "vae": vae,
        "vae_activations": 1300 * pixels * 4 * weight_bytes / 2,
        "overhead": overhead,
    }
    training_gb, caching_gb = sum(training.values()) / _GB, sum(caching.values()) / _GB
    if not drop:  # the denoiser is loaded beside the text encoders from the start
        caching[fam.denoiser] = denoiser
        caching_gb = sum(caching.values()) / _GB
    phase, parts = ("training", training) if training_gb >= caching_gb else ("caching", caching)
    return {
        "gb": round(max(training_gb, caching_gb), 1),
        "phase": phase,
        "breakdown": {name: round(value / _GB, 2) for name, value in parts.items()},
        "training_gb": round(training_gb, 1),
        "caching_gb": round(caching_gb, 1),
        "assumptions": (
            f"{fam.label} at {resolution}x{resolution}, batch {batch_size}, rank {rank}, "
            f"{'bf16/fp16' if weight_bytes == 2 else 'fp32'} weights, "
            f"gradient checkpointing {'on' if gradient_checkpointing else 'off'}, AdamW in fp32; "
            "estimated from parameter counts, not measured"
        ),
    }


# -- Engine facts: LoRA file recognition, flow-match schedulers, ControlNet classes --------------

#: `modelspec.architecture` prefixes (the metadata kohya, ai-toolkit and the studio write) -> family.
LORA_ARCHITECTURES = {
    "stable-diffusion-xl": SDXL,
    "stable-diffusion-v1": SD15,
    "flux-1": FLUX1,
    "flux.1": FLUX1,
    "flux-2": FLUX2,
    "flux.2": FLUX2,
}
#: sd-scripts' `ss_base_model_version` prefixes -> family.
LORA_BASE_VERSIONS = {"sdxl": SDXL, "sd_v1": SD15, "flux1": FLUX1, "flux2": FLUX2}

#: Astria scheduler name -> (diffusers class, overrides) for rectified-flow families, built from
#: the model's own FlowMatch scheduler config (shift, dynamic shifting). "euler_a" is the
#: stochastic (ancestral-like) form of the flow-match Euler step.
FLOW_SCHEDULERS = {
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "euler_a": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
    "lcm": ("FlowMatchLCMScheduler", {}),
}

#: The diffusers class of a ControlNet folder per family (the SD ones share one class).
CONTROLNET_CLASSES = {SD15: "ControlNetModel", SDXL: "ControlNetModel", FLUX1: "FluxControlNetModel"}
