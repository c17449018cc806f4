"""Model families: every fact that differs between SD 1.5, SDXL, FLUX.1 and FLUX.2, in one place.

The engine, training, the prompt resolver, the API and the UI read a family's facts from here
instead of testing its name: which diffusers pipeline class runs each variant, the native size,
which schedulers apply, what `guidance_scale` means and whether a negative prompt is used, the
LoRA key layouts, what a LoRA trains and with which objective, and the real model's size for
memory estimates. Pure data (no torch): the UI and the API import it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.domain import FLUX1, FLUX2, SD15, SDXL

#: How `guidance_scale` acts: "cfg" is classifier-free guidance (a negative prompt is the
#: unconditional side), "distilled" is a guidance value embedded in the model (FLUX.1 [dev]; one
#: pass per step, no negative prompt), "none" ignores it (step-distilled models such as schnell).
GUIDANCE_KINDS = ("cfg", "distilled", "none")


@dataclass(frozen=True)
class Family:
    """One model family's facts. `pipelines` maps a variant ("text2img", "img2img",
    "controlnet", "controlnet_img2img", "reference") to a diffusers class name; a variant
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

    @property
    def uses_negative_prompt(self) -> bool:
        return self.guidance == "cfg"


_SD_SCHEDULERS = ("euler", "euler_a", "dpm++2m_karras", "dpm++sde_karras", "dpm++2m", "dpm++sde", "lcm", "tcd")
_FLOW_SCHEDULERS = ("euler", "euler_a", "lcm")

FAMILIES: dict[str, Family] = {
    SD15: Family(
        name=SD15,
        label="SD 1.5",
        pipelines={
            "text2img": "StableDiffusionPipeline",
            "img2img": "StableDiffusionImg2ImgPipeline",
            "controlnet": "StableDiffusionControlNetPipeline",
            "controlnet_img2img": "StableDiffusionControlNetImg2ImgPipeline",
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
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
            "to_add_out",
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
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
            "to_add_out",
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
    ),
}


def family(name: str) -> Family:
    """The facts of family `name`; KeyError for an unknown one (callers check names first)."""
    return FAMILIES[name]


def family_of_index(class_name: str) -> str | None:
    """The family whose pipeline a diffusers folder's model_index.json `_class_name` names."""
    for fam in FAMILIES.values():
        if class_name in fam.index_classes:
            return fam.name
    return None


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
