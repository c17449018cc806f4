"""What each second pass costs on the embedded demo model: face detailing, hires fix, mask
inpainting and two-person detailing, each against a plain generation of the same size and steps
in the same run, plus the face pass against the bare diffusers inpaint call it wraps.

The demo model draws no faces, so the face passes run on real photos (tests/photos.py): the
astronaut (one face), and two people side by side (two faces). Times are medians of `--reps`
interleaved runs after a warm-up, on the CPU unless `--device` says otherwise.

    .venv/bin/python bench/passes_faces.py
    .venv/bin/python bench/passes_faces.py --size 256 --steps 20 --reps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from studio.demo_model import ensure_demo_model, read_manifest  # noqa: E402
from studio.detailer import Person  # noqa: E402
from studio.engine import Engine, GenerateRequest, make_scheduler  # noqa: E402


def unit(seed: int) -> tuple[float, ...]:
    vector = np.random.RandomState(seed).randn(128)
    return tuple(float(v) for v in vector / np.linalg.norm(vector))


def timed(run, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import photos
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side (the demo size)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    folder = ensure_demo_model(Path(tempfile.gettempdir()) / "studio-bench-demo")
    faceid = str(folder / read_manifest(folder)["faceid"]["128"])
    engine = Engine(args.device, face_backend="dlib")
    size = args.size
    base = GenerateRequest(
        model=str(folder),
        prompt="ohwx woman, portrait, studio light",
        num_inference_steps=args.steps,
        width=size,
        height=size,
        seed=3,
        scheduler="euler",
        faceid_embedding=unit(1),
        faceid_adapter=faceid,
        detail_size=size,
    )
    astronaut = photos.astronaut().resize((size, size), Image.Resampling.LANCZOS)
    pair = Image.new("RGB", (size, size // 2))
    for place, name in enumerate(("rachel", "ross")):
        crop = photos.group().crop(photos.FRIENDS[name]).resize((size // 2, size // 2), Image.Resampling.LANCZOS)
        pair.paste(crop, (place * size // 2, 0))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, size // 2, size // 2, size))
    people = (
        Person("faceid 1", "ohwx woman", faceid_embedding=unit(1), faceid_adapter=faceid),
        Person("faceid 2", "ohwx man", faceid_embedding=unit(2), faceid_adapter=faceid),
    )
    runs = {
        "plain generation": lambda: engine.generate(base),
        "hires fix x2 (strength 0.5)": lambda: engine.generate(
            dataclasses.replace(base, hires_fix=True, hires_scale=2.0, hires_strength=0.5)
        ),
        "mask inpainting (strength 0.8)": lambda: engine.generate(
            dataclasses.replace(base, init_image=astronaut, mask_image=mask, strength=0.8)
        ),
        "face detailing, 1 face (pass alone)": lambda: engine.detail_faces(base, astronaut),
        "face detailing, 2 people (pass alone)": lambda: engine.detail_faces(
            dataclasses.replace(base, people=people, faceid_embedding=None, faceid_adapter=None), pair
        ),
    }

    # The bare diffusers call the face pass wraps: one inpaint of a size×size crop.
    pipe = engine.load_model(str(folder))
    from diffusers import StableDiffusionInpaintPipeline

    bare = StableDiffusionInpaintPipeline.from_pipe(pipe)
    bare.set_progress_bar_config(disable=True)
    bare.scheduler = make_scheduler("euler", engine.models.scheduler_config, "sd15")
    embeds = engine._prepare_ip_adapters(pipe, base)  # the FaceID the face pass uses too
    crop = astronaut.crop((64 * size // 256, 14 * size // 256, 154 * size // 256, 104 * size // 256)).resize(
        (size, size)
    )
    face_mask = Image.new("L", (size, size), 0)
    face_mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))

    def bare_inpaint():
        with torch.inference_mode():
            bare(
                prompt=base.prompt,
                image=crop,
                mask_image=face_mask,
                width=size,
                height=size,
                strength=0.4,
                num_inference_steps=args.steps,
                generator=torch.Generator().manual_seed(4),
                ip_adapter_image_embeds=embeds,
            )

    runs["bare diffusers inpaint, 1 crop"] = bare_inpaint
    for run in runs.values():  # warm-up: loads, detector weights, pipeline variants
        run()
    times = {name: 0.0 for name in runs}
    for name, run in runs.items():
        times[name] = timed(run, args.reps)
    plain = times["plain generation"]
    print(f"demo model, {size}x{size}, {args.steps} steps, {args.device}, median of {args.reps}")
    for name, seconds in times.items():
        print(f"  {name:40s} {seconds:7.3f} s   x{seconds / plain:5.2f} of a plain generation")
    detail = times["face detailing, 1 face (pass alone)"]
    print(
        f"  face pass / bare inpaint call: {detail / times['bare diffusers inpaint, 1 crop']:.2f} (detection, crop, paste)"
    )


if __name__ == "__main__":
    main()
