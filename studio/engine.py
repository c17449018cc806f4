"""Engine: `generate()` with LoRAs, IP-Adapters and ControlNet on a warm diffusers pipeline.

The engine takes explicit arguments (a `GenerateRequest`) and never reads the studio's settings
or database, so a job worker in another process can run it as well. One engine owns one device
and one `ModelCache` (studio/engine_models.py), which loads and keeps the base pipeline, LoRAs,
IP-Adapters, image encoders and ControlNets. Per request, this module:

- checks the request up front, then loads what it names through the cache;
- weights the LoRAs, and a FaceID file's own LoRA (`faceid_0`) with the FaceID scale, so
  weight 0 is the base model;
- turns the FaceID embedding and the style image into IP-Adapter embeddings, with per-adapter
  scales;
- derives the pipeline variant it needs (img2img, ControlNet, both, or a reference edit) from
  the base with `from_pipe`, sharing its modules, and prepares the control image (as is, Canny
  or OpenPose);
- hands the prompt over as the family's guidance takes it (studio/families.py): classifier-free
  guidance with the negative prompt (SD; FLUX.2 [klein] base, whose pipeline takes it as
  `negative_prompt_embeds`), or FLUX.1's distilled guidance, which has no negative side: a
  negative prompt there gives the image a warning instead of being dropped unseen;
- denoises with the Astria-named scheduler of the family (flow-match ones for Flux), one seed per
  image, reporting progress and honouring cancel between steps; runs the post-processing
  plug-ins; and encodes PNGs carrying A1111 `parameters` text.

`generate` runs one request at a time (the cache's lock); progress and cancel are plain
callables. Heavy imports happen inside functions.
"""

from __future__ import annotations

import inspect
import io
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import detailer, engine_passes, families, look, prompt_weights
from studio.engine_models import FACEID_LORA, FAMILIES, ModelCache, pick_device
from studio.engine_passes import fit_image
from studio.errors import Canceled, InvalidInput, OutOfMemory, Unavailable
from studio.postprocess import LABELS, PostContext, open_postprocessors
from studio.prompts import MAX_SEED, SCHEDULERS, format_parameters, reference_instructions

log = logging.getLogger(__name__)

CONTROL_MODES = ("auto", "image", "canny", "openpose")
FACE_DETAIL_MODES = ("off", "auto", "on")
MAX_IMAGES, MAX_STEPS, MIN_SIDE, MAX_SIDE = 8, 150, 16, 4096

StepCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class GenerateRequest:
    """Everything one generation needs, in diffusers' argument names.

    `model` is a hub id, a local diffusers folder or a single `.safetensors` checkpoint of the
    `family` ("sd15", "sdxl", "flux1", "flux2"; their facts are in studio/families.py). `seed`
    is the first image's seed; image i uses seed + i.
    `loras` are (name, .safetensors path, weight) triples. FaceID: `faceid_embedding` (the
    face backend's unit-norm vector) with `faceid_adapter` (an IP-Adapter-FaceID file) at
    `faceid_scale`. Style: `style_image` (PIL) with `style_adapter` (a plain IP-Adapter file)
    at `style_scale`, encoded by the CLIP image encoder in the folder `image_encoder` (None: the
    base model's own). ControlNet: `control_image` with the ControlNet folder `controlnet`;
    `control_mode` says how to turn the image into a conditioning map: "image" uses it as it
    is, "canny" takes OpenCV Canny edges, "openpose" runs the OpenPose detector, "auto" uses a
    ready map (mostly black: a skeleton or edges) as it is and otherwise prefers OpenPose,
    then Canny. img2img: `init_image` with `strength` (1.0 keeps nothing of it); on a family
    without strength img2img but with reference editing (FLUX.2 [klein]) `init_image` is the
    reference image and strength does not apply (the images say so). `reference_images` are
    (role, PIL image) pairs passed, in order, as the reference list of a family that takes
    several (`Family.reference_images`; FLUX.2 [klein]'s `image=[...]`); the prompt then already
    holds their role instructions (prompts.reference_instructions), which the PNG records as
    `Reference roles`. Adapter and
    model paths may also be `hf://owner/repo/path/in/repo`. `parameters_prompt` is the prompt
    as the person wrote it (tokens included) for the PNG's parameters; default `prompt`.
    `distillation_lora` names the LCM/TCD distillation LoRA among `loras` (a hub id, for the
    PNG); LCM or TCD without one on an SD model runs the scheduler alone and says so.
    Inpainting: `mask_image` (PIL, white = repaint) with `init_image`; outside the mask the
    output keeps the input's pixels. Hires fix (`hires_fix`): the image is made at width×height,
    upscaled by `hires_scale` (the super-resolution plug-in when installed, else the latents on
    SD families, else Lanczos) and denoised again by img2img at `hires_strength` for
    `hires_steps` (None: num_inference_steps). Face detailing (`inpaint_faces`: "off", "auto"
    for small faces only, "on"; see studio/detailer.py) re-generates the faces at
    `detail_strength`, the faces picked by `detail_faces` (0-based, left to right; empty: all),
    at `detail_size` (None: the family's native size), each with its person of `people` (left to
    right), or with the request's own LoRAs and FaceID when `people` is empty.
    `single_file_config` is, for a single-file checkpoint, the diffusers folder or hub id whose
    component configs it uses; None lets diffusers pick the family's reference model, whose
    configs must then be in the hub cache or downloadable.
    """

    model: str
    family: str = "sd15"
    prompt: str = ""
    negative_prompt: str = ""
    num_images: int = 1
    seed: int = 0
    num_inference_steps: int = 30
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = "euler_a"
    loras: tuple[tuple[str, str, float], ...] = ()
    faceid_embedding: tuple[float, ...] | None = field(default=None, repr=False)
    faceid_adapter: str | None = None
    faceid_scale: float = 1.0
    style_image: Any = field(default=None, repr=False)
    style_adapter: str | None = None
    style_scale: float = 1.0
    image_encoder: str | None = None
    control_image: Any = field(default=None, repr=False)
    controlnet: str | None = None
    controlnet_conditioning_scale: float = 1.0
    control_mode: str = "auto"
    init_image: Any = field(default=None, repr=False)
    strength: float = 0.8
    reference_images: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    mask_image: Any = field(default=None, repr=False)
    hires_fix: bool = False
    hires_scale: float = 2.0
    hires_strength: float = 0.5
    hires_steps: int | None = None
    inpaint_faces: str = "off"
    detail_strength: float = detailer.DEFAULT_STRENGTH
    detail_faces: tuple[int, ...] = ()
    detail_size: int | None = None
    people: tuple[detailer.Person, ...] = ()
    super_resolution: bool = False
    face_correct: bool = False
    face_swap: bool = False
    model_name: str = ""
    parameters_prompt: str | None = None
    single_file_config: str | None = None
    # A1111 weights in the prompt texts (SD 1.5, SDXL; studio/prompt_weights.py), and the
    # look applied last (studio/look.py).
    prompt_weights: bool = False
    color_grading: str | None = None
    film_grain: bool = False
    distillation_lora: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """One output: the RGB PIL `image`, its `png` bytes carrying A1111 `parameters` text (also
    in `parameters`), the `seed` that reproduces it, and `warnings` (post-processing skipped,
    pose detector missing…), the same for every image of a request, and `detailed_faces`, what
    the face detailer did on this image."""

    image: Any
    png: bytes
    seed: int
    parameters: str
    warnings: tuple[str, ...] = ()
    detailed_faces: tuple[detailer.DetailedFace, ...] = ()


def check_request(request: GenerateRequest) -> None:
    """Validate every field up front; raise InvalidInput naming the field."""

    def fail(name: str, message: str) -> None:
        raise InvalidInput(f"{name}: {message}", field=name)

    if request.family not in FAMILIES:
        fail("family", f"'{request.family}' is not one of {', '.join(FAMILIES)}.")
    facts = families.family(request.family)
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        fail("prompt", "the prompt and negative prompt must be text.")
    if not 1 <= request.num_images <= MAX_IMAGES:
        fail("num_images", f"{request.num_images} is out of range; use 1 to {MAX_IMAGES}.")
    if not 0 <= request.seed <= MAX_SEED:
        fail("seed", f"{request.seed} is out of range; use 0 to {MAX_SEED}.")
    if not 1 <= request.num_inference_steps <= MAX_STEPS:
        fail("num_inference_steps", f"{request.num_inference_steps} is out of range; use 1 to {MAX_STEPS}.")
    if not (math.isfinite(request.guidance_scale) and 0 <= request.guidance_scale <= 30):
        fail("guidance_scale", f"{request.guidance_scale} is out of range; use 0 to 30.")
    for name in ("width", "height"):
        value = getattr(request, name)
        if not MIN_SIDE <= value <= MAX_SIDE or value % facts.size_multiple:
            fail(name, f"{value} must be a multiple of {facts.size_multiple} from {MIN_SIDE} to {MAX_SIDE}.")
    if request.scheduler not in SCHEDULERS:
        fail("scheduler", f"'{request.scheduler}' is not one of {', '.join(SCHEDULERS)}.")
    if request.scheduler not in facts.schedulers:
        fail(
            "scheduler",
            f"'{request.scheduler}' does not apply to {facts.label} models; use {', '.join(facts.schedulers)}.",
        )
    if request.control_mode not in CONTROL_MODES:
        fail("control_mode", f"'{request.control_mode}' is not one of {', '.join(CONTROL_MODES)}.")
    for name, path, weight in request.loras:
        if not (isinstance(weight, (int, float)) and math.isfinite(weight)):
            fail("loras", f"LoRA '{name}' has weight {weight!r}; use a number.")
        if not path:
            fail("loras", f"LoRA '{name}' has no file.")
    for name in ("faceid_scale", "style_scale", "controlnet_conditioning_scale"):
        if not 0 <= getattr(request, name) <= 2:
            fail(name, f"{getattr(request, name)} is out of range; use 0 to 2.")
    if (request.faceid_embedding is None) != (request.faceid_adapter is None):
        fail("faceid_adapter", "FaceID needs both a face embedding and a FaceID adapter.")
    if (request.style_image is None) != (request.style_adapter is None):
        fail("style_adapter", "a style needs both a style image and an IP-Adapter.")
    if (request.control_image is None) != (request.controlnet is None):
        fail("controlnet", "ControlNet needs both a control image and a ControlNet.")
    if not facts.identity_adapters:
        for name, what in (("faceid_adapter", "FaceID"), ("style_adapter", "style (IP-Adapter)")):
            if getattr(request, name) is not None:
                fail(name, f"{facts.label} has no {what} adapter in diffusers; use a LoRA tune of the person instead.")
    if request.controlnet is not None and "controlnet" not in facts.pipelines:
        fail("controlnet", f"{facts.label} has no ControlNet pipeline in diffusers; leave the ControlNet out.")
    if request.init_image is not None and not {"img2img", "reference"} & set(facts.pipelines):
        fail("init_image", f"{facts.label} cannot start from an input image; leave it out.")
    if request.reference_images:
        limit = facts.reference_images
        if not limit:
            fail("reference_images", f"{facts.label} takes no reference images; use FLUX.2 [klein] for them.")
        if len(request.reference_images) > limit:
            fail("reference_images", f"{len(request.reference_images)} reference images; {facts.label} takes {limit}.")
        if request.init_image is not None:
            fail("init_image", "with reference images, pass the input image as one of them instead.")
    if request.mask_image is not None:
        if request.init_image is None:
            fail("mask_image", "a mask needs the input image it masks (input_image).")
        if "inpaint" not in facts.pipelines:
            fail("mask_image", f"{facts.label} has no inpaint pipeline in diffusers; leave the mask out.")
        if request.controlnet is not None:
            fail("mask_image", "a mask and a ControlNet cannot be combined; use one of them.")
    if request.hires_fix:
        if not 1 < request.hires_scale <= 4:
            fail("hires_scale", f"{request.hires_scale} is out of range; use more than 1, up to 4.")
        if max(request.width, request.height) * request.hires_scale > MAX_SIDE:
            fail("hires_scale", f"the upscaled image would be larger than {MAX_SIDE} px; lower w, h or the scale.")
        if not 0 < request.hires_strength <= 1:
            fail("hires_strength", f"{request.hires_strength} is out of range; use more than 0, up to 1.")
        if request.hires_steps is not None and not 1 <= request.hires_steps <= MAX_STEPS:
            fail("hires_steps", f"{request.hires_steps} is out of range; use 1 to {MAX_STEPS}.")
    if request.inpaint_faces not in FACE_DETAIL_MODES:
        fail("inpaint_faces", f"'{request.inpaint_faces}' is not one of {', '.join(FACE_DETAIL_MODES)}.")
    if not 0 < request.detail_strength <= 1:
        fail("detail_strength", f"{request.detail_strength} is out of range; use more than 0, up to 1.")
    if request.detail_size is not None and request.detail_size % facts.size_multiple:
        fail("detail_size", f"{request.detail_size} must be a multiple of {facts.size_multiple}.")
    if request.init_image is not None:
        if not 0 < request.strength <= 1:
            fail("strength", f"{request.strength} is out of range; use more than 0, up to 1.")
        if int(request.num_inference_steps * request.strength) < 1:
            fail("strength", "strength × steps is less than one step; raise either.")


def make_scheduler(name: str, config: dict, family: str | None = None):
    """The diffusers scheduler for an Astria scheduler name, built from the model's own
    scheduler config. 'dpm++sde' is DPM-Solver++ in its SDE form (no torchsde needed). A
    rectified-flow family (or, with no `family`, a FlowMatch config) gets the flow-match form of
    the name (families.FLOW_SCHEDULERS)."""
    import diffusers

    flow = (
        families.family(family).objective == "flow"
        if family is not None
        else str(config.get("_class_name", "")).startswith("FlowMatch")
    )
    if flow:
        class_name, overrides = families.FLOW_SCHEDULERS[name]
        return getattr(diffusers, class_name).from_config(config, **overrides)
    options = {
        "euler": ("EulerDiscreteScheduler", {}),
        "euler_a": ("EulerAncestralDiscreteScheduler", {}),
        "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
        "dpm++2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
        "dpm++sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        "dpm++sde_karras": (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        ),
        "lcm": ("LCMScheduler", {}),
        "tcd": ("TCDScheduler", {}),
    }
    class_name, overrides = options[name]
    return getattr(diffusers, class_name).from_config(config, **overrides)


class Engine:
    """Generates images on one device from `GenerateRequest`s, with its `models` kept warm
    between requests."""

    def __init__(
        self,
        device: str = "auto",
        *,
        postprocess_dir: Path | None = None,
        insightface_root: Path | None = None,
        max_loras: int = 16,
        cpu_offload: bool = False,
        quantize: str | None = None,
        face_backend: str = "auto",
    ):
        """Choose the device and dtype once. Nothing is loaded until the first request.
        `postprocess_dir` holds the post-processing plug-ins' weights (see postprocess.py);
        at most `max_loras` LoRA files stay loaded. For large models on a small GPU:
        `cpu_offload` moves each component to the GPU only while it runs (CUDA only; elsewhere
        it stays off and `memory_options` says why), `quantize` ("nf4" or "int8") loads the
        denoiser quantized (needs CUDA and bitsandbytes, else Unavailable; another value is
        InvalidInput naming `quantize`). `face_backend` (studio/faces.py's choice) finds the
        faces the face detailer re-generates."""
        self.device, self.dtype = pick_device(device)
        self.models = ModelCache(
            self.device, self.dtype, max_loras=max_loras, cpu_offload=cpu_offload, quantize=quantize
        )
        self.postprocess_dir = Path(postprocess_dir) if postprocess_dir is not None else None
        self.postprocessors = open_postprocessors(postprocess_dir, insightface_root=insightface_root)
        self._openpose = None
        self.face_backend = face_backend
        self.insightface_root = insightface_root
        self._analyzer = None

    # The model cache's verbs, kept on the engine for its callers (the studio, tests, bench).

    @property
    def max_loras(self) -> int:
        return self.models.max_loras

    @property
    def loaded_model(self) -> tuple[str, str] | None:
        """(model, family) of the warm pipeline, or None."""
        return self.models.loaded_model

    @property
    def loaded_loras(self) -> list[str]:
        """Paths of the LoRA files loaded as adapters, least recently used first."""
        return self.models.loaded_loras

    def memory_options(self) -> dict[str, Any]:
        """What is active to save device memory, for the Settings tab: {"device", "dtype",
        "cpu_offload", "quantize", "notes"}; see `ModelCache.memory_options`."""
        return self.models.memory_options()

    def load_model(self, model: str, family: str = "sd15", *, single_file_config: str | None = None):
        """See `ModelCache.load_model`."""
        return self.models.load_model(model, family, single_file_config=single_file_config)

    def activate_loras(self, loras, *, faceid_lora: float | None = None) -> None:
        """See `ModelCache.activate_loras`."""
        self.models.activate_loras(loras, faceid_lora=faceid_lora)

    def unload(self) -> None:
        """Drop the pipeline and every cache tied to it, and free device memory."""
        self.models.unload()

    def free_memory(self) -> None:
        """Return cached device memory to the system (after an OOM or a model switch)."""
        self.models.free_memory()

    # -- generation -------------------------------------------------------------------------

    def generate(
        self,
        request: GenerateRequest,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[GeneratedImage]:
        """Run one request; return its `num_images` images in seed order.

        `on_step(i, total)` is called after each denoising step (i from 1 to total);
        `should_stop()` is polled at the same moments and, once it returns True, the run is
        interrupted and Canceled raised. Raises InvalidInput for a bad request or asset,
        Unavailable when a model cannot be loaded, OutOfMemory (after freeing the cache) when
        the device runs out of memory."""
        import torch

        # 1. Check the request before touching any model.
        check_request(request)
        if should_stop is not None and should_stop():
            raise Canceled("Canceled before it started.")
        with self.models.lock:
            try:
                # 2. The base pipeline, warm unless the model changed.
                pipe = self.load_model(request.model, request.family, single_file_config=request.single_file_config)
                # 3. IP-Adapters (FaceID first, then style) and their image embeddings; this may
                #    (re)load the FaceID LoRA, so LoRA weights are set after it.
                ip_embeds = self._prepare_ip_adapters(pipe, request)
                # 4. LoRAs for this request, plus the FaceID LoRA at the FaceID scale.
                faceid_lora = request.faceid_scale if FACEID_LORA in self.models.adapter_names(pipe) else None
                self.activate_loras(request.loras, faceid_lora=faceid_lora)
                # 5. The pipeline variant, its image inputs and the prompt as the family's
                #    guidance takes it.
                runner, inputs, warnings = self._variant(pipe, request)
                runner.scheduler = make_scheduler(request.scheduler, self.models.scheduler_config, request.family)
                prompt_inputs, prompt_warnings = self._prompt_inputs(runner, request)
                warnings += prompt_warnings
                if request.distillation_lora is None and families.distillation_lora(request.family, request.scheduler):
                    warnings.append(
                        f"{request.scheduler.upper()} ran without its distillation LoRA (none for this model): "
                        "the scheduler alone, which on a real model draws blur in few steps."
                    )
                if ip_embeds:
                    inputs["ip_adapter_image_embeds"] = ip_embeds
                seeds = [(request.seed + i) % (MAX_SEED + 1) for i in range(request.num_images)]
                generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
                # 6. Denoise, reporting progress and honouring cancel between steps.
                stopped = []

                def step_end(current, index, _timestep, tensors):
                    total = getattr(current, "num_timesteps", None) or request.num_inference_steps
                    if on_step is not None:
                        on_step(index + 1, total)
                    if should_stop is not None and should_stop():
                        stopped.append(index + 1)
                        current._interrupt = True
                    return tensors

                # Hires fix on SD keeps the first pass in latent space, A1111's "Latent" upscaler.
                latent_hires = engine_passes.hires_upscaler(self, request) == "Latent"
                with torch.inference_mode():
                    images = runner(
                        **prompt_inputs,
                        num_inference_steps=request.num_inference_steps,
                        guidance_scale=request.guidance_scale,
                        num_images_per_prompt=request.num_images,
                        generator=generators,
                        callback_on_step_end=step_end,
                        output_type="latent" if latent_hires else "pil",
                        **inputs,
                    ).images
                if stopped:
                    raise Canceled(f"Canceled after step {stopped[0]}.")
                if request.mask_image is not None:
                    images = [
                        engine_passes.keep_unmasked(image, request.init_image, request.mask_image) for image in images
                    ]
                # 6b. Hires fix and face detailing, each a second denoising pass.
                extras: list[dict[str, Any]] = [{} for _seed in seeds]
                details: list[tuple] = [() for _seed in seeds]
                if request.hires_fix:
                    images, hires_warnings = engine_passes.hires(
                        self, pipe, request, images, seeds, prompt_inputs, ip_embeds, extras, step_end
                    )
                    warnings += hires_warnings
                if request.inpaint_faces != "off":
                    images, detail_warnings = engine_passes.detail_faces(
                        self, pipe, request, images, seeds, extras, details, step_end
                    )
                    warnings += detail_warnings
                if stopped:
                    raise Canceled(f"Canceled after step {stopped[0]}.")
                # 7. Post-processing (an unavailable plug-in becomes a warning).
                images, post_warnings = self._postprocess(images, request)
                images = look.finish(images, seeds, color_grading=request.color_grading, film_grain=request.film_grain)
            except torch.OutOfMemoryError:
                self._out_of_memory(request)
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower():
                    raise
                self._out_of_memory(request)
        # 8. PNGs carrying their A1111 parameters (the negative prompt only where it was used).
        negative = request.negative_prompt if {"negative_prompt", "negative_prompt_embeds"} & set(prompt_inputs) else ""
        return self._encode(
            images, seeds, request, tuple(dict.fromkeys(warnings + post_warnings)), negative, extras, details
        )

    def detail_faces(self, request: GenerateRequest, image) -> GeneratedImage:
        """The face detailing pass alone on `image` (a PIL image, say an earlier result), with
        the request's identity or people, strength and face choice; `inpaint_faces` "off" counts
        as "on". The same pass `generate` runs after denoising."""
        import dataclasses

        if request.inpaint_faces == "off":
            request = dataclasses.replace(request, inpaint_faces="on")
        request = dataclasses.replace(request, width=image.width, height=image.height, num_images=1)
        check_request(request)
        with self.models.lock:
            pipe = self.load_model(request.model, request.family, single_file_config=request.single_file_config)
            extras: list[dict[str, Any]] = [{}]
            details: list[tuple] = [()]
            images, warnings = engine_passes.detail_faces(
                self, pipe, request, [image.convert("RGB")], [request.seed], extras, details
            )
        negative = request.negative_prompt if families.family(request.family).uses_negative_prompt else ""
        return self._encode(images, [request.seed], request, tuple(warnings), negative, extras, details)[0]

    def _prompt_inputs(self, runner, request: GenerateRequest) -> tuple[dict[str, Any], list[str]]:
        """The prompt arguments for `runner`, and a warning when it cannot use the negative
        prompt (distilled guidance, or no guidance at this scale)."""
        facts = families.family(request.family)
        if request.prompt_weights and request.family in prompt_weights.FAMILIES:
            inputs = prompt_weights.prompt_inputs(runner, request.family, request.prompt, request.negative_prompt)
            return inputs, []
        inputs: dict[str, Any] = {"prompt": request.prompt}
        weighted = request.prompt_weights and prompt_weights.has_weights(request.prompt)
        warnings = [f"Prompt weights were read as text: {facts.label} takes them as written."] if weighted else []
        if not request.negative_prompt:
            return inputs, warnings
        accepts = inspect.signature(type(runner).__call__).parameters
        if facts.uses_negative_prompt and "negative_prompt" in accepts:
            inputs["negative_prompt"] = request.negative_prompt
            return inputs, warnings
        true_cfg = request.guidance_scale > 1 and not getattr(runner.config, "is_distilled", False)
        if facts.uses_negative_prompt and "negative_prompt_embeds" in accepts and true_cfg:
            # The pipeline repeats the embeddings per image itself.
            inputs["negative_prompt_embeds"] = runner.encode_prompt(prompt=request.negative_prompt)[0]
            return inputs, warnings
        why = "it uses distilled guidance" if facts.guidance == "distilled" else "it runs without guidance here"
        return inputs, [*warnings, f"The negative prompt was not used: {facts.label} has no negative side ({why})."]

    def _out_of_memory(self, request: GenerateRequest) -> None:
        self.free_memory()
        raise OutOfMemory(
            f"The {self.device} ran out of memory making {request.num_images} image(s) of "
            f"{request.width}x{request.height}: lower num_images first, then w and h "
            "(or use a smaller base model)."
        )

    def _encode(
        self,
        images: list,
        seeds: list[int],
        request: GenerateRequest,
        warnings: tuple,
        negative: str,
        extras: list[dict[str, Any]] | None = None,
        details: list[tuple] | None = None,
    ) -> list:
        """PNGs with the A1111 parameters; `extras` are each image's own entries (the passes
        that ran on it), after the request's."""
        from PIL.PngImagePlugin import PngInfo

        extra: dict[str, Any] = {}
        if request.init_image is not None and "img2img" in families.family(request.family).pipelines:
            extra["Denoising strength"] = request.strength
        if request.mask_image is not None:
            extra["Inpaint"] = "mask"
        if request.controlnet is not None:
            extra["ControlNet"] = f"{Path(request.controlnet).name} {request.controlnet_conditioning_scale}"
        if request.distillation_lora:
            extra["Distillation LoRA"] = request.distillation_lora
        if request.reference_images:
            extra["Reference roles"] = ", ".join(role for role, _image in request.reference_images)
            extra["Reference instructions"] = reference_instructions([r for r, _i in request.reference_images])
        extra.update(look.parameters(request.color_grading, request.film_grain))
        model_name = request.model_name or request.model.rstrip("/").split("/")[-1]
        out = []
        extras = extras or [{} for _seed in seeds]
        details = details or [() for _seed in seeds]
        for image, seed, own, faces in zip(images, seeds, extras, details):
            text = format_parameters(
                request.parameters_prompt if request.parameters_prompt is not None else request.prompt,
                negative,
                steps=request.num_inference_steps,
                scheduler=request.scheduler,
                cfg_scale=request.guidance_scale,
                seed=seed,
                width=image.width,
                height=image.height,
                model=model_name,
                extra={**extra, **own},
            )
            info = PngInfo()
            info.add_text("parameters", text)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
            out.append(GeneratedImage(image, buffer.getvalue(), seed, text, warnings, faces))
        return out

    def _postprocess(self, images: list, request: GenerateRequest) -> tuple[list, list[str]]:
        context = PostContext(face_embedding=request.faceid_embedding, device=self.device)
        warnings = []
        for name in ("face_swap", "face_correct", "super_resolution"):
            if not getattr(request, name):
                continue
            plugin = self.postprocessors[name]
            missing = plugin.missing(context)
            if missing:
                warnings.append(f"{LABELS[name]} was skipped: {missing}.")
                continue
            images = [plugin.apply(image, context) for image in images]
        return images, warnings

    def new_scheduler(self, request: GenerateRequest):
        """A fresh scheduler of the request's name, for a second pass's pipeline."""
        return make_scheduler(request.scheduler, self.models.scheduler_config, request.family)

    def face_analyzer(self):
        """The studio's face backend (studio/faces.py), opened on first use."""
        if self._analyzer is None:
            from studio.faces import open_analyzer

            self._analyzer = open_analyzer(self.face_backend, self.insightface_root)
        return self._analyzer

    # -- IP-Adapter embeddings ---------------------------------------------------------------

    def _prepare_ip_adapters(self, pipe, request: GenerateRequest) -> list:
        """Load the IP-Adapters the request uses (FaceID first) and return their embeddings
        in the same order, shaped (2 = [negative, positive], 1, dim) under classifier-free
        guidance, else (1, 1, dim)."""
        import torch

        wanted = tuple(s for s in (request.faceid_adapter, request.style_adapter) if s is not None)
        if request.faceid_adapter is not None:
            # Checked before it is loaded, so a wrong file never touches the UNet.
            self._check_faceid(self.models.ip_state(request.faceid_adapter), request)
        self.models.use_ip_adapters(wanted)
        if not wanted:
            return []
        guided = request.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        embeds, scales = [], []
        if request.faceid_adapter is not None:
            face = torch.tensor([request.faceid_embedding], dtype=self.dtype, device=self.device)
            embeds.append(face)
            scales.append(request.faceid_scale)
        if request.style_adapter is not None:
            embeds.append(self._encode_style(request))
            scales.append(request.style_scale)
        pipe.set_ip_adapter_scale(scales)
        if guided:
            return [torch.cat([torch.zeros_like(e), e]).unsqueeze(1) for e in embeds]
        return [e.unsqueeze(1) for e in embeds]

    def _check_faceid(self, state: dict, request: GenerateRequest) -> None:
        projection = state["image_proj"]
        if "proj.0.weight" not in projection or "perceiver_resampler.proj_in.weight" in projection:
            raise InvalidInput(
                f"{Path(request.faceid_adapter).name} is not a plain IP-Adapter-FaceID file "
                "(FaceID Plus needs a face crop too and is not supported).",
                field="faceid_adapter",
            )
        expected = projection["proj.0.weight"].shape[1]
        if len(request.faceid_embedding) != expected:
            raise InvalidInput(
                f"The face embedding has {len(request.faceid_embedding)} values but the FaceID adapter "
                f"{Path(request.faceid_adapter).name} expects {expected}: make the FaceID tune with a face "
                f"backend that gives {expected}-d embeddings ({'insightface' if expected == 512 else 'dlib'}), "
                "or use a FaceID adapter made for this backend.",
                field="faceid_adapter",
            )

    def _encode_style(self, request: GenerateRequest):
        """The style image's CLIP image embedding, (1, dim), from the request's image encoder."""
        import torch

        encoder, processor = self.models.image_encoder(request.image_encoder)
        pixels = processor(images=request.style_image.convert("RGB"), return_tensors="pt").pixel_values
        with torch.inference_mode():
            return encoder(pixels.to(self.device, self.dtype)).image_embeds

    # -- pipeline variants: img2img, ControlNet ------------------------------------------------

    def _variant(self, pipe, request: GenerateRequest) -> tuple[Any, dict, list[str]]:
        """(pipeline to call, its image inputs, warnings) for the request's mode, with the
        pipeline classes of the request's family."""
        import diffusers

        facts = families.family(request.family)
        variant = "text2img"
        if request.mask_image is not None:
            variant = "inpaint"
        elif request.controlnet is not None:
            variant = "controlnet_img2img" if request.init_image is not None else "controlnet"
        elif request.init_image is not None:
            variant = "img2img" if "img2img" in facts.pipelines else "reference"
        elif request.reference_images:
            variant = "reference"
        runner_class = getattr(diffusers, facts.pipelines[variant])
        accepts = inspect.signature(runner_class.__call__).parameters
        size = (request.width, request.height)
        inputs: dict[str, Any] = {}
        warnings: list[str] = []
        if "width" in accepts:
            inputs.update(width=request.width, height=request.height)
        if request.reference_images:
            inputs["image"] = [fit_image(image, size) for _role, image in request.reference_images]
        if request.init_image is not None:
            inputs["image"] = fit_image(request.init_image, size)
            if variant == "reference":
                warnings.append(
                    f"{facts.label} has no strength img2img: the input image was the reference to edit, "
                    "and strength did not apply."
                )
            else:
                inputs["strength"] = request.strength
        if request.mask_image is not None:
            inputs["mask_image"] = engine_passes.fit_mask(request.mask_image, size)
        options: dict[str, Any] = {}
        if request.controlnet is not None:
            options["controlnet"] = self.models.controlnet(request.controlnet, request.family)
            control, warning = self.prepare_control_image(request.control_image, request.control_mode, size)
            warnings += [warning] if warning else []
            inputs["controlnet_conditioning_scale"] = float(request.controlnet_conditioning_scale)
            # SD's text-to-image ControlNet pipeline takes the map as `image`; the others as `control_image`.
            inputs["control_image" if "control_image" in accepts else "image"] = control
        runner = pipe if variant in ("text2img", "reference") else runner_class.from_pipe(pipe, **options)
        runner.set_progress_bar_config(disable=True)
        return runner, inputs, warnings

    def prepare_control_image(self, image, mode: str, size: tuple[int, int]):
        """(conditioning image of `size`, warning or None) for a pose avatar or input image."""
        image = fit_image(image, size)
        if mode == "image" or (mode == "auto" and looks_like_control_map(image)):
            return image, None
        if mode in ("auto", "openpose"):
            detector = self._openpose_detector()
            if detector is not None:
                return fit_image(detector(image), size), None
            if mode == "openpose":
                raise Unavailable("The OpenPose detector is not installed (controlnet_aux and its annotator weights).")
            return canny_edges(image), "The OpenPose detector is not installed; the pose used Canny edges instead."
        return canny_edges(image), None

    def _openpose_detector(self):
        """controlnet_aux's OpenPose detector when the package and its weights are installed
        (in `<postprocess_dir>/annotators`), else None. Never downloads."""
        if self._openpose is None:
            import importlib.util

            weights = self.postprocess_dir / "annotators" if self.postprocess_dir is not None else None
            if (
                importlib.util.find_spec("controlnet_aux") is None
                or weights is None
                or not (weights / "body_pose_model.pth").is_file()
            ):
                self._openpose = False
            else:
                from controlnet_aux import OpenposeDetector

                self._openpose = OpenposeDetector.from_pretrained(str(weights))
        return self._openpose or None


def looks_like_control_map(image) -> bool:
    """True for a ready conditioning map (an OpenPose skeleton or an edge image): mostly black."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    return float((pixels.max(axis=2) < 24).mean()) >= 0.6


def canny_edges(image, low: int = 100, high: int = 200):
    """OpenCV Canny edges of `image` as a white-on-black RGB image of the same size."""
    import cv2
    import numpy as np
    from PIL import Image

    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def random_seed() -> int:
    """A fresh seed in A1111's range (0 to 2**32 - 1)."""
    return random.SystemRandom().randrange(MAX_SEED + 1)
