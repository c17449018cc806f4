"""What each prompt option of issue 17 adds to a generation on the embedded demo model.

Times, interleaved after a warm-up, `Engine.generate` plain against the same request with one
option on: color grading (Film Portra), film grain, both, and A1111 prompt weights (a weighted
prompt of two 75-token windows, against the same text unweighted and truncated by the pipeline).
Prints the median seconds of each and its ratio to the plain run in the same process, then
the look steps alone on a 1024x1024 image (what they add per image at SDXL/FLUX size; they run
on the CPU in numpy/PIL whatever the device).

    .venv/bin/python bench/passes.py                  # 256 px, 8 steps, 5 rounds
    .venv/bin/python bench/passes.py --size 128 --steps 4 --reps 3
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from studio import look  # noqa: E402
from studio.demo_model import ensure_demo_model  # noqa: E402
from studio.engine import Engine, GenerateRequest  # noqa: E402

LONG = "portrait of a woman, studio light, 85mm lens, " * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        model = ensure_demo_model(Path(scratch) / "demo")
        engine = Engine("cpu")
        plain = GenerateRequest(
            model=str(model), prompt=LONG, num_inference_steps=args.steps, width=args.size, height=args.size
        )
        cases = {
            "plain": plain,
            "color_grading": dataclasses.replace(plain, color_grading="Film Portra"),
            "film_grain": dataclasses.replace(plain, film_grain=True),
            "grading+grain": dataclasses.replace(plain, color_grading="Film Portra", film_grain=True),
            "prompt weights": dataclasses.replace(plain, prompt=LONG + "(red hair:1.3)", prompt_weights=True),
        }
        engine.generate(plain)  # warm-up: load the model
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.reps):
            for name, request in cases.items():
                start = time.perf_counter()
                engine.generate(request)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain"])
    print(f"demo model, {args.size} px, {args.steps} steps, median of {args.reps} (CPU)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16s} {median:7.3f} s   ratio {median / base:5.3f}   adds {1000 * (median - base):+7.1f} ms")
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    for name, step in (
        ("color_grading", lambda: look.grade(big, "Film Portra")),
        ("film_grain", lambda: look.add_grain(big, 1)),
    ):
        took = []
        for _ in range(args.reps):
            start = time.perf_counter()
            step()
            took.append(time.perf_counter() - start)
        print(f"{name:16s} alone on 1024x1024: {1000 * statistics.median(took):6.1f} ms")


if __name__ == "__main__":
    main()
