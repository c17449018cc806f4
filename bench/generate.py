"""How much does the studio add to a diffusers generation, and how fast does it switch LoRAs?

For three models, all with random weights built here and loaded through the engine's normal path:
- demo: the embedded demo model (tiny SD-1.5 shape);
- mid: SD 1.5's real UNet shape (860M parameters), real VAE shape, a 12-layer 768-wide CLIP
  text encoder, run at a reduced resolution so a CPU finishes in minutes;
- flux: FLUX.1 [dev]'s block layout (double- then single-stream blocks with 128-wide heads,
  the guidance embedding, the 16-channel VAE at its real shape, CLIP and T5 text encoders) at
  reduced depth and width (2 + 4 blocks of 4 heads, small encoders), so a CPU finishes in minutes;

it times, interleaved and after a warm-up, (a) `Engine.generate` (validation, scheduler, seeds,
progress callback, PNG encoding with A1111 parameters) against the bare diffusers call on the
same loaded pipeline with the same request, and prints the ratio (target <= 1.05); (b) making a
cached LoRA active (`set_adapters`) against loading a new LoRA file from disk.

    .venv/bin/python bench/generate.py                 # both models
    .venv/bin/python bench/generate.py --skip-mid      # the demo model only (seconds)
    .venv/bin/python bench/generate.py --mid-size 256 --mid-steps 8 --mid-reps 6
    .venv/bin/python bench/generate.py --only-flux         # the Flux-shaped row alone
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu import MODELS, build_model  # noqa: E402  (bench/gpu.py: real architectures, random weights)

from studio.demo_model import ensure_demo_model  # noqa: E402
from studio.engine import Engine, GenerateRequest, make_scheduler  # noqa: E402


def write_lora(pipe, path: Path, *, seed: int, rank: int = 8) -> Path:
    """A kohya-format LoRA on every UNet attention projection of `pipe`."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in pipe.unet.named_modules():
        if name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith("to_out.0"):
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.01
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.01
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path))
    return path


def write_flux_lora(pipe, path: Path, *, seed: int, rank: int = 8) -> Path:
    """A diffusers-format LoRA on every attention and MLP projection FLUX.1 LoRAs train."""
    import torch
    from safetensors.torch import save_file

    from studio.families import family

    targets = family("flux1").lora_targets
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            tensors[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator)
            tensors[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator)
    save_file({k: v * 0.01 for k, v in tensors.items()}, str(path))
    return path


def build_flux_shaped(folder: Path) -> Path:
    """FLUX.1 [dev]'s architecture at reduced depth and width, random weights, saved."""
    import torch
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel

    from studio.demo_flux import build_flux1_pipeline

    small = build_flux1_pipeline(width=256)  # tokenizers, scheduler and small CLIP/T5 encoders
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels packed 2x2, as in FLUX.1
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=128,
        num_attention_heads=4,
        joint_attention_dim=256,
        pooled_projection_dim=256,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    components = {**small.components, "transformer": transformer, "vae": vae}
    FluxPipeline(**components).save_pretrained(folder, safe_serialization=True)
    return folder


def overhead(engine: Engine, request: GenerateRequest, reps: int) -> dict[str, list[float]]:
    """Seconds of each studio generate and bare diffusers call, interleaved (the order flips
    every round so neither always runs on a warmer cache), after a warm-up of each."""
    import torch

    pipe = engine.load_model(request.model, request.family)

    def bare() -> None:
        pipe.scheduler = make_scheduler(request.scheduler, dict(pipe.scheduler.config), request.family)
        pipe(
            prompt=request.prompt,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            width=request.width,
            height=request.height,
            generator=[torch.Generator().manual_seed(request.seed)],
        )

    def studio() -> None:
        engine.generate(request, on_step=lambda step, total: None, should_stop=lambda: False)

    bare(), studio()
    times: dict[str, list[float]] = {"bare": [], "studio": []}
    for rep in range(reps):
        order = [("bare", bare), ("studio", studio)] if rep % 2 == 0 else [("studio", studio), ("bare", bare)]
        for name, run in order:
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def lora_switching(engine: Engine, model: str, folder: Path, reps: int, family: str = "sd15") -> tuple[float, float]:
    """Median seconds to (load a new LoRA file and activate it, switch to a cached one)."""
    pipe = engine.load_model(model, family)
    writer = write_flux_lora if family == "flux1" else write_lora
    first, second = (writer(pipe, folder / f"cached{i}.safetensors", seed=i) for i in (1, 2))
    engine.activate_loras([("a", first, 1.0)])
    engine.activate_loras([("b", second, 1.0)])
    loads, switches = [], []
    for rep in range(reps):
        fresh = shutil.copy(first, folder / f"fresh{rep}.safetensors")  # a new file: nothing cached
        started = time.perf_counter()
        engine.activate_loras([("fresh", fresh, 1.0)])
        loads.append(time.perf_counter() - started)
        for path in (first, second):
            started = time.perf_counter()
            engine.activate_loras([("cached", path, 1.0)])
            switches.append(time.perf_counter() - started)
    engine.activate_loras([])
    return statistics.median(loads), statistics.median(switches)


def report(label: str, engine: Engine, request: GenerateRequest, folder: Path, reps: int) -> None:
    times = overhead(engine, request, reps)
    studio, bare = statistics.median(times["studio"]), statistics.median(times["bare"])
    print(
        f"{label}: {request.width}x{request.height}, {request.num_inference_steps} steps, {request.scheduler}, "
        f"{reps} runs each: studio {studio:.3f} s / bare diffusers {bare:.3f} s = {studio / bare:.3f} "
        f"(medians; fastest runs {min(times['studio']) / min(times['bare']):.3f}; target <= 1.05)"
    )
    load, switch = lora_switching(engine, request.model, folder, reps, request.family)
    print(
        f"{label}: LoRA from disk {load * 1000:.1f} ms vs switch between cached LoRAs {switch * 1000:.1f} ms "
        f"({load / switch:.0f}x faster to switch)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each kind (medians are printed)")
    parser.add_argument("--demo-size", type=int, default=256)
    parser.add_argument("--demo-steps", type=int, default=20)
    parser.add_argument("--mid-size", type=int, default=192)
    parser.add_argument("--mid-steps", type=int, default=6)
    parser.add_argument("--mid-reps", type=int, default=4)
    parser.add_argument("--skip-mid", action="store_true", help="skip the SD-1.5-shaped model")
    parser.add_argument("--flux-size", type=int, default=256)
    parser.add_argument("--flux-steps", type=int, default=8)
    parser.add_argument("--flux-reps", type=int, default=4)
    parser.add_argument("--skip-flux", action="store_true", help="skip the FLUX.1-shaped model")
    parser.add_argument("--only-flux", action="store_true", help="time the FLUX.1-shaped model only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (fewer is steadier on a shared machine)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    engine = Engine(args.device)
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        demo = ensure_demo_model(root / "demo")
        common = {"prompt": "a portrait of ohwx woman, blue jacket", "seed": 1, "scheduler": "euler_a"}
        request = GenerateRequest(
            model=str(demo), width=args.demo_size, height=args.demo_size, num_inference_steps=args.demo_steps, **common
        )
        if not args.only_flux:
            (root / "demo-loras").mkdir()
            report("demo", engine, request, root / "demo-loras", args.reps)
        if not (args.skip_mid or args.only_flux):
            started = time.perf_counter()
            mid = build_model(MODELS["sd15"], root / "mid", "cpu")
            print(f"mid: built an SD-1.5-shaped model in {time.perf_counter() - started:.0f} s")
            request = GenerateRequest(
                model=str(mid), width=args.mid_size, height=args.mid_size, num_inference_steps=args.mid_steps, **common
            )
            (root / "mid-loras").mkdir()
            report("mid", engine, request, root / "mid-loras", args.mid_reps)
        if not args.skip_flux:
            started = time.perf_counter()
            flux = build_flux_shaped(root / "flux")
            print(f"flux: built a FLUX.1-shaped model in {time.perf_counter() - started:.0f} s")
            request = GenerateRequest(
                model=str(flux),
                family="flux1",
                width=args.flux_size,
                height=args.flux_size,
                num_inference_steps=args.flux_steps,
                guidance_scale=3.5,
                **(common | {"scheduler": "euler"}),
            )
            (root / "flux-loras").mkdir()
            report("flux", engine, request, root / "flux-loras", args.flux_reps)
    print(f"device: {engine.device}, dtype: {engine.dtype}")


if __name__ == "__main__":
    main()
