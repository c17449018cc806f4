"""How much does the studio add to a LoRA training step? Times `studio.training.train_lora`, run
through a real job context (progress written to SQLite, cancel checked every step), against a
bare peft training loop doing the same work on the same model, in the same run. Two rows:

- sd15: the embedded demo model; cached latents and prompt embedding, DDPM noise, MSE on the
  noise, AdamW.
- flux1: a FLUX.1 [dev]-shaped pipeline with the real block layout (double-stream blocks, then
  twice as many single-stream blocks, 128-wide attention heads, FLUX.1's RoPE axes, guidance
  embedding, T5's 512 prompt tokens) at reduced depth and width, so a CPU finishes in minutes;
  cached latents and prompt, logit-normal timesteps, flow-matching velocity loss, AdamW.

    .venv/bin/python bench/train.py                   # both rows
    .venv/bin/python bench/train.py --rows flux1 --flux-steps 60
    .venv/bin/python bench/train.py --rows sd15 --steps 400 --size 128 --batch 2

Each measurement runs in a fresh child process (so peak memory is that run's own), bare and
studio alternating, `--repeats` times each, each child training `--rounds` times; the best
seconds per step of each variant is compared (other work on the machine only slows runs). The
target is studio / bare <= 1.10 for each row. Peak memory is the child's peak RSS (and the peak
CUDA allocation on a GPU). Checkpoints and samples are off in both, as the bare loop has none.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(HERE).parent
sys.path.insert(0, str(ROOT))

PROMPT = "a close photo of ohwx man"


def photos(count: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).resize((96, 80), Image.Resampling.BICUBIC)
        for _ in range(count)
    ]


#: The Flux row's transformer: FLUX.1's layout (1 double : 2 single blocks, 128-wide heads,
#: RoPE axes 16/56/56, guidance embedding) at 2 + 4 blocks of 2 heads.
FLUX_LAYERS, FLUX_HEADS = (2, 4), 2


def build_flux_model(folder: Path) -> str:
    """Write the Flux row's pipeline: the tiny FLUX.1 demo's VAE, text encoders and tokenizers
    with a transformer of FLUX.1's block layout at reduced depth and width."""
    import torch
    from diffusers import FluxTransformer2DModel

    from studio.demo_flux import build_flux1_pipeline

    pipe = build_flux1_pipeline(layers=FLUX_LAYERS)
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=pipe.transformer.config.in_channels,
        num_layers=FLUX_LAYERS[0],
        num_single_layers=FLUX_LAYERS[1],
        attention_head_dim=128,
        num_attention_heads=FLUX_HEADS,
        joint_attention_dim=pipe.transformer.config.joint_attention_dim,
        pooled_projection_dim=pipe.transformer.config.pooled_projection_dim,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    pipe.register_modules(transformer=transformer)
    pipe.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def run_studio(model: str, args) -> float:
    """train_lora with the job worker's own progress and cancel callables."""
    from storage import Store
    from studio.jobs import JobContext
    from studio.training import train_lora
    from studio.tune_requests import TrainSettings

    settings = TrainSettings(
        instance_prompt=PROMPT,
        max_train_steps=args.steps,
        size=(args.size, args.size),
        mixed_precision="no",
        rank=args.rank,
        train_batch_size=args.batch,
        learning_rate=1e-4,
        seed=1,
        checkpointing_steps=0,
        sample_steps=0,
    )
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(scratch) / "bench.db")
        tune_id = store.add_tune({"title": "bench", "name": "man", "token": "ohwx", "model_type": "lora"})
        store.enqueue_job("train", tune_id, limit=10)
        context = JobContext(store, store.claim_job())
        result = train_lora(
            model,
            args.family,
            photos(args.images),
            settings,
            Path(scratch) / "out",
            title="bench",
            trigger="ohwx",
            device=args.device,
            on_step=context.on_step,
            should_stop=context.should_stop,
        )
        store.close()
    return result.seconds_per_step


def run_bare(model: str, args) -> float:
    """The loop of NOTES-offline §3, written the plain way."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")  # fmt: skip
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None).to(device)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    torch.manual_seed(1)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))  # fmt: skip
    cast_training_params(unet, dtype=torch.float32)
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-4)
    images = [np.asarray(p.resize((args.size, args.size)), dtype=np.float32) / 127.5 - 1 for p in photos(args.images)]
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        ids = tokenizer([PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        embeds = text_encoder(ids.to(device))[0]
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(1)
    unet.train()
    started = time.perf_counter()
    for _ in range(args.steps):
        batch = torch.randint(0, len(images), (args.batch,), generator=generator).tolist()
        latents = (dist.mean[batch] + dist.std[batch] * torch.randn(dist.mean[batch].shape, generator=generator)
                   .to(device)) * vae.config.scaling_factor  # fmt: skip
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(0, 1000, (args.batch,), generator=generator).to(device)
        prediction = unet(noise_scheduler.add_noise(latents, noise, timesteps), timesteps,
                          embeds.repeat(args.batch, 1, 1)).sample  # fmt: skip
        F.mse_loss(prediction, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / args.steps


def run_bare_flux(model: str, args) -> float:
    """The same flow-matching step written the plain way (diffusers' Flux DreamBooth recipe)."""
    import numpy as np
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from diffusers.training_utils import cast_training_params, compute_density_for_timestep_sampling
    from peft import LoraConfig

    from studio.families import FAMILIES
    from studio.training import lora_target_modules

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")  # fmt: skip
    pipe = FluxPipeline.from_pretrained(model).to(device)
    transformer, vae = pipe.transformer, pipe.vae
    for module in (transformer, vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
    torch.manual_seed(1)
    targets = lora_target_modules(transformer, FAMILIES["flux1"].lora_targets)
    transformer.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                       target_modules=targets))  # fmt: skip
    cast_training_params(transformer, dtype=torch.float32)
    optimizer = torch.optim.AdamW([p for p in transformer.parameters() if p.requires_grad], lr=1e-4)
    images = [np.asarray(p.resize((args.size, args.size)), dtype=np.float32) / 127.5 - 1 for p in photos(args.images)]
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        embeds, pooled, text_ids = pipe.encode_prompt(PROMPT, prompt_2=None, device=device, max_sequence_length=512)
    schedule = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(1)
    _, channels, height, width = dist.mean.shape
    img_ids = pipe._prepare_latent_image_ids(1, height // 2, width // 2, device, torch.float32)
    guidance = torch.full((args.batch,), 3.5, device=device)
    transformer.train()
    started = time.perf_counter()
    for _ in range(args.steps):
        batch = torch.randint(0, len(images), (args.batch,), generator=generator).tolist()
        latents = dist.mean[batch] + dist.std[batch] * torch.randn(dist.mean[batch].shape, generator=generator)
        latents = (latents.to(device) - vae.config.shift_factor) * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(device)
        u = compute_density_for_timestep_sampling("logit_normal", args.batch, logit_mean=0.0, logit_std=1.0,
                                                  generator=generator)  # fmt: skip
        indices = (u * 1000).long()
        sigmas = schedule.sigmas[indices].to(device).view(-1, 1, 1, 1)
        noisy = (1 - sigmas) * latents + sigmas * noise
        pack = lambda x: pipe._pack_latents(x, args.batch, channels, height, width)  # noqa: E731
        prediction = transformer(hidden_states=pack(noisy), timestep=schedule.timesteps[indices].to(device) / 1000,
                                 guidance=guidance, pooled_projections=pooled.repeat(args.batch, 1),
                                 encoder_hidden_states=embeds.repeat(args.batch, 1, 1), txt_ids=text_ids,
                                 img_ids=img_ids, return_dict=False)[0]  # fmt: skip
        ((prediction.float() - pack(noise - latents).float()) ** 2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / args.steps


def child(kind: str, model: str, args) -> None:
    import torch

    bare = run_bare_flux if args.family == "flux1" else run_bare
    run = run_studio if kind == "studio" else bare
    seconds = min(run(model, args) for _ in range(args.rounds))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"seconds_per_step": seconds, "peak_rss_mb": peak_rss_mb, "peak_cuda_mb": cuda_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="sd15,flux1", help="comma-separated: sd15, flux1")
    parser.add_argument("--steps", type=int, default=200, help="sd15 row")
    parser.add_argument("--size", type=int, default=64, help="sd15 row")
    parser.add_argument("--flux-steps", type=int, default=30, help="flux1 row")
    parser.add_argument("--flux-size", type=int, default=128, help="flux1 row")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="child processes per variant")
    parser.add_argument("--rounds", type=int, default=3, help="training runs per child (its best counts)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="a diffusers SD 1.5 folder for the sd15 row (default: the embedded demo)")
    parser.add_argument("--family", default="sd15", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("studio", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        child(args.child, args.model, args)
        return

    with tempfile.TemporaryDirectory() as scratch:
        for row in args.rows.split(","):
            if row == "flux1":
                model = build_flux_model(Path(scratch) / "flux1")
                steps, size = args.flux_steps, args.flux_size
            else:
                model = args.model
                if model is None:
                    from studio.demo_model import ensure_demo_model

                    model = str(ensure_demo_model(Path(scratch) / "demo"))
                steps, size = args.steps, args.size
            forwarded = [f"--{k}={getattr(args, k)}" for k in ("batch", "rank", "images", "device", "rounds")]
            forwarded += [f"--family={row}", f"--steps={steps}", f"--size={size}"]
            results: dict[str, list[dict]] = {"bare": [], "studio": []}
            for _ in range(args.repeats):
                for kind in ("bare", "studio"):
                    out = subprocess.run(
                        [sys.executable, __file__, f"--child={kind}", f"--model={model}", *forwarded],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=ROOT,
                    )
                    results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
            report(row, steps, size, args, results)


def report(row: str, steps: int, size: int, args, results: dict[str, list[dict]]) -> None:
    best = {kind: min(r["seconds_per_step"] for r in runs) for kind, runs in results.items()}
    shape = "FLUX.1-shaped (2 double + 4 single blocks)" if row == "flux1" else "SD 1.5 demo"
    print(f"{row}: LoRA training, {shape}, {steps} steps at {size} px, batch {args.batch}, rank {args.rank}:")
    for kind in ("bare", "studio"):
        runs = results[kind]
        steps_ms = ", ".join(f"{r['seconds_per_step'] * 1000:.1f}" for r in runs)
        rss = max(r["peak_rss_mb"] for r in runs)
        cuda = runs[0]["peak_cuda_mb"]
        memory = f"peak RSS {rss:.0f} MB" + (f", peak CUDA {cuda:.0f} MB" if cuda is not None else "")
        print(f"  {kind:6s}: best {best[kind] * 1000:.1f} ms/step (runs: {steps_ms}); {memory}")
    ratio = best["studio"] / best["bare"]
    print(f"  studio / bare = {ratio:.3f}  (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
