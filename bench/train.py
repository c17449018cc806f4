"""How much does the studio add to a LoRA training step? Times `studio.training.train_lora`, run
through a real job context (progress written to SQLite, cancel checked every step), against a
bare peft training loop doing the same work (cached latents and prompt embedding, DDPM noise,
MSE on the noise, AdamW) on the same tiny model, in the same run.

    .venv/bin/python bench/train.py                   # the embedded demo model, 200 steps at 64 px
    .venv/bin/python bench/train.py --steps 400 --size 128 --batch 2

Each measurement runs in a fresh child process (so peak memory is that run's own), bare and
studio alternating, `--repeats` times each, each child training `--rounds` times; the best
seconds per step of each variant is compared (other work on the machine only slows runs). The
target (issue 5) is studio / bare <= 1.10. Peak memory is the child's peak RSS (and the peak
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
            "sd15",
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


def child(kind: str, model: str, args) -> None:
    import torch

    run = run_studio if kind == "studio" else run_bare
    seconds = min(run(model, args) for _ in range(args.rounds))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"seconds_per_step": seconds, "peak_rss_mb": peak_rss_mb, "peak_cuda_mb": cuda_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="child processes per variant")
    parser.add_argument("--rounds", type=int, default=3, help="training runs per child (its best counts)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="a diffusers SD 1.5 folder (default: the embedded demo model)")
    parser.add_argument("--child", choices=("studio", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        child(args.child, args.model, args)
        return

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from studio.demo_model import ensure_demo_model

            model = str(ensure_demo_model(Path(scratch) / "demo"))
        forwarded = [
            f"--{k}={getattr(args, k)}" for k in ("steps", "size", "batch", "rank", "images", "device", "rounds")
        ]
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
    best = {kind: min(r["seconds_per_step"] for r in runs) for kind, runs in results.items()}
    print(f"LoRA training, {args.steps} steps at {args.size} px, batch {args.batch}, rank {args.rank}:")
    for kind in ("bare", "studio"):
        runs = results[kind]
        steps = ", ".join(f"{r['seconds_per_step'] * 1000:.1f}" for r in runs)
        rss = max(r["peak_rss_mb"] for r in runs)
        cuda = runs[0]["peak_cuda_mb"]
        memory = f"peak RSS {rss:.0f} MB" + (f", peak CUDA {cuda:.0f} MB" if cuda is not None else "")
        print(f"  {kind:6s}: best {best[kind] * 1000:.1f} ms/step (runs: {steps}); {memory}")
    ratio = best["studio"] / best["bare"]
    print(f"  studio / bare = {ratio:.3f}  (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
