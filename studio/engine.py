"""Engine: a warm diffusers pipeline and `generate()` with LoRAs, IP-Adapters and ControlNet.

The engine takes explicit arguments (a `GenerateRequest`) and never reads the studio's settings
or database, so a job worker in another process can run it as well. One engine owns one device:

- The base pipeline (SD 1.5 or SDXL; a hub id, a local diffusers folder or a single
  `.safetensors` checkpoint) stays loaded; a request for another model replaces it.
- LoRAs are loaded once per file, as peft adapters, and combined per request with
  `set_adapters`; a request without LoRAs disables them. Switching between loaded LoRAs reads
  nothing from disk.
- IP-Adapter files (FaceID and plain/style) are read once into memory; the set a request needs
  is loaded into the UNet from memory, with per-adapter scales. A FaceID file's own LoRA
  (diffusers names it `faceid_0`) is weighted with the FaceID scale, so weight 0 is the base.
- ControlNets are loaded once per folder; the pipeline variant a request needs (img2img,
  ControlNet, both) is derived from the base with `from_pipe`, sharing its modules.

`generate` runs one request at a time (a lock); progress and cancel are plain callables.
Heavy imports happen inside functions.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import math
import random
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import Canceled, InvalidInput, NotFound, OutOfMemory, Unavailable
from studio.postprocess import LABELS, PostContext, open_postprocessors
from studio.prompts import MAX_SEED, SCHEDULERS, format_parameters

log = logging.getLogger(__name__)

FAMILIES = ("sd15", "sdxl")
CONTROL_MODES = ("auto", "image", "canny", "openpose")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
MAX_IMAGES, MAX_STEPS, MIN_SIDE, MAX_SIDE = 8, 150, 16, 4096
FACEID_LORA = "faceid_0"
# Bytes per element of the safetensors dtypes (sub-byte ones, like F4, are not size-checked).
SAFETENSORS_DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 1),
    **dict.fromkeys(("U16", "I16", "F16", "BF16"), 2),
    **dict.fromkeys(("U32", "I32", "F32"), 4),
    **dict.fromkeys(("U64", "I64", "F64", "C64"), 8),
}

StepCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class GenerateRequest:
    """Everything one generation needs, in diffusers' argument names.

    `model` is a hub id, a local diffusers folder or a single `.safetensors` checkpoint of the
    `family` ("sd15" or "sdxl"). `seed` is the first image's seed; image i uses seed + i.
    `loras` are (name, .safetensors path, weight) triples. FaceID: `faceid_embedding` (the
    face backend's unit-norm vector) with `faceid_adapter` (an IP-Adapter-FaceID file) at
    `faceid_scale`. Style: `style_image` (PIL) with `style_adapter` (a plain IP-Adapter file)
    at `style_scale`, encoded by the CLIP image encoder in the folder `image_encoder` (None: the
    base model's own). ControlNet: `control_image` with the ControlNet folder `controlnet`;
    `control_mode` says how to turn the image into a conditioning map: "image" uses it as it
    is, "canny" takes OpenCV Canny edges, "openpose" runs the OpenPose detector, "auto" uses a
    ready map (mostly black: a skeleton or edges) as it is and otherwise prefers OpenPose,
    then Canny. img2img: `init_image` with `strength` (1.0 keeps nothing of it). Adapter and
    model paths may also be `hf://owner/repo/path/in/repo`. `parameters_prompt` is the prompt
    as the person wrote it (tokens included) for the PNG's parameters; default `prompt`.
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
    super_resolution: bool = False
    face_correct: bool = False
    face_swap: bool = False
    model_name: str = ""
    parameters_prompt: str | None = None
    single_file_config: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """One output: the RGB PIL `image`, its `png` bytes carrying A1111 `parameters` text (also
    in `parameters`), the `seed` that reproduces it, and `warnings` (post-processing skipped,
    pose detector missing…), the same for every image of a request."""

    image: Any
    png: bytes
    seed: int
    parameters: str
    warnings: tuple[str, ...] = ()


def check_request(request: GenerateRequest) -> None:
    """Validate every field up front; raise InvalidInput naming the field."""

    def fail(name: str, message: str) -> None:
        raise InvalidInput(f"{name}: {message}", field=name)

    if request.family not in FAMILIES:
        fail("family", f"'{request.family}' is not one of {', '.join(FAMILIES)}.")
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
        if not MIN_SIDE <= value <= MAX_SIDE or value % 8:
            fail(name, f"{value} must be a multiple of 8 from {MIN_SIDE} to {MAX_SIDE}.")
    if request.scheduler not in SCHEDULERS:
        fail("scheduler", f"'{request.scheduler}' is not one of {', '.join(SCHEDULERS)}.")
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
    if request.init_image is not None:
        if not 0 < request.strength <= 1:
            fail("strength", f"{request.strength} is out of range; use more than 0, up to 1.")
        if int(request.num_inference_steps * request.strength) < 1:
            fail("strength", "strength × steps is less than one step; raise either.")


def pick_device(choice: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 where supported else fp16, Apple MPS with fp16, else CPU
    with fp32. `choice` may force "cpu", "cuda" or "mps"; an unavailable one raises Unavailable."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if choice == "auto":
        choice = "cuda" if cuda else "mps" if mps else "cpu"
    if choice == "cuda":
        if not cuda:
            raise Unavailable("STUDIO_DEVICE=cuda but no CUDA device is visible to torch.")
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if choice == "mps":
        if not mps:
            raise Unavailable("STUDIO_DEVICE=mps but Apple's MPS backend is not available.")
        return "mps", torch.float16
    if choice != "cpu":
        raise InvalidInput(f"device '{choice}' is not one of auto, cpu, cuda, mps.", field="device")
    return "cpu", torch.float32


def make_scheduler(name: str, config: dict):
    """The diffusers scheduler for an Astria scheduler name, built from the model's own
    scheduler config. 'dpm++sde' is DPM-Solver++ in its SDE form (no torchsde needed)."""
    import diffusers

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


def check_safetensors(path: Path, *, field_name: str = "model", label: str | None = None) -> dict:
    """Read and check a `.safetensors` file's header; return it. Pickle formats are refused:
    loading them can run code. Raises InvalidInput naming `field_name`, its message calling
    the file `label` (default: its name)."""
    path = Path(path)
    label = label or path.name
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InvalidInput(
            f"{path.name} is a pickle checkpoint, which can run code when loaded; "
            "convert it to .safetensors (or download the .safetensors version).",
            field=field_name,
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else 0
            return safetensors_header(head + handle.read(min(size, 100_000_000)), path.stat().st_size, label)
    except ValueError as exc:
        raise InvalidInput(f"{exc}: use a valid .safetensors file.", field=field_name) from None
    except OSError as exc:
        raise InvalidInput(f"{label} cannot be read ({exc.strerror or exc}).", field=field_name) from None


def safetensors_header(data: bytes, total_size: int | None = None, label: str = "the file") -> dict:
    """The JSON header at the start of safetensors bytes (8-byte little-endian length, then
    JSON naming each tensor's dtype, shape and byte range). `data` needs only the header part
    when `total_size` (the file's size) is given. Raises ValueError when it is not one."""
    total_size = len(data) if total_size is None else total_size
    if len(data) < 10:
        raise ValueError(f"{label} is too short to be a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if not 2 <= size <= 100_000_000 or size + 8 > total_size or len(data) < size + 8:
        raise ValueError(f"{label} has no safetensors header")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{label} has a damaged safetensors header") from None
    if not isinstance(header, dict) or data[8:9] != b"{":
        raise ValueError(f"{label} has a damaged safetensors header")
    body = total_size - 8 - size
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
            raise ValueError(f"{label}: tensor {key!r} has no data offsets")
        shape, dtype = info.get("shape"), info.get("dtype")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ValueError(f"{label}: tensor {key!r} has no valid shape and dtype")
        if not isinstance(dtype, str):
            raise ValueError(f"{label}: tensor {key!r} has no valid shape and dtype")
        start, end = offsets
        if not 0 <= start <= end <= body:
            raise ValueError(f"{label}: tensor {key!r} points outside the file")
        # A dtype or shape edited after saving no longer matches the bytes the tensor spans.
        if dtype in SAFETENSORS_DTYPE_BYTES and end - start != math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]:
            raise ValueError(f"{label}: tensor {key!r} does not match its shape and dtype")
    return header


class Engine:
    def __init__(
        self,
        device: str = "auto",
        *,
        postprocess_dir: Path | None = None,
        insightface_root: Path | None = None,
        max_loras: int = 16,
    ):
        """Choose the device and dtype once. Nothing is loaded until the first request.
        `postprocess_dir` holds the post-processing plug-ins' weights (see postprocess.py)."""
        self.device, self.dtype = pick_device(device)
        self.max_loras = max_loras
        self.postprocess_dir = Path(postprocess_dir) if postprocess_dir is not None else None
        self.postprocessors = open_postprocessors(postprocess_dir, insightface_root=insightface_root)
        self._lock = threading.RLock()
        self._pipe = None
        self._model_key: tuple[str, str, str | None] | None = None
        self._scheduler_config: dict = {}
        self._own_image_encoder = None
        self._loras: OrderedDict[str, str] = OrderedDict()  # file path -> adapter name
        self._ip_states: dict[str, dict] = {}  # file path -> {"image_proj": …, "ip_adapter": …}
        self._ip_loaded: tuple[str, ...] = ()
        self._image_encoders: dict[str, tuple[Any, Any]] = {}
        self._controlnets: dict[str, Any] = {}
        self._openpose = None

    @property
    def loaded_model(self) -> tuple[str, str] | None:
        """(model, family) of the warm pipeline, or None."""
        return self._model_key[:2] if self._model_key else None

    @property
    def loaded_loras(self) -> list[str]:
        """Paths of the LoRA files loaded as adapters, least recently used first."""
        return list(self._loras)

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
        with self._lock:
            try:
                # 2. The base pipeline, warm unless the model changed.
                pipe = self.load_model(request.model, request.family, single_file_config=request.single_file_config)
                # 3. IP-Adapters (FaceID first, then style) and their image embeddings; this may
                #    (re)load the FaceID LoRA, so LoRA weights are set after it.
                ip_embeds = self._prepare_ip_adapters(pipe, request)
                # 4. LoRAs for this request, plus the FaceID LoRA at the FaceID scale.
                faceid_lora = request.faceid_scale if FACEID_LORA in self._adapter_names(pipe) else None
                self.activate_loras(request.loras, faceid_lora=faceid_lora)
                # 5. The pipeline variant and its inputs.
                runner, inputs, warnings = self._variant(pipe, request)
                runner.scheduler = make_scheduler(request.scheduler, self._scheduler_config)
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

                with torch.inference_mode():
                    images = runner(
                        prompt=request.prompt,
                        negative_prompt=request.negative_prompt or None,
                        num_inference_steps=request.num_inference_steps,
                        guidance_scale=request.guidance_scale,
                        num_images_per_prompt=request.num_images,
                        generator=generators,
                        callback_on_step_end=step_end,
                        output_type="pil",
                        **inputs,
                    ).images
                if stopped:
                    raise Canceled(f"Canceled after step {stopped[0]}.")
                # 7. Post-processing (an unavailable plug-in becomes a warning).
                images, post_warnings = self._postprocess(images, request)
            except torch.OutOfMemoryError:
                self._out_of_memory(request)
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower():
                    raise
                self._out_of_memory(request)
        # 8. PNGs carrying their A1111 parameters.
        return self._encode(images, seeds, request, tuple(warnings + post_warnings))

    def _out_of_memory(self, request: GenerateRequest) -> None:
        self.free_memory()
        raise OutOfMemory(
            f"The {self.device} ran out of memory making {request.num_images} image(s) of "
            f"{request.width}x{request.height}: lower num_images first, then w and h "
            "(or use a smaller base model)."
        )

    def free_memory(self) -> None:
        """Return cached device memory to the system (after an OOM or a model switch)."""
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    def _encode(self, images: list, seeds: list[int], request: GenerateRequest, warnings: tuple) -> list:
        from PIL.PngImagePlugin import PngInfo

        extra: dict[str, Any] = {}
        if request.init_image is not None:
            extra["Denoising strength"] = request.strength
        if request.controlnet is not None:
            extra["ControlNet"] = f"{Path(request.controlnet).name} {request.controlnet_conditioning_scale}"
        model_name = request.model_name or request.model.rstrip("/").split("/")[-1]
        out = []
        for image, seed in zip(images, seeds):
            text = format_parameters(
                request.parameters_prompt if request.parameters_prompt is not None else request.prompt,
                request.negative_prompt,
                steps=request.num_inference_steps,
                scheduler=request.scheduler,
                cfg_scale=request.guidance_scale,
                seed=seed,
                width=image.width,
                height=image.height,
                model=model_name,
                extra=extra,
            )
            info = PngInfo()
            info.add_text("parameters", text)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
            out.append(GeneratedImage(image, buffer.getvalue(), seed, text, warnings))
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

    # -- base model -------------------------------------------------------------------------

    def load_model(self, model: str, family: str = "sd15", *, single_file_config: str | None = None):
        """The warm pipeline for `model`, loading it (and dropping the previous one) if needed.
        Raises InvalidInput for a pickle or malformed file, NotFound for a missing path,
        Unavailable when a hub model is not downloaded and cannot be fetched."""
        with self._lock:
            local = Path(model).expanduser()
            # Local models are keyed by their real path, so a link to a loaded folder is no reload.
            key = (str(local.resolve()) if local.exists() else str(model), family, single_file_config)
            if self._model_key == key:
                return self._pipe
            kind = self._source_kind(str(model), family)
            self.unload()
            pipe = self._open_pipeline(str(model), family, kind, single_file_config)
            pipe.set_progress_bar_config(disable=True)
            self._scheduler_config = dict(pipe.scheduler.config)
            self._own_image_encoder = getattr(pipe, "image_encoder", None)
            self._pipe, self._model_key = pipe, key
            log.info("loaded %s (%s) on %s/%s", model, family, self.device, self.dtype)
            return pipe

    def unload(self) -> None:
        """Drop the pipeline and every cache tied to it, and free device memory."""
        with self._lock:
            self._pipe = None
            self._model_key = None
            self._own_image_encoder = None
            self._loras.clear()
            self._ip_loaded = ()
            self._image_encoders.clear()
            self._controlnets.clear()
            self.free_memory()

    def _source_kind(self, model: str, family: str) -> str:
        """ "file", "folder" or "hub" for a model source, after the checks that need no loading
        (so a bad source never unloads the warm model)."""
        if family not in FAMILIES:
            raise InvalidInput(f"family '{family}' is not one of {', '.join(FAMILIES)}.", field="family")
        path = Path(model).expanduser()
        if path.suffix.lower() in (*PICKLE_SUFFIXES, ".safetensors") or path.is_file():
            if not path.is_file():
                raise NotFound(f"The checkpoint {path} does not exist.", field="model")
            check_safetensors(path)
            return "file"
        if path.is_dir():
            index = path / "model_index.json"
            if not index.is_file():
                raise InvalidInput(f"{path} is not a diffusers model folder (no model_index.json).", field="model")
            try:
                declared = json.loads(index.read_text()).get("_class_name", "")
            except (ValueError, AttributeError):
                raise Unavailable(describe_unloadable_folder(path)) from None
            if ("XL" in declared) != (family == "sdxl"):
                raise InvalidInput(f"{path.name} is a {declared}, not a {family} model.", field="family")
            return "folder"
        if model.count("/") != 1:
            raise NotFound(f"'{model}' is not a folder, a .safetensors file or a hub id (owner/name).", field="model")
        return "hub"

    def _open_pipeline(self, model: str, family: str, kind: str, config: str | None = None):
        import diffusers

        text_to_image = diffusers.StableDiffusionPipeline if family == "sd15" else diffusers.StableDiffusionXLPipeline
        options: dict[str, Any] = {"dtype": self.dtype}
        if family == "sd15":
            options.update(safety_checker=None, requires_safety_checker=False)
        if kind == "file":
            from diffusers.loaders.single_file_utils import SingleFileComponentError

            try:
                # Single files carry no image encoder; IP-Adapters bring their own.
                pipe = text_to_image.from_single_file(
                    str(Path(model).expanduser()), config=config, image_encoder=None, **options
                )
            except (OSError, ValueError, SingleFileComponentError) as exc:
                raise Unavailable(
                    f"Could not load the checkpoint {Path(model).name} as {family}: {exc}. Single files need "
                    "their family's configs from the hub once; check the family or use a diffusers folder."
                ) from None
        elif kind == "folder":
            from safetensors import SafetensorError

            folder = Path(model).expanduser()
            try:
                pipe = text_to_image.from_pretrained(str(folder), local_files_only=True, **options)
            except (OSError, ValueError, SafetensorError) as exc:
                log.error("the model folder %s did not load: %s", folder, exc)
                raise Unavailable(describe_unloadable_folder(folder)) from None
        else:
            pipe = self._from_hub(text_to_image, model, options)
        return pipe.to(self.device)

    def _from_hub(self, pipeline_class, model: str, options: dict):
        """Load a hub model from the local cache, downloading it when it is not there."""
        from huggingface_hub import constants

        try:
            return pipeline_class.from_pretrained(model, local_files_only=True, **options)
        except (OSError, ValueError):
            pass
        if constants.HF_HUB_OFFLINE:
            raise Unavailable(
                f"{model} is not downloaded and the hub is switched off (HF_HUB_OFFLINE): "
                "download it on a connected machine, or use the demo model."
            )
        log.info("downloading %s from the hub", model)
        try:
            return pipeline_class.from_pretrained(model, **options)
        except Exception as exc:  # the hub client raises many types; all mean "not reachable"
            raise Unavailable(f"{model} could not be downloaded: {exc}") from None

    # -- LoRAs ------------------------------------------------------------------------------

    def _adapter_names(self, pipe) -> set[str]:
        names: set[str] = set()
        for adapters in pipe.get_list_adapters().values():
            names.update(adapters)
        return names

    def activate_loras(self, loras, *, faceid_lora: float | None = None) -> None:
        """Make exactly `loras` ((name, path, weight) triples) active on the warm pipeline,
        loading files not loaded yet, plus the FaceID LoRA at `faceid_lora` when given; with
        none, LoRAs are switched off. The same file twice adds its weights. Raises NotFound
        for a missing file and InvalidInput for one that is not a LoRA of this family."""
        with self._lock:
            pipe = self._pipe
            weights: dict[str, float] = {}
            for name, path, weight in loras:
                adapter = self._load_lora(pipe, name, str(path))
                weights[adapter] = weights.get(adapter, 0.0) + float(weight)
            if faceid_lora is not None:
                weights[FACEID_LORA] = faceid_lora
            if weights:
                pipe.enable_lora()
                pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
            elif self._adapter_names(pipe):
                pipe.disable_lora()
            self._evict_loras(keep=set(weights))

    def _load_lora(self, pipe, name: str, path: str) -> str:
        if path in self._loras:
            self._loras.move_to_end(path)
            return self._loras[path]
        file = Path(path)
        if not file.is_file():
            # No path in the message: prompts show it to API clients; the log has the path.
            log.warning("LoRA %r: %s is missing", name, path)
            raise NotFound(f"LoRA '{name}' has no file on the server; upload it again.", field="loras")
        # The header check catches a file cut short or garbled since it was uploaded.
        check_safetensors(file, field_name="loras", label=f"LoRA '{name}'")
        adapter = "lora_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        try:
            with _quiet_adapter_loading():
                pipe.load_lora_weights(path, adapter_name=adapter)
        except OSError:
            # A header whose tensors disagree with their bytes (diffusers' text names server paths).
            self._drop_adapter(pipe, adapter)
            raise InvalidInput(
                f"LoRA '{name}' is damaged: its tensors do not match its header; upload it again.", field="loras"
            ) from None
        except (ValueError, RuntimeError, KeyError) as exc:
            self._drop_adapter(pipe, adapter)
            raise InvalidInput(
                f"LoRA '{name}' does not fit this base model ({type(exc).__name__}: {str(exc)[:200]}); "
                "check that it was made for the same family (SD 1.5 or SDXL).",
                field="loras",
            ) from None
        self._loras[path] = adapter
        return adapter

    def _drop_adapter(self, pipe, adapter: str) -> None:
        """Remove what a failed load of `adapter` left on the pipeline."""
        if adapter in self._adapter_names(pipe):
            with _quiet_adapter_loading():
                pipe.delete_adapters(adapter)

    def _evict_loras(self, keep: set[str]) -> None:
        while len(self._loras) > self.max_loras:
            path, adapter = next(iter(self._loras.items()))
            if adapter in keep:
                break
            with _quiet_adapter_loading():
                self._pipe.delete_adapters(adapter)
            del self._loras[path]

    # -- IP-Adapters --------------------------------------------------------------------------

    def _ip_state(self, source: str) -> dict:
        """An IP-Adapter file's weights, read from disk once and kept in memory."""
        if source not in self._ip_states:
            path = _local_file(source, field_name="adapter")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                check_safetensors(path, field_name="adapter")
                state: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
                for key, tensor in load_file(str(path)).items():
                    group, _, rest = key.partition(".")
                    if group in state:
                        state[group][rest] = tensor
            else:
                import torch

                state = torch.load(path, map_location="cpu", weights_only=True)
            if not state.get("image_proj") or not state.get("ip_adapter"):
                raise InvalidInput(
                    f"{path.name} is not an IP-Adapter (no image_proj/ip_adapter weights).", field="adapter"
                )
            self._ip_states[source] = state
        return self._ip_states[source]

    def _prepare_ip_adapters(self, pipe, request: GenerateRequest) -> list:
        """Load the IP-Adapters the request uses (FaceID first) and return their embeddings
        in the same order, shaped (2 = [negative, positive], 1, dim) under classifier-free
        guidance, else (1, 1, dim)."""
        import torch

        wanted = [s for s in (request.faceid_adapter, request.style_adapter) if s is not None]
        states = [self._ip_state(s) for s in wanted]
        if request.faceid_adapter is not None:
            self._check_faceid(states[0], request)
        if tuple(wanted) != self._ip_loaded:
            with _quiet_adapter_loading():
                if self._ip_loaded:
                    pipe.unload_ip_adapter()
                    if FACEID_LORA in self._adapter_names(pipe):
                        pipe.delete_adapters(FACEID_LORA)
                    self._ip_loaded = ()
                if wanted:
                    pipe.load_ip_adapter(
                        states,
                        subfolder=[""] * len(states),
                        weight_name=["memory"] * len(states),
                        image_encoder_folder=None,
                    )
                    self._ip_loaded = tuple(wanted)
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

        encoder, processor = self._image_encoder(request.image_encoder)
        pixels = processor(images=request.style_image.convert("RGB"), return_tensors="pt").pixel_values
        with torch.inference_mode():
            return encoder(pixels.to(self.device, self.dtype)).image_embeds

    def _image_encoder(self, source: str | None):
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        key = source or ""
        if key not in self._image_encoders:
            if source is None:
                if self._own_image_encoder is None:
                    raise Unavailable(
                        "This base model has no CLIP image encoder for the style adapter; "
                        "give the IP-Adapter's image_encoder folder.",
                    )
                encoder = self._own_image_encoder
            else:
                folder = _local_folder(source, field_name="image_encoder")
                encoder = CLIPVisionModelWithProjection.from_pretrained(folder, dtype=self.dtype).to(self.device)
            size = encoder.config.image_size
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
            self._image_encoders[key] = (encoder, processor)
        return self._image_encoders[key]

    # -- pipeline variants: img2img, ControlNet ------------------------------------------------

    def _variant(self, pipe, request: GenerateRequest) -> tuple[Any, dict, list[str]]:
        """(pipeline to call, its image inputs, warnings) for the request's mode."""
        import diffusers

        xl = "XL" if request.family == "sdxl" else ""
        inputs: dict[str, Any] = {}
        warnings: list[str] = []
        size = (request.width, request.height)
        if request.controlnet is not None:
            controlnet = self._controlnet(request.controlnet)
            control, warning = self.prepare_control_image(request.control_image, request.control_mode, size)
            warnings += [warning] if warning else []
            inputs["controlnet_conditioning_scale"] = float(request.controlnet_conditioning_scale)
            if request.init_image is not None:
                cls = getattr(diffusers, f"StableDiffusion{xl}ControlNetImg2ImgPipeline")
                inputs.update(
                    image=fit_image(request.init_image, size), control_image=control, strength=request.strength
                )
            else:
                cls = getattr(diffusers, f"StableDiffusion{xl}ControlNetPipeline")
                inputs.update(image=control, width=request.width, height=request.height)
            runner = cls.from_pipe(pipe, controlnet=controlnet)
        elif request.init_image is not None:
            runner = getattr(diffusers, f"StableDiffusion{xl}Img2ImgPipeline").from_pipe(pipe)
            inputs.update(image=fit_image(request.init_image, size), strength=request.strength)
        else:
            runner = pipe
            inputs.update(width=request.width, height=request.height)
        runner.set_progress_bar_config(disable=True)
        return runner, inputs, warnings

    def _controlnet(self, source: str):
        if source not in self._controlnets:
            from diffusers import ControlNetModel

            folder = _local_folder(source, field_name="controlnet")
            try:
                model = ControlNetModel.from_pretrained(folder, dtype=self.dtype, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InvalidInput(
                    f"{source} is not a diffusers ControlNet folder ({exc}).", field="controlnet"
                ) from None
            self._controlnets[source] = model.to(self.device)
        return self._controlnets[source]

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


@contextmanager
def _quiet_adapter_loading():
    """Silence the notices that loading and deleting adapters always print and that mean
    nothing here: peft's "Already found a peft_config" / "Adapter … was active which is now
    deleted", diffusers' "No LoRA keys associated to CLIPTextModel" for UNet-only LoRAs, and
    transformers' load report listing the text encoder's base weights as missing (they are
    not: only the LoRA weights are loaded into it)."""
    loggers = [logging.getLogger(n) for n in ("transformers.utils.loading_report", "diffusers.loaders.lora_base")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\.")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def fit_image(image, size: tuple[int, int]):
    """`image` as RGB, centre-cropped to the aspect of `size` and resized to it (Lanczos)."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)


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


def describe_unloadable_folder(folder: Path) -> str:
    """What to tell a person when a diffusers folder does not load: the weights files a header
    check finds damaged, named by their place in the folder (the full error goes to the log:
    it names server paths)."""
    damaged = []
    for file in sorted(folder.rglob("*.safetensors")):
        try:
            check_safetensors(file)
        except InvalidInput:
            damaged.append(file.relative_to(folder).as_posix())
    if damaged:
        what = f"{', '.join(damaged)} {'is' if len(damaged) == 1 else 'are'} damaged or cut short"
    else:
        what = "a file in it is missing or damaged"
    return (
        f"The base model '{folder.name}' could not be loaded: {what}. Download it again "
        "(the embedded demo model is built again when its folder is deleted)."
    )


def _local_file(source: str, *, field_name: str) -> Path:
    """A local path for a file source: a path, or `hf://owner/repo/path/in/repo` from the
    hub cache (downloaded if the hub is reachable)."""
    if source.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        owner, repo, *rest = source[len("hf://") :].split("/")
        try:
            return Path(hf_hub_download(f"{owner}/{repo}", "/".join(rest)))
        except Exception as exc:  # offline, missing, auth: all mean "not available here"
            raise Unavailable(f"{source} is not downloaded and could not be fetched: {exc}") from None
    path = Path(source)
    if not path.is_file():
        raise NotFound(f"{source} does not exist.", field=field_name)
    return path


def _local_folder(source: str, *, field_name: str) -> str:
    """A local folder for a folder source: a path, or `hf://owner/repo/subfolder` snapshot."""
    if source.startswith("hf://"):
        from huggingface_hub import snapshot_download

        owner, repo, *rest = source[len("hf://") :].split("/")
        sub = "/".join(rest)
        try:
            root = snapshot_download(f"{owner}/{repo}", allow_patterns=[f"{sub}/*"] if sub else None)
        except Exception as exc:  # offline, missing, auth: all mean "not available here"
            raise Unavailable(f"{source} is not downloaded and could not be fetched: {exc}") from None
        return str(Path(root) / sub)
    if not Path(source).is_dir():
        raise NotFound(f"{source} does not exist.", field=field_name)
    return source


def random_seed() -> int:
    """A fresh seed in A1111's range (0 to 2**32 - 1)."""
    return random.SystemRandom().randrange(MAX_SEED + 1)
