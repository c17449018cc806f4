"""Model loading and the pipeline cache: the warm state an `Engine` generates with.

- `pick_device` chooses the device and dtype once: CUDA (bf16 where supported, else fp16),
  Apple MPS (fp16), else CPU (fp32).
- `ModelCache.load_model` keeps one base pipeline (of any family in studio/families.py) warm;
  it loads from a hub id (the hub cache first, then a download), a local diffusers folder, or a
  single `.safetensors` checkpoint; pickle checkpoints are refused. A request for another model
  replaces it. On CUDA, `cpu_offload` keeps each component on the GPU only while it runs, and
  `quantize` ("nf4", "int8") loads the denoiser quantized with bitsandbytes, for FLUX.1 [dev]
  on a 16–24 GB card.
- LoRAs are loaded once per file, as peft adapters, and combined per request with
  `set_adapters`; a request without LoRAs disables them. A file's family is read from its header
  before loading (studio/lora_formats.py), so a LoRA of another family is refused by name.
  Switching between loaded LoRAs reads nothing from disk; past `max_loras` the least recently
  used are deleted.
- IP-Adapter files (FaceID and plain/style) are read once into memory and the set in use is
  loaded into the UNet from there; CLIP image encoders and ControlNets are loaded once each.
- `check_safetensors` / `safetensors_header` read and check a weights file's header without
  loading it; `describe_unloadable_folder` says which file of a broken model folder is damaged.

Everything here takes explicit arguments and never reads the studio's settings. torch,
diffusers, transformers and huggingface_hub are imported inside functions.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from studio import families
from studio.errors import InvalidInput, NotFound, Unavailable
from studio.lora_formats import flux1_needs_conversion, flux1_state_dict, lora_family

log = logging.getLogger(__name__)

FAMILIES = tuple(families.FAMILIES)
QUANTIZE_MODES = ("nf4", "int8")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
FACEID_LORA = "faceid_0"  # the name diffusers gives an IP-Adapter-FaceID file's own LoRA
# Bytes per element of the safetensors dtypes (sub-byte ones, like F4, are not size-checked).
SAFETENSORS_DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 1),
    **dict.fromkeys(("U16", "I16", "F16", "BF16"), 2),
    **dict.fromkeys(("U32", "I32", "F32"), 4),
    **dict.fromkeys(("U64", "I64", "F64", "C64"), 8),
}


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


class ModelCache:
    """The warm base pipeline and the adapters, ControlNets and image encoders loaded for it,
    on one device. `lock` is re-entrant: the methods that change the pipeline hold it, and a
    generation holds it from loading to the last step, so no other request switches the
    model or the adapters under it."""

    def __init__(
        self, device: str, dtype: Any, *, max_loras: int = 16, cpu_offload: bool = False, quantize: str | None = None
    ):
        """Nothing is loaded until the first `load_model`. `device` and `dtype` as from
        `pick_device`; at most `max_loras` LoRA files stay loaded. `cpu_offload` and `quantize`
        as `memory_options` describes; quantize raises Unavailable without CUDA and
        bitsandbytes, InvalidInput for an unknown mode."""
        self.device, self.dtype = device, dtype
        self.max_loras = max_loras
        self.cpu_offload = bool(cpu_offload) and device == "cuda"
        self._offload_note = None
        if cpu_offload and not self.cpu_offload:
            self._offload_note = f"model CPU offload needs CUDA; on {device} the whole model stays where it runs"
            log.warning("cpu_offload is off: %s", self._offload_note)
        self.quantize = _check_quantize(quantize, device)
        self.lock = threading.RLock()
        self.scheduler_config: dict = {}  # the warm model's own, for per-request schedulers
        self._pipe = None
        self._model_key: tuple[str, str, str | None] | None = None
        self._own_image_encoder = None
        self._loras: OrderedDict[str, str] = OrderedDict()  # file path -> adapter name
        self._ip_states: dict[str, dict] = {}  # file path -> {"image_proj": …, "ip_adapter": …}
        self._ip_loaded: tuple[str, ...] = ()
        self._image_encoders: dict[str, tuple[Any, Any]] = {}
        self._controlnets: dict[str, Any] = {}

    @property
    def loaded_model(self) -> tuple[str, str] | None:
        """(model, family) of the warm pipeline, or None."""
        return self._model_key[:2] if self._model_key else None

    def memory_options(self) -> dict[str, Any]:
        """What is active to save device memory: {"device", "dtype", "cpu_offload" (bool),
        "quantize" (None, "nf4" or "int8"), "notes" (why an asked-for option is off)}."""
        return {
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "cpu_offload": self.cpu_offload,
            "quantize": self.quantize,
            "notes": [self._offload_note] if self._offload_note else [],
        }

    @property
    def loaded_loras(self) -> list[str]:
        """Paths of the LoRA files loaded as adapters, least recently used first."""
        return list(self._loras)

    # -- base model -------------------------------------------------------------------------

    def load_model(self, model: str, family: str = "sd15", *, single_file_config: str | None = None):
        """The warm pipeline for `model`, loading it (and dropping the previous one) if needed.
        Raises InvalidInput for a pickle or malformed file, NotFound for a missing path,
        Unavailable when a hub model is not downloaded and cannot be fetched."""
        with self.lock:
            local = Path(model).expanduser()
            # Local models are keyed by their real path, so a link to a loaded folder is no reload.
            key = (str(local.resolve()) if local.exists() else str(model), family, single_file_config)
            if self._model_key == key:
                return self._pipe
            kind = self._source_kind(str(model), family)
            self.unload()
            pipe = self._open_pipeline(str(model), family, kind, single_file_config)
            pipe.set_progress_bar_config(disable=True)
            self.scheduler_config = dict(pipe.scheduler.config)
            self._own_image_encoder = getattr(pipe, "image_encoder", None)
            self._pipe, self._model_key = pipe, key
            log.info("loaded %s (%s) on %s/%s", model, family, self.device, self.dtype)
            return pipe

    def unload(self) -> None:
        """Drop the pipeline and every cache tied to it, and free device memory."""
        with self.lock:
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
            declared_family = families.family_of_index(declared)
            if declared_family is None and declared.startswith("StableDiffusion"):
                declared_family = "sdxl" if "XL" in declared else "sd15"
            if declared_family is not None and declared_family != family:
                raise InvalidInput(f"{path.name} is a {declared}, not a {family} model.", field="family")
            return "folder"
        if model.count("/") != 1:
            raise NotFound(f"'{model}' is not a folder, a .safetensors file or a hub id (owner/name).", field="model")
        return "hub"

    def _open_pipeline(self, model: str, family: str, kind: str, config: str | None = None):
        import diffusers

        facts = families.family(family)
        text_to_image = getattr(diffusers, facts.pipelines["text2img"])
        options: dict[str, Any] = {"dtype": self.dtype}
        if family == "sd15":
            options.update(safety_checker=None, requires_safety_checker=False)
        if self.quantize is not None:
            if kind == "file":
                raise Unavailable("quantize works on diffusers folders and hub models, not single-file checkpoints.")
            options["quantization_config"] = _quantization_config(self.quantize, facts.denoiser, self.dtype)
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
        if self.cpu_offload:
            pipe.enable_model_cpu_offload()
            return pipe
        if self.quantize is not None:
            # A bitsandbytes-quantized module is placed on the GPU as it loads and cannot be moved.
            for name, module in pipe.components.items():
                if name != facts.denoiser and hasattr(module, "to"):
                    module.to(self.device)
            return pipe
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

    def free_memory(self) -> None:
        """Return cached device memory to the system (after an OOM or a model switch)."""
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    # -- LoRAs ------------------------------------------------------------------------------

    def adapter_names(self, pipe) -> set[str]:
        """Every adapter (LoRA) name loaded on `pipe`, in any of its modules."""
        names: set[str] = set()
        for adapters in pipe.get_list_adapters().values():
            names.update(adapters)
        return names

    def activate_loras(self, loras, *, faceid_lora: float | None = None) -> None:
        """Make exactly `loras` ((name, path, weight) triples) active on the warm pipeline,
        loading files not loaded yet, plus the FaceID LoRA at `faceid_lora` when given; with
        none, LoRAs are switched off. The same file twice adds its weights. Raises NotFound
        for a missing file and InvalidInput for one that is not a LoRA of this family."""
        with self.lock:
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
            elif self.adapter_names(pipe):
                pipe.disable_lora()
            self._evict_loras(keep=set(weights))

    def _load_lora(self, pipe, name: str, path: str) -> str:
        if path in self._loras:
            self._loras.move_to_end(path)
            return self._loras[path]
        # A hub file (a distillation LoRA) comes from the hub cache, fetched there once.
        file = _local_file(path, field_name="loras") if path.startswith("hf://") else Path(path)
        if not file.is_file():
            # No path in the message: prompts show it to API clients; the log has the path.
            log.warning("LoRA %r: %s is missing", name, path)
            raise NotFound(f"LoRA '{name}' has no file on the server; upload it again.", field="loras")
        # The header check catches a file cut short or garbled since it was uploaded.
        header = check_safetensors(file, field_name="loras", label=f"LoRA '{name}'")
        base = self._model_key[1] if self._model_key else "sd15"
        made_for = lora_family(header)
        if made_for is not None and made_for != base:
            label, base_label = families.family(made_for).label, families.family(base).label
            raise InvalidInput(
                f"LoRA '{name}' is for {label} but this base model is {base_label}; use a LoRA made for {base_label}.",
                field="loras",
            )
        adapter = "lora_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        try:
            with _quiet_adapter_loading():
                pipe.load_lora_weights(self._lora_source(pipe, base, str(file), header), adapter_name=adapter)
        except OSError:
            # A header whose tensors disagree with their bytes (diffusers' text names server paths).
            self._drop_adapter(pipe, adapter)
            raise InvalidInput(
                f"LoRA '{name}' is damaged: its tensors do not match its header; upload it again.", field="loras"
            ) from None
        except (ValueError, RuntimeError, KeyError, IndexError, AssertionError) as exc:
            self._drop_adapter(pipe, adapter)
            raise InvalidInput(
                f"LoRA '{name}' does not fit this base model ({type(exc).__name__}: {str(exc)[:200]}); "
                f"check that it was made for {families.family(base).label}.",
                field="loras",
            ) from None
        if adapter not in self.adapter_names(pipe):
            # diffusers skips keys that match no module with only a log line: say it here.
            raise InvalidInput(
                f"LoRA '{name}' has no weights this {families.family(base).label} model can use "
                "(none of its keys name a module of it).",
                field="loras",
            )
        self._loras[path] = adapter
        return adapter

    def _lora_source(self, pipe, family: str, path: str, header: dict):
        """What `load_lora_weights` takes for the file: its path, or for a FLUX.1 file in kohya
        or BFL naming its tensors in a layout diffusers converts for this model's sizes (see
        lora_formats)."""
        if family != "flux1" or not flux1_needs_conversion(k for k in header if k != "__metadata__"):
            return path
        from safetensors.torch import load_file

        return flux1_state_dict(load_file(path), pipe.transformer)

    def _drop_adapter(self, pipe, adapter: str) -> None:
        """Remove what a failed load of `adapter` left on the pipeline."""
        if adapter in self.adapter_names(pipe):
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

    def ip_state(self, source: str) -> dict:
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

    def use_ip_adapters(self, sources: tuple[str, ...]) -> None:
        """Make exactly the IP-Adapter files `sources` (in that order; FaceID first) the ones
        loaded into the warm pipeline's UNet, from the states `ip_state` keeps in memory; with
        none, unload them. Loading a FaceID file also loads its LoRA (FACEID_LORA), so LoRA
        weights must be set after this."""
        with self.lock:
            pipe = self._pipe
            if sources == self._ip_loaded:
                return
            states = [self.ip_state(s) for s in sources]
            with _quiet_adapter_loading():
                if self._ip_loaded:
                    pipe.unload_ip_adapter()
                    if FACEID_LORA in self.adapter_names(pipe):
                        pipe.delete_adapters(FACEID_LORA)
                    self._ip_loaded = ()
                if sources:
                    pipe.load_ip_adapter(
                        states,
                        subfolder=[""] * len(states),
                        weight_name=["memory"] * len(states),
                        image_encoder_folder=None,
                    )
                    self._ip_loaded = sources

    def image_encoder(self, source: str | None) -> tuple[Any, Any]:
        """(CLIP image encoder, its processor) from the folder `source`, or the base model's own
        for None; loaded once each. Raises Unavailable when the base model has none."""
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

    # -- ControlNets ---------------------------------------------------------------------------

    def controlnet(self, source: str, family: str = "sd15"):
        """The ControlNet of `family` in the diffusers folder `source`, loaded once. Raises
        InvalidInput when the folder is not one."""
        if source not in self._controlnets:
            import diffusers

            controlnet_class = getattr(diffusers, families.CONTROLNET_CLASSES[family])
            folder = _local_folder(source, field_name="controlnet")
            try:
                model = controlnet_class.from_pretrained(folder, dtype=self.dtype, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InvalidInput(
                    f"{source} is not a diffusers {controlnet_class.__name__} folder ({exc}).", field="controlnet"
                ) from None
            self._controlnets[source] = model.to(self.device)
        return self._controlnets[source]


def _check_quantize(mode: str | None, device: str) -> str | None:
    """`mode` when the quantized loading it names can run here."""
    import importlib.util

    if mode in (None, ""):
        return None
    if mode not in QUANTIZE_MODES:
        raise InvalidInput(f"quantize '{mode}' is not one of {', '.join(QUANTIZE_MODES)}.", field="quantize")
    if device != "cuda":
        raise Unavailable(f"quantize={mode} needs a CUDA GPU (bitsandbytes); this engine runs on {device}.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise Unavailable(f"quantize={mode} needs the bitsandbytes package: pip install bitsandbytes.")
    return mode


def _quantization_config(mode: str, denoiser: str, dtype: Any):
    """diffusers' pipeline quantization config loading only the denoiser (the UNet or the
    transformer, most of a FLUX model's size) in 4-bit NF4 or 8-bit."""
    from diffusers import BitsAndBytesConfig, PipelineQuantizationConfig

    if mode == "nf4":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return PipelineQuantizationConfig(quant_mapping={denoiser: config})


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
