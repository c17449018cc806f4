"""LoRA training with peft: the torch flow that runs a `TrainSettings` plan.

`train_lora` trains a LoRA on a base model's denoiser (the SD UNet or the Flux transformer;
optionally its text encoder(s)) and writes it in diffusers format with `modelspec.*` / `ss_*` metadata, a kohya/A1111 copy, and
intermediate checkpoints with a sample image each, and the state to resume from each
intermediate checkpoint (`resume_from`), so a killed training loses at most
`checkpointing_steps` steps. It takes explicit arguments (model folder, family, images,
settings, output folder, callbacks) and never reads the studio's config, so the job worker,
a benchmark or a distributed runner can call it alike. The request side (what to train, with
which settings) is `studio/tune_requests.py`.

torch, diffusers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.errors import InvalidInput
from studio.families import FAMILIES, TRAINING
from studio.training_objectives import OBJECTIVES
from studio.tune_requests import TrainSettings, check_family_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """One saved step: diffusers-format weights, its sample image (PNG) and, for intermediate
    steps, the state `train_lora(resume_from=...)` continues from (`RESUME_NAME`)."""

    step: int
    weights: Path
    sample: Path | None
    loss: float
    resume: Path | None = None


@dataclass(frozen=True)
class TrainedLora:
    weights: Path
    kohya: Path
    checkpoints: tuple[Checkpoint, ...]
    seconds_per_step: float
    loss: float


class StepCallback(Protocol):
    def __call__(self, step: int, total: int) -> None: ...


class TrainingStopped(Exception):
    """`should_stop()` answered True; nothing was written for the unfinished run."""


class ResumeStateError(ValueError):
    """A checkpoint cannot be resumed from: its weights or resume state are missing or damaged,
    or were written by a run with other settings. Raised before any step is trained; the
    caller trains from scratch instead."""


# -- LoRA training ---------------------------------------------------------------------------

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
KOHYA_NAME = "lora_kohya.safetensors"
#: Beside an intermediate checkpoint's weights: optimizer moments and the noise generator's
#: state as tensors, the rest (step, LR schedule, image order, recent losses) as JSON metadata.
RESUME_NAME = "resume_state.safetensors"
_RESUME_VERSION = 1


def train_lora(
    model: str | Path,
    family: str,
    images: Sequence[Any],
    settings: TrainSettings,
    output_dir: Path,
    *,
    title: str,
    trigger: str,
    device: str = "auto",
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    resume_from: Path | None = None,
    masks: Sequence[Any] | None = None,
    captions: Sequence[str | None] | None = None,
) -> TrainedLora:
    """Train a DreamBooth LoRA on `model` (a diffusers folder, hub id, or single `.safetensors`
    checkpoint of `family`: 'sd15', 'sdxl', 'flux1' or 'flux2') from PIL `images`, into
    `output_dir`.

    The family decides what trains and how (`studio.families`): the SD UNet on DDPM noise
    (epsilon or v prediction, as its scheduler says); the Flux transformer on the flow-matching
    objective (velocity `noise - latents` at sigmas drawn by `settings.weighting_scheme`,
    logit-normal by default, FLUX.1 [dev]'s guidance embedding fed its default guidance). The
    prompt and the photos are encoded once; a Flux family's text encoders that do not train
    are dropped once the prompt is encoded. Optionally the text encoder(s) train too.

    The same model, images and settings (seed included) give the same weights on one machine.
    `on_step(step, total)` follows every optimiser step; `should_stop()` is checked after each
    and raises TrainingStopped when it answers True. `on_checkpoint` gets every checkpoint as
    soon as it is written, the final one (step == max_train_steps) included. Returns the final
    weights (diffusers format, `WEIGHTS_NAME`) and their kohya/A1111 copy (`KOHYA_NAME`).

    `resume_from` is an intermediate checkpoint's folder (`WEIGHTS_NAME` and `RESUME_NAME`) of
    a run with the same settings: its LoRA weights, optimizer, LR schedule, image order and
    noise generator are restored and training goes on at its step + 1 (`on_step` and the
    checkpoints start there; the result lists only the checkpoints written by this call). The
    resumed run draws the same noise, timesteps and images as an uninterrupted one, so it ends
    with the same weights on the same machine and precision (bit for bit on CPU; on CUDA as
    reproducible as its kernels). ResumeStateError, before the base model loads where it can
    tell, when the checkpoint is missing, damaged or from other settings.

    `masks` (one per image: a float (H, W) array or PIL "F" image of the image's own size, as
    `studio.face_loss.loss_mask` makes them) weigh the loss per latent: they are fitted and
    cropped as the images are, averaged down to the latent grid and laid out as the target, so a
    region of weight 0 does not reach the gradient. `captions` (one per image; None or "" for
    the instance prompt) are what the text encoder reads for each image: every distinct caption
    is encoded once (each step when the text encoder trains), and each draw of an image trains on
    the instance prompt instead with probability `settings.caption_dropout`."""
    import torch
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    # 1. Check inputs (a checkpoint to resume from is read and checked whole), choose the device
    #    and precision.
    fam, facts = _trainable_family(family)
    if not images:
        raise InvalidInput("Training needs at least one photo.", field="images")
    check_family_settings(settings, family)
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"{len(masks)} loss masks for {len(images)} images")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    texts = [c or settings.instance_prompt for c in captions] if captions is not None else None
    resume = _read_resume_state(Path(resume_from), settings) if resume_from is not None else None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device, weight_dtype = _device_and_dtype(device, settings.mixed_precision)
    autocast = torch.autocast(device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32)

    # 2. Load the base model and freeze it; add LoRA adapters to the denoiser (and text
    #    encoders). Text encoders that are dropped after encoding the prompt go to the device
    #    first and the denoiser after them, so the two never need the memory at once.
    pipe = load_pipeline(model, family, dtype=weight_dtype)
    pipe.set_progress_bar_config(disable=True)
    denoiser = getattr(pipe, fam.denoiser)
    text_encoders = {n: getattr(pipe, n) for n in _TEXT_ENCODERS if getattr(pipe, n, None) is not None}
    trained_text = facts.text_lora_components if settings.train_text_encoder else ()
    dropped = [n for n in text_encoders if n not in trained_text] if facts.free_text_encoders else []
    if dropped:
        for module in (pipe.vae, *text_encoders.values()):
            module.to(device)
    else:
        pipe.to(device)
    for module in (denoiser, pipe.vae, *text_encoders.values()):
        module.requires_grad_(False)
    torch.manual_seed(settings.seed)  # the adapters' initial weights
    lora = {"r": settings.rank, "lora_alpha": settings.rank, "init_lora_weights": "gaussian"}
    denoiser.add_adapter(LoraConfig(target_modules=lora_target_modules(denoiser, fam.lora_targets), **lora))
    components = [(fam.denoiser, denoiser)]
    for name in trained_text:
        text_encoders[name].add_adapter(LoraConfig(target_modules=list(fam.text_lora_targets), **lora))
        components.append((name, text_encoders[name]))
    trained = [module for _, module in components]

    # 3. Cache what does not change: the prompt's encoding (what of it does not train), and the
    #    latent distribution of every image; then the denoiser takes the dropped encoders' place.
    flow = OBJECTIVES[facts.latent_format](pipe, fam, settings, device)
    with torch.no_grad(), autocast:
        flow.encode_prompt(train_text=bool(trained_text), texts=texts or ())
    pixels = _pixels(images, settings.size).to(device, dtype=weight_dtype)
    pixel_masks = None if masks is None else _mask_pixels(masks, settings.size).to(device)
    with torch.no_grad(), autocast:
        dists = [pipe.vae.encode(pixels[i : i + 4]).latent_dist for i in range(0, len(pixels), 4)]
    latent_mean = torch.cat([d.mean for d in dists]).float()
    latent_std = torch.cat([d.std for d in dists]).float()
    del pixels, dists
    for name in dropped:  # the prompt is encoded: the big text encoders are not needed again
        text_encoders.pop(name).to("cpu")
        setattr(pipe, name, None)
    if dropped:
        _free_memory(device)
        denoiser.to(device)
    use_checkpointing = settings.gradient_checkpointing
    if use_checkpointing is None:
        use_checkpointing = device.type == "cuda"
    if use_checkpointing:
        denoiser.enable_gradient_checkpointing()
        for name in trained_text:
            text_encoders[name].gradient_checkpointing_enable()
    cast_training_params(trained, dtype=torch.float32)
    params = [p for module in trained for p in module.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(settings.seed)

    # 4. Optimiser and learning-rate schedule; a resumed run restores them, the LoRA weights,
    #    the image order and the noise generator from its checkpoint.
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    lr_schedule = get_scheduler(
        settings.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=settings.lr_warmup_steps,
        num_training_steps=settings.max_train_steps,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=weight_dtype == torch.float16)
    order: list[int] = []
    losses: list = []  # detached loss tensors: reading each as a float would sync a GPU every step
    start = 0
    if resume is not None:
        order, losses = _apply_resume_state(
            resume, components, facts.lora_naming, optimizer, lr_schedule, scaler, generator, device
        )
        start = resume.step
        log.info("resuming the training from its checkpoint at step %s of %s", start, settings.max_train_steps)

    # 5. Train: sample a batch from the cached latents, noise it at random timesteps, predict,
    #    step. Images are visited in shuffled rounds, so each is seen equally often.
    checkpoints: list[Checkpoint] = []
    denoiser.train()
    started = time.perf_counter()
    for step in range(start + 1, settings.max_train_steps + 1):
        while len(order) < settings.train_batch_size:
            order += torch.randperm(len(latent_mean), generator=generator).tolist()
        batch, order = order[: settings.train_batch_size], order[settings.train_batch_size :]
        mean, std = latent_mean[batch], latent_std[batch]
        latents = flow.latents(mean + std * torch.randn(mean.shape, generator=generator).to(device))
        batch_texts = None
        if texts is not None:
            batch_texts = [texts[i] for i in batch]
            if settings.caption_dropout > 0:
                dropped_out = torch.rand(len(batch), generator=generator) < settings.caption_dropout
                batch_texts = [settings.instance_prompt if d else t for t, d in zip(batch_texts, dropped_out.tolist())]
        with autocast:
            prediction, target, weighting = flow.predict(latents, generator, batch_texts)
        mask = None if pixel_masks is None else flow.loss_mask(pixel_masks[batch], latents)
        loss = flow.loss(prediction, target, weighting, mask)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if on_step is not None:
            on_step(step, settings.max_train_steps)
        if should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped at step {step} of {settings.max_train_steps}")

        # 6. Every `checkpointing_steps` and at the end: weights with metadata, and a sample.
        last = step == settings.max_train_steps
        if last or (settings.checkpointing_steps and step % settings.checkpointing_steps == 0):
            folder = output_dir if last else output_dir / f"checkpoint-{step}"
            recent = float(torch.stack(losses[-max(1, settings.checkpointing_steps or step) :]).mean())
            meta = _metadata(
                settings,
                family=family,
                title=title,
                trigger=trigger,
                model=str(model),
                num_images=len(images),
                step=step,
                masked=masks is not None,
                captions=texts,
            )
            weights = _save_lora(components, facts.lora_naming, folder / WEIGHTS_NAME, meta)
            sample = None
            if settings.sample_steps:
                sample = _sample(pipe, denoiser, flow.sample_inputs, settings, folder / "sample.png", autocast)
            resume_state = None
            if not last:
                resume_state = _save_resume_state(
                    folder / RESUME_NAME,
                    step=step,
                    settings=settings,
                    optimizer=optimizer,
                    lr_schedule=lr_schedule,
                    scaler=scaler,
                    generator=generator,
                    order=order,
                    recent_losses=[float(v) for v in losses[-settings.checkpointing_steps :]],
                )
            checkpoint = Checkpoint(step=step, weights=weights, sample=sample, loss=recent, resume=resume_state)
            checkpoints.append(checkpoint)
            if on_checkpoint is not None:
                on_checkpoint(checkpoint)
    seconds_per_step = (time.perf_counter() - started) / (settings.max_train_steps - start)

    # 7. The kohya/A1111 copy of the final weights.
    kohya = export_kohya(checkpoints[-1].weights, output_dir / KOHYA_NAME, family=family)
    return TrainedLora(
        weights=checkpoints[-1].weights,
        kohya=kohya,
        checkpoints=tuple(checkpoints),
        seconds_per_step=seconds_per_step,
        loss=checkpoints[-1].loss,
    )


_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


def _trainable_family(family: str):
    """The facts of `family`, or InvalidInput naming the families LoRAs train on."""
    if family not in TRAINING:
        raise InvalidInput(
            f"LoRA training supports the families {', '.join(TRAINING)}, not {family!r}.", field="base_tune_id"
        )
    return FAMILIES[family], TRAINING[family]


def lora_target_modules(model, targets: Sequence[str]) -> list[str]:
    """The module names a LoRA on `targets` adapts in `model`. peft matches a bare name at the
    end of any module path, which on Flux also catches modules that must stay as they are (the
    top-level `proj_out`, FLUX.2's `to_out` lists); so where the bare names would catch more
    than the Linear layers inside the blocks, the full names are given instead."""
    import torch

    exact = sorted(
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.endswith("." + t) for t in targets)
    )
    loose = {name for name, _ in model.named_modules() if any(name == t or name.endswith("." + t) for t in targets)}
    return list(targets) if loose == set(exact) else exact


def _free_memory(device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def load_pipeline(model: str | Path, family: str, *, dtype: Any = None):
    """The base model's diffusers pipeline (the family's text-to-image class): a folder or hub
    id with `from_pretrained`, a single `.safetensors` checkpoint with `from_single_file`;
    pickled checkpoints are refused."""
    import inspect

    import diffusers

    cls = getattr(diffusers, FAMILIES[family].pipelines["text2img"])
    extra = {}
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        extra = {"safety_checker": None, "requires_safety_checker": False}
    source = str(model)
    if source.endswith((".ckpt", ".pt", ".pth", ".bin")):
        raise InvalidInput(
            f"{source} is a pickle checkpoint; only .safetensors files are loaded.", field="base_tune_id"
        )
    if source.endswith(".safetensors"):
        return cls.from_single_file(source, dtype=dtype, **extra)
    from safetensors import SafetensorError

    try:
        return cls.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError, SafetensorError):
        if not Path(source).is_dir():
            raise
        from studio.engine_models import describe_unloadable_folder
        from studio.errors import Unavailable

        log.exception("the base model folder %s did not load", source)
        raise Unavailable(describe_unloadable_folder(Path(source))) from None


def _device_and_dtype(choice: str, mixed_precision: str):
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            choice = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            choice = "mps"
        else:
            choice = "cpu"
    device = torch.device(choice)
    if mixed_precision == "auto" and device.type == "cuda":
        mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif mixed_precision == "auto":
        mixed_precision = "no"
    dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]
    return device, dtype


def _pixels(images: Sequence[Any], size: tuple[int, int]):
    """Images scaled to cover `size` and centre-cropped, as a (N, 3, H, W) tensor in [-1, 1]."""
    import torch
    from PIL import Image, ImageOps

    width, height = size
    arrays = []
    for image in images:
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)
        arrays.append(np.asarray(fitted, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _mask_pixels(masks: Sequence[Any], size: tuple[int, int]):
    """Loss masks fitted to `size` as `_pixels` fits their images (same scale and centre
    crop), as a (N, 1, H, W) float tensor."""
    import torch
    from PIL import Image, ImageOps

    width, height = size
    arrays = []
    for mask in masks:
        image = mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask, np.float32))
        fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
        arrays.append(np.asarray(fitted, dtype=np.float32))
    return torch.from_numpy(np.stack(arrays))[:, None].contiguous()


def _save_lora(components: list, naming: str, path: Path, metadata: dict[str, str]) -> Path:
    """Write the adapters in diffusers format (`unet.…lora.down.weight` or
    `transformer.…lora_A.weight`, as the family's `save_lora_weights` does) with `metadata`,
    its `modelspec.hash_sha256` computed over the tensors."""
    from safetensors.torch import save_file

    tensors, adapter_config = _lora_tensors(components, naming), {}
    for name, module in components:
        config = module.peft_config["default"].to_dict()
        adapter_config.update({f"{name}.{k}": sorted(v) if isinstance(v, set) else v for k, v in config.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**metadata, "modelspec.hash_sha256": _tensor_hash(tensors)}
    meta["lora_adapter_metadata"] = json.dumps(adapter_config, sort_keys=True, default=str)
    save_file(tensors, str(path), metadata={"format": "pt", **meta})
    return path


def _saved_names(module, naming: str) -> dict[str, str]:
    """The names `_lora_tensors` gives the adapter weights of `module` (without its component
    prefix), mapped to peft's own names."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    names = {key: key for key in get_peft_model_state_dict(module)}
    # convert_state_dict_to_diffusers renames the keys; renaming the names themselves inverts it
    return convert_state_dict_to_diffusers(names) if naming == "diffusers" else names


def _lora_tensors(components: list, naming: str) -> dict[str, Any]:
    """The adapters of the trained modules (denoiser, then text encoders) as the diffusers-format
    file holds them, as CPU tensors."""
    from peft.utils import get_peft_model_state_dict

    tensors = {}
    for name, module in components:
        state = get_peft_model_state_dict(module)
        for saved, peft in _saved_names(module, naming).items():
            tensors[f"{name}.{saved}"] = state[peft].detach().to("cpu", copy=True).contiguous()
    return tensors


@dataclass(frozen=True)
class _ResumeState:
    """A checkpoint read back for `train_lora(resume_from=...)`, its hashes checked."""

    step: int
    lora: dict[str, Any]  # diffusers-format LoRA tensors, as `_lora_tensors` gives them
    lora_hash: str
    tensors: dict[str, Any]  # "optimizer.<param index>.<name>" and "generator"
    info: dict[str, Any]  # the JSON part: param groups, LR schedule, grad scaler, order, losses


def _save_resume_state(
    path: Path,
    *,
    step: int,
    settings: TrainSettings,
    optimizer,
    lr_schedule,
    scaler,
    generator,
    order: list[int],
    recent_losses: list[float],
) -> Path:
    """Write what resuming after `step` needs beside the checkpoint's weights: the optimizer's
    tensors and the noise generator's state as safetensors, and the rest as JSON metadata with
    a hash of the tensors (pickles are never written or read)."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {"generator": generator.get_state()}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"optimizer.{index}.{name}"] = value.detach().to("cpu", copy=True).contiguous()
    info = {
        "version": _RESUME_VERSION,
        "step": step,
        "settings": settings.to_json(),
        "param_groups": state["param_groups"],
        "lr_scheduler": lr_schedule.state_dict(),
        "grad_scaler": scaler.state_dict(),
        "order": order,
        "recent_losses": recent_losses,
    }
    metadata = {"studio.resume": json.dumps(info), "studio.resume_sha256": _tensor_hash(tensors)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _read_resume_state(folder: Path, settings: TrainSettings) -> _ResumeState:
    """The checkpoint in `folder`, read whole and checked against the hashes it was saved with
    and against `settings`; ResumeStateError saying what is wrong otherwise."""
    from safetensors import SafetensorError, safe_open

    def load(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})  # noqa: SIM118

    try:
        lora, lora_meta = load(folder / WEIGHTS_NAME)
        tensors, meta = load(folder / RESUME_NAME)
        info = json.loads(meta["studio.resume"])
        step = int(info["step"])
        if _tensor_hash(lora) != lora_meta["modelspec.hash_sha256"]:
            raise ResumeStateError(f"the LoRA weights in {folder} are damaged (their hash differs)")
        if _tensor_hash(tensors) != meta["studio.resume_sha256"]:
            raise ResumeStateError(f"the resume state in {folder} is damaged (its hash differs)")
        if info["version"] != _RESUME_VERSION or TrainSettings.from_json(info["settings"]) != settings:
            raise ResumeStateError(f"the checkpoint in {folder} was written by a run with other settings")
        if not 0 < step < settings.max_train_steps or lora_meta.get("ss_steps") != str(step):
            raise ResumeStateError(f"the checkpoint in {folder} is not an intermediate step of this run")
    except ResumeStateError:
        raise
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise ResumeStateError(f"the checkpoint in {folder} cannot be read: {error}") from None
    return _ResumeState(step, lora, lora_meta["modelspec.hash_sha256"], tensors, info)


def _apply_resume_state(
    state: _ResumeState, components: list, naming: str, optimizer, lr_schedule, scaler, generator, device
):
    """Load a checked checkpoint into the run: the LoRA weights into the peft adapters, then
    the optimizer, LR schedule, grad scaler and noise generator. Returns the image order and
    the recent losses (tensors on `device`) to go on with. ResumeStateError when it does not fit."""
    import torch
    from peft.utils import set_peft_model_state_dict

    info = state.info
    try:
        for name, module in components:
            to_peft = _saved_names(module, naming)
            set_peft_model_state_dict(module, {peft: state.lora[f"{name}.{key}"] for key, peft in to_peft.items()})
        if _tensor_hash(_lora_tensors(components, naming)) != state.lora_hash:
            raise ResumeStateError("the checkpoint's LoRA weights do not fit the adapters being trained")
        moments: dict[int, dict[str, Any]] = {}
        for key, tensor in state.tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                moments.setdefault(int(index), {})[name] = tensor
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in info["param_groups"]]
        optimizer.load_state_dict({"state": moments, "param_groups": groups})
        lr_schedule.load_state_dict(info["lr_scheduler"])
        if scaler.is_enabled() and info["grad_scaler"]:  # saved without fp16: the scale starts afresh
            scaler.load_state_dict(info["grad_scaler"])
        generator.set_state(state.tensors["generator"])
    except ResumeStateError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise ResumeStateError(f"the checkpoint does not fit this run: {error}") from None
    losses = [torch.tensor(value, dtype=torch.float32, device=device) for value in info["recent_losses"]]
    return [int(i) for i in info["order"]], losses


def _sample(pipe, denoiser, inputs: Callable[[], dict], settings: TrainSettings, path: Path, autocast) -> Path:
    """One image of the instance prompt (`inputs()`: the prompt or its cached encoding) with the
    adapters as they are now, from a fixed seed, so the samples of successive checkpoints differ
    only by training."""
    import torch

    denoiser.eval()
    width, height = settings.size
    try:
        with torch.no_grad(), autocast:
            image = pipe(
                **inputs(),
                num_inference_steps=settings.sample_steps,
                width=width,
                height=height,
                generator=torch.Generator().manual_seed(settings.seed),
            ).images[0]
    finally:
        denoiser.train()
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def _metadata(
    settings: TrainSettings,
    *,
    family: str,
    title: str,
    trigger: str,
    model: str,
    num_images: int,
    step: int,
    masked: bool = False,
    captions: Sequence[str] | None = None,
) -> dict[str, str]:
    """safetensors metadata: Stability's model spec (`modelspec.*`) and kohya's `ss_*` keys, so
    A1111, ComfyUI and kohya's tools show what the LoRA is and how it was made (kohya's
    `ss_masked_loss`, `ss_caption_dropout_rate` and caption tag frequencies included; the face
    and background weights as `ss_face_loss_weight` / `ss_background_loss_weight`)."""
    width, height = settings.size
    fam = FAMILIES[family]
    extra = {"ss_weighting_scheme": settings.weighting_scheme} if fam.objective == "flow" else {}
    return {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{fam.modelspec_architecture}/lora",
        "modelspec.implementation": "https://github.com/huggingface/diffusers",
        "modelspec.title": title,
        "modelspec.trigger_phrase": trigger,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.now(UTC).date().isoformat(),
        "ss_network_module": TRAINING[family].kohya_network_module,
        "ss_network_dim": str(settings.rank),
        "ss_network_alpha": str(float(settings.rank)),
        "ss_base_model_version": fam.ss_base_model_version,
        "ss_sd_model_name": Path(model).name or model,
        "ss_resolution": f"({width}, {height})",
        "ss_num_train_images": str(num_images),
        "ss_max_train_steps": str(settings.max_train_steps),
        "ss_steps": str(step),
        "ss_learning_rate": str(settings.learning_rate),
        "ss_unet_lr": str(settings.learning_rate),
        "ss_text_encoder_lr": str(settings.learning_rate if settings.train_text_encoder else 0.0),
        "ss_lr_scheduler": settings.lr_scheduler,
        "ss_lr_warmup_steps": str(settings.lr_warmup_steps),
        "ss_batch_size_per_device": str(settings.train_batch_size),
        "ss_seed": str(settings.seed),
        "ss_network_train_unet_only": str(not settings.train_text_encoder),
        "ss_output_name": title,
        "ss_tag_frequency": json.dumps({"instance": _tag_frequency(captions, trigger, num_images)}),
        "ss_masked_loss": str(masked),
        "ss_face_loss_weight": str(settings.face_loss_weight),
        "ss_background_loss_weight": str(settings.background_loss_weight),
        "ss_caption_dropout_rate": str(settings.caption_dropout if captions else 0.0),
        **extra,
    }


def _tag_frequency(captions: Sequence[str] | None, trigger: str, num_images: int) -> dict[str, int]:
    """kohya's tag counts: each comma-separated tag of the captions, or the trigger per image."""
    if not captions:
        return {trigger: num_images}
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in (t.strip() for t in caption.split(",")):
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def _tensor_hash(tensors: Mapping[str, Any]) -> str:
    """sha256 of the tensors serialised as safetensors without metadata (kohya's model hash)."""
    from safetensors.torch import save

    return "0x" + hashlib.sha256(save(dict(tensors))).hexdigest()


_DIFFUSERS_KEY = re.compile(
    r"^(unet|transformer|text_encoder|text_encoder_2)\.(.+?)\.(?:(?:lora|lora_linear_layer)\.(down|up)|lora_(A|B))\.weight$"
)


def export_kohya(weights: Path, target: Path, *, family: str) -> Path:
    """Write the kohya/A1111 form of a diffusers-format LoRA file of `family`, keeping the
    source's metadata with its hash recomputed: `lora_down`/`lora_up` weights and an `alpha`
    per module (the rank, as trained).

    SD names its modules `lora_unet_…` / `lora_te_…` after the diffusers paths. Flux names them
    after Black Forest Labs' blocks (`lora_unet_double_blocks_N_img_attn_qkv`,
    `lora_unet_single_blocks_N_linear1`…), as sd-scripts writes and ComfyUI reads them. Where
    BFL has one fused layer for several diffusers ones (q, k and v; FLUX.1's single-block q, k,
    v and MLP input), the parts' down weights are stacked along the rank and their up weights
    placed block-diagonally, which gives exactly the parts' updates: that LoRA has the parts'
    ranks summed, and its alpha equals that rank."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    fam, facts = _trainable_family(family)
    with safe_open(str(weights), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        source = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    modules: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in source.items():
        match = _DIFFUSERS_KEY.match(key)
        if match is None or match.group(1) not in fam.kohya_prefixes:
            raise ValueError(f"{weights} has a key that is not a diffusers LoRA weight of {fam.label}: {key}")
        component, module, direction, peft_direction = match.groups()
        direction = direction or {"A": "down", "B": "up"}[peft_direction]
        modules.setdefault((component, module), {})[direction] = tensor
    tensors: dict[str, Any] = {}

    def put(name: str, down, up) -> None:
        tensors[f"{name}.lora_down.weight"] = down.contiguous()
        tensors[f"{name}.lora_up.weight"] = up.contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))

    prefix = fam.kohya_prefixes[fam.denoiser]
    for block_prefix, kohya_block, layers in facts.kohya_blocks:
        indices = sorted(
            {int(m.split(".")[1]) for c, m in modules if c == fam.denoiser and m.startswith(block_prefix + ".")}
        )
        for index in indices:
            for kohya_name, parts in layers.items():
                names = [(fam.denoiser, f"{block_prefix}.{index}.{part}") for part in parts]
                present = [name for name in names if name in modules]
                if not present:
                    continue
                if len(present) != len(names):
                    raise ValueError(
                        f"{weights}: kohya's {kohya_block}_{index}_{kohya_name} needs LoRAs on all of "
                        f"{', '.join(parts)} of block {index}"
                    )
                found = [modules.pop(name) for name in names]
                put(
                    f"{prefix}{kohya_block}_{index}_{kohya_name}",
                    torch.cat([f["down"] for f in found]),
                    torch.block_diag(*[f["up"] for f in found]),
                )
    for (component, module), found in modules.items():
        if component == fam.denoiser and facts.kohya_blocks:
            raise ValueError(f"{weights}: {module} has no kohya name")
        if component != fam.denoiser and not module.startswith("text_model."):
            module = "text_model." + module  # kohya names CLIP modules from the text_model root
        put(fam.kohya_prefixes[component] + module.replace(".", "_"), found["down"], found["up"])
    metadata.pop("lora_adapter_metadata", None)
    metadata.pop("format", None)
    metadata["modelspec.hash_sha256"] = _tensor_hash(tensors)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"format": "pt", **metadata})
    return target


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (without its `format` entry)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    metadata.pop("format", None)
    return metadata
