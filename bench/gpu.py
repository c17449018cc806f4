"""GPU readiness: SD 1.5 at 512x512, SDXL, FLUX.1 [dev] and FLUX.2 [klein] 4B at 1024x1024
through the studio against bare diffusers, and LoRA training seconds per step.

Both models are the real architectures (SD 1.5: 860M-parameter UNet, 12-layer CLIP text encoder;
SDXL: 2.6B-parameter UNet with 10-layer transformer blocks, CLIP-L and bigG text encoders;
FLUX.1 [dev]: the 12B transformer (19 double- and 38 single-stream blocks, guidance embedding),
CLIP-L and T5-XXL, the 16-channel VAE; FLUX.2 [klein] 4B: its transformer (5 + 20 blocks), a
Qwen3-4B-shaped text encoder, the 32-channel VAE) with random weights built here from configs
(in bf16 on the GPU), so nothing is downloaded; random weights time the same as trained ones. Each is saved with save_pretrained and loaded through the engine's normal path.
Then, after a warm-up and interleaved (the order flips every round):

- studio: `Engine.generate(GenerateRequest)` (validation, scheduler by Astria name, seeds,
  progress and cancel callables, PNG with A1111 parameters);
- bare: the same loaded pipeline called directly with the same prompt, steps, guidance, size,
  scheduler and seed.

Denoising it/s is timed between the first and the last step callback (the device synchronised in
both), and seconds per image end to end. LoRA training runs `studio.training.train_lora` at the
model's native size (rank 16, batch 1, no checkpoints or samples); seconds per step are timed
from the second step to the last (the first one warms kernels up).

    .venv/bin/python bench/gpu.py                          # CUDA: SD 1.5 and SDXL
    .venv/bin/python bench/gpu.py --skip-sdxl --reps 5
    .venv/bin/python bench/gpu.py --only flux1,flux2 --skip-training   # the Flux rows
    .venv/bin/python bench/gpu.py --device cpu --tiny      # toy sizes: checks the script anywhere
    .venv/bin/python bench/gpu.py --json figures.json

Without a CUDA device (and without `--device cpu --tiny`) it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.demo_model import build_tokenizer  # noqa: E402
from studio.engine import Engine, GenerateRequest, make_scheduler  # noqa: E402
from studio.training import train_lora  # noqa: E402
from studio.tune_requests import TrainSettings  # noqa: E402

PROMPT = "a portrait photo of ohwx woman, blue jacket, soft light"
SCHEDULER = "euler_a"

# Text encoders: CLIP ViT-L/14 (SD 1.5, SDXL's first) and OpenCLIP ViT-bigG/14 (SDXL's second).
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
          "hidden_act": "quick_gelu", "projection_dim": 768}  # fmt: skip
CLIP_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
          "hidden_act": "gelu", "projection_dim": 1280}  # fmt: skip
CLIP_TINY = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
             "hidden_act": "quick_gelu", "projection_dim": 32}  # fmt: skip

# Each model: family, native side, UNet config, text encoder configs, VAE channels and scaling.
MODELS = {
    "sd15": {
        "family": "sd15",
        "side": 512,
        "unet": {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8},
        "text": [CLIP_L],
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "scaling_factor": 0.18215},
    },
    "sdxl": {
        "family": "sdxl",
        "side": 1024,
        "unet": {
            "sample_size": 128,
            "block_out_channels": (320, 640, 1280),
            "layers_per_block": 2,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 2048,
            "attention_head_dim": (5, 10, 20),
            "transformer_layers_per_block": (1, 2, 10),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 1280 + 6 * 256,
        },
        "text": [CLIP_L, CLIP_G],
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "scaling_factor": 0.13025},
    },
}
# FLUX.1 [dev] and FLUX.2 [klein] 4B, as their published configs give them.
T5_XXL = {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
          "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32}  # fmt: skip
QWEN3_4B = {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128}  # fmt: skip
FLUX_MODELS = {
    "flux1": {
        "family": "flux1",
        "side": 1024,
        "guidance_scale": 3.5,
        "transformer": {
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": True,
            "axes_dims_rope": (16, 56, 56),
        },  # fmt: skip
        "clip": CLIP_L,
        "t5": T5_XXL,
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 16},
    },
    "flux2": {
        "family": "flux2",
        "side": 1024,
        "guidance_scale": 4.0,
        "transformer": {
            "in_channels": 128,
            "num_layers": 5,
            "num_single_layers": 20,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 7680,
            "guidance_embeds": False,
            "axes_dims_rope": (32, 32, 32, 32),
        },  # fmt: skip
        "qwen": QWEN3_4B,
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 32},
    },
}
FLUX_TINY = {
    "flux1": {
        **FLUX_MODELS["flux1"],
        "side": 64,
        "transformer": {
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 2,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "pooled_projection_dim": 32,
            "guidance_embeds": True,
            "axes_dims_rope": (4, 4, 8),
        },  # fmt: skip
        "clip": CLIP_TINY,
        "t5": {
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 37,
            "num_layers": 2,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
        },  # fmt: skip
        "vae": {"block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8},
    },
    "flux2": {
        **FLUX_MODELS["flux2"],
        "side": 64,
        "transformer": {
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 2,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 48,
            "guidance_embeds": False,
            "timestep_guidance_channels": 64,
            "axes_dims_rope": (4, 4, 4, 4),
        },  # fmt: skip
        "qwen": {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 28,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 8,
        },  # fmt: skip
        "vae": {"block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8},
    },
}
TINY = {
    "sd15": {
        "family": "sd15",
        "side": 64,
        "unet": {
            "sample_size": 8,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
        },
        "text": [CLIP_TINY],
        "vae": {
            "block_out_channels": (8, 8, 8, 8),
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "scaling_factor": 0.18215,
        },
    },
    "sdxl": {
        "family": "sdxl",
        "side": 64,
        "unet": {
            "sample_size": 8,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 64,
            "attention_head_dim": (2, 4),
            "transformer_layers_per_block": (1, 2),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
        },
        "text": [CLIP_TINY, CLIP_TINY],
        "vae": {
            "block_out_channels": (8, 8, 8, 8),
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "scaling_factor": 0.13025,
        },
    },
}


def build_model(spec: dict, folder: Path, device: str) -> Path:
    """A pipeline of `spec`'s architecture with random weights (seed 0), saved in fp16 (fp32 on
    CPU) with save_pretrained. Weights are initialised on `device`, which is much faster on a
    GPU for SDXL's 2.6B parameters. The tokenizer is the demo model's small one: only the size of
    the embedding table differs from the real models."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = build_tokenizer(folder / "_tokenizer_src")
    special = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    side, vae = spec["side"], dict(spec["vae"])
    with torch.device(device):
        unet = UNet2DConditionModel(**spec["unet"])
        text = [CLIPTextConfig(**special, **config) for config in spec["text"]]
        encoders = [CLIPTextModel(text[0])] + [CLIPTextModelWithProjection(c) for c in text[1:]]
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            sample_size=side,
            force_upcast=spec["family"] == "sdxl",
            **vae,
        )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    )
    if spec["family"] == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe.to(dtype=dtype).to("cpu").save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "_tokenizer_src", ignore_errors=True)
    del pipe, unet, encoders, vae
    return folder


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def time_generation(engine: Engine, request: GenerateRequest, reps: int) -> dict:
    """Denoising it/s and seconds per image of the studio and of bare diffusers (medians of
    `reps` interleaved runs after a warm-up of each)."""
    import torch

    pipe = engine.load_model(request.model, request.family)
    sync = _sync(engine.device)

    def studio() -> tuple[list[float], float]:
        marks: list[float] = []

        def on_step(step: int, total: int) -> None:
            sync()
            marks.append(time.perf_counter())

        started = time.perf_counter()
        engine.generate(request, on_step=on_step, should_stop=lambda: False)
        return marks, time.perf_counter() - started

    def bare() -> tuple[list[float], float]:
        marks: list[float] = []

        def step_end(_pipe, _index, _timestep, tensors):
            sync()
            marks.append(time.perf_counter())
            return tensors

        started = time.perf_counter()
        pipe.scheduler = make_scheduler(request.scheduler, dict(pipe.scheduler.config), request.family)
        negative = {"negative_prompt": request.negative_prompt} if request.negative_prompt else {}
        with torch.inference_mode():
            pipe(
                prompt=request.prompt,
                **negative,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                width=request.width,
                height=request.height,
                num_images_per_prompt=request.num_images,
                generator=[torch.Generator(device="cpu").manual_seed(request.seed)],
                callback_on_step_end=step_end,
                output_type="pil",
            )
        return marks, time.perf_counter() - started

    studio(), bare()  # warm-up: kernels, allocator, cuDNN choices
    if engine.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs: dict[str, list[tuple[list[float], float]]] = {"studio": [], "bare": []}
    for rep in range(reps):
        order = [("studio", studio), ("bare", bare)] if rep % 2 == 0 else [("bare", bare), ("studio", studio)]
        for name, run in order:
            runs[name].append(run())
    result = {}
    for name, done in runs.items():
        rates = [(len(m) - 1) / (m[-1] - m[0]) for m, _ in done if len(m) > 1 and m[-1] > m[0]]
        result[name] = {
            "it_per_s": statistics.median(rates) if rates else None,
            "seconds_per_image": statistics.median(seconds for _, seconds in done) / request.num_images,
        }
    if engine.device == "cuda":
        result["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def time_training(model: Path, spec: dict, steps: int, rank: int, device: str) -> dict:
    """Seconds per LoRA training step of `train_lora` at the native size, from the second step
    to the last, plus the loop's own figure (first step included)."""
    import numpy as np
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    side = spec["side"]
    photos = [
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
        for _ in range(5)
    ]
    settings = TrainSettings(
        instance_prompt="a close photo of ohwx woman",
        max_train_steps=steps,
        size=(side, side),
        rank=rank,
        seed=1,
        checkpointing_steps=0,
        sample_steps=0,
    )
    sync = _sync(device)
    marks: list[float] = []

    def on_step(step: int, total: int) -> None:
        sync()
        marks.append(time.perf_counter())

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-train-") as out:
        result = train_lora(
            model,
            spec["family"],
            photos,
            settings,
            Path(out),
            title="bench",
            trigger="ohwx",
            device=device,
            on_step=on_step,
        )
    steady = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else result.seconds_per_step
    figures = {"seconds_per_step": steady, "loop_seconds_per_step": result.seconds_per_step, "steps": steps}
    if device == "cuda":
        figures["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return figures


def build_flux_model(spec: dict, folder: Path, device: str) -> Path:
    """A FLUX.1 or FLUX.2 [klein] pipeline of `spec`'s architecture with random weights (seed
    0), made in bf16 on `device` (fp32 on CPU) and saved with save_pretrained. The tokenizers are
    the embedded demo's (studio/demo_flux.py): only the embedding tables' sizes differ."""
    import torch
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen3Config, Qwen3ForCausalLM, T5Config, T5EncoderModel

    from studio.demo_flux import build_qwen_tokenizer, build_t5_tokenizer

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
    )
    vae_options = {"down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4}
    vae_options |= {"use_quant_conv": False, "use_post_quant_conv": False, "sample_size": spec["side"], **spec["vae"]}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # a 12B transformer in fp32 would not fit beside T5-XXL
    try:
        with torch.device(device):
            if spec["family"] == "flux1":
                tokenizer = build_tokenizer(folder / "_tokenizer_src")
                tokenizer_2 = build_t5_tokenizer()
                clip = CLIPTextConfig(
                    vocab_size=len(tokenizer),
                    max_position_embeddings=77,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                    **spec["clip"],
                )
                t5 = T5Config(
                    vocab_size=len(tokenizer_2),
                    pad_token_id=tokenizer_2.pad_token_id,
                    eos_token_id=tokenizer_2.eos_token_id,
                    decoder_start_token_id=tokenizer_2.pad_token_id,
                    **spec["t5"],
                )
                pipe = FluxPipeline(
                    scheduler=scheduler,
                    vae=AutoencoderKL(scaling_factor=0.3611, shift_factor=0.1159, **vae_options),
                    text_encoder=CLIPTextModel(clip),
                    tokenizer=tokenizer,
                    text_encoder_2=T5EncoderModel(t5),
                    tokenizer_2=tokenizer_2,
                    transformer=FluxTransformer2DModel(patch_size=1, **spec["transformer"]),
                )
            else:
                tokenizer = build_qwen_tokenizer()
                qwen = Qwen3Config(
                    vocab_size=len(tokenizer),
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    max_position_embeddings=1024,
                    tie_word_embeddings=True,
                    **spec["qwen"],
                )
                pipe = Flux2KleinPipeline(
                    scheduler=scheduler,
                    vae=AutoencoderKLFlux2(**vae_options),
                    text_encoder=Qwen3ForCausalLM(qwen),
                    tokenizer=tokenizer,
                    transformer=Flux2Transformer2DModel(patch_size=1, **spec["transformer"]),
                    is_distilled=False,
                )
    finally:
        torch.set_default_dtype(previous)
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "_tokenizer_src", ignore_errors=True)
    del pipe
    return folder


def bench_model(name: str, spec: dict, root: Path, engine: Engine, args) -> dict:
    side = spec["side"]
    flux = "transformer" in spec
    started = time.perf_counter()
    folder = (build_flux_model if flux else build_model)(spec, root / name, engine.device)
    print(
        f"{name}: built {spec['family']} ({side}x{side}) with random weights in {time.perf_counter() - started:.0f} s"
    )
    request = GenerateRequest(
        model=str(folder),
        family=spec["family"],
        prompt=PROMPT,
        num_inference_steps=args.steps,
        guidance_scale=spec.get("guidance_scale", 7.0),
        width=side,
        height=side,
        scheduler="euler" if flux else SCHEDULER,
        seed=1,
    )
    generation = time_generation(engine, request, args.reps)
    studio, bare = generation["studio"], generation["bare"]
    ratio = studio["it_per_s"] / bare["it_per_s"] if studio["it_per_s"] and bare["it_per_s"] else None
    print(
        f"{name}: {side}x{side}, {args.steps} steps {request.scheduler}, cfg {request.guidance_scale:g}, "
        f"{args.reps} runs each: "
        f"studio {studio['it_per_s']:.2f} it/s, {studio['seconds_per_image']:.2f} s/image; "
        f"bare diffusers {bare['it_per_s']:.2f} it/s, {bare['seconds_per_image']:.2f} s/image; "
        f"studio/bare it/s {ratio:.3f}"
        + (f"; peak {generation['peak_cuda_gb']:.1f} GB" if "peak_cuda_gb" in generation else "")
    )
    engine.unload()  # training loads its own copy
    training = None
    if not args.skip_training:
        try:
            training = time_training(folder, spec, args.train_steps, args.rank, engine.device)
        except Exception as exc:  # a family train_lora does not take yet: the generation row still counts
            print(f"{name}: LoRA training not timed ({type(exc).__name__}: {exc})")
    if training is not None:
        print(
            f"{name}: LoRA training at {side}x{side}, rank {args.rank}, batch 1: "
            f"{training['seconds_per_step']:.3f} s/step (loop incl. first step {training['loop_seconds_per_step']:.3f})"
            + (f"; peak {training['peak_cuda_gb']:.1f} GB" if "peak_cuda_gb" in training else "")
        )
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "size": side,
        "steps": args.steps,
        "generation": generation,
        "studio_over_bare": ratio,
        "training": training,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="toy-sized models at 64 px: a smoke run of this script")
    parser.add_argument("--steps", type=int, help="denoising steps (default 30; 4 with --tiny)")
    parser.add_argument("--reps", type=int, help="timed runs of each kind (default 3; 1 with --tiny)")
    parser.add_argument("--train-steps", type=int, help="LoRA training steps (default 30; 3 with --tiny)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--skip-sdxl", action="store_true")
    parser.add_argument("--only", help="comma-separated models to run: sd15, sdxl, flux1, flux2 (default all)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.steps = args.steps or (4 if args.tiny else 30)
    args.reps = args.reps or (1 if args.tiny else 3)
    args.train_steps = args.train_steps or (3 if args.tiny else 30)
    logging.basicConfig(level=logging.WARNING)

    import diffusers
    import torch
    import transformers

    # Loading and saving bars and cast notices would bury the figures.
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device is visible to torch, so there is nothing to measure here. "
            "Run it on a GPU box, or `--device cpu --tiny` for a smoke run of the script at toy size."
        )
        return 0
    if args.device == "cpu" and not args.tiny:
        parser.error("full-size SD 1.5 and SDXL on a CPU would take hours: add --tiny for a smoke run")
    engine = Engine(args.device)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    print(
        f"device {engine.device} ({gpu}), dtype {engine.dtype}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}{', TINY models' if args.tiny else ''}"
    )
    specs = {**TINY, **FLUX_TINY} if args.tiny else {**MODELS, **FLUX_MODELS}
    names = ["sd15"] + ([] if args.skip_sdxl else ["sdxl"]) + ["flux1", "flux2"]
    if args.only:
        names = [n for n in args.only.split(",") if n in specs]
    figures = {"device": engine.device, "gpu": gpu, "dtype": str(engine.dtype), "tiny": args.tiny}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for name in names:
            figures[name] = bench_model(name, specs[name], Path(tmp), engine, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
