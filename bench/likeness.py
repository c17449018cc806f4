"""What does likeness scoring add to a demo-model generation, and what does it score?

Builds the embedded demo model, a face analyzer (the studio's backend: STUDIO_FACE_BACKEND, auto)
and a reference embedding of one person from the test photo set (Rachel, from insightface's
t1.jpg, and her mirror image), then times, interleaved after a warm-up:

- one image through `Engine.generate` at the studio's defaults for the demo model (256 px,
  30 steps, euler_a, CFG 7), and in mock mode (branch=fast: 4 steps);
- `likeness.score_image` on that image as the demo model drew it (no face: detection only),
  with the subject's face pasted in (detection + one embedding), and with two faces pasted in;

and prints each scoring cost as a share of one generated image (target < 10 % of the default
generation; the scoring includes the copy check against the training photos' faces, as a LoRA
tune's images get), what best-of costs per candidate (`best_of=3` of a default generation: each
candidate is one generation plus its scoring, and choosing is free), the one-time costs (loading the analyzer, a LoRA tune's reference from photos), and
the scores of the known cases: the subject's face (positive) and another person's (negative)
against the backend's same-person threshold.

    .venv/bin/python bench/likeness.py
    .venv/bin/python bench/likeness.py --reps 9 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test photo set (photos shipped inside packages)

from photos import friend, mirrored, rotated  # noqa: E402

from studio import likeness  # noqa: E402
from studio.demo_model import ensure_demo_model  # noqa: E402
from studio.engine import Engine, GenerateRequest  # noqa: E402
from studio.faces import open_analyzer  # noqa: E402

HEADS = {"rachel": (40, 100, 340, 400), "joey": (100, 60, 400, 360)}


def head(name: str, side: int):
    crop = friend(name).crop(HEADS[name])
    return (rotated(crop, 6) if name == "rachel" else crop).resize((side, side))


def pasted(image, *placed):
    out = image.copy()
    for name, side, at in placed:
        out.paste(head(name, side), at)
    return np.asarray(out)


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each kind (medians are printed)")
    parser.add_argument("--size", type=int, default=256, help="the demo model's image side (STUDIO_DEMO_SIZE)")
    parser.add_argument("--steps", type=int, default=30, help="the studio's default steps")
    parser.add_argument("--mock-steps", type=int, default=4, help="steps in mock mode (branch=fast)")
    parser.add_argument("--backend", default="auto", help="face backend: auto, dlib or insightface")
    parser.add_argument("--threads", type=int, help="torch CPU threads (fewer is steadier on a shared machine)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    # 1. One-time costs: the analyzer, and a reference from photos (what a LoRA tune gets once).
    started = time.perf_counter()
    analyzer = open_analyzer(args.backend)
    load = time.perf_counter() - started
    photos = [np.asarray(friend("rachel")), np.asarray(mirrored(friend("rachel")))]
    started = time.perf_counter()
    reference = likeness.reference_from_photos(analyzer, photos)
    from_photos = time.perf_counter() - started
    crops = likeness.best_faces(analyzer, photos)  # the copy check compares with the training photos
    threshold = likeness.similarity_threshold(analyzer.same_person_distance)

    engine = Engine("auto")
    with tempfile.TemporaryDirectory(prefix="bench-likeness-") as tmp:
        demo = ensure_demo_model(Path(tmp) / "demo")
        common = {"model": str(demo), "prompt": "a portrait of ohwx woman", "seed": 1, "scheduler": "euler_a"}
        common.update(width=args.size, height=args.size, guidance_scale=7.0)
        default = GenerateRequest(num_inference_steps=args.steps, **common)
        mock = GenerateRequest(num_inference_steps=args.mock_steps, **common)
        image = engine.generate(default)[0].image  # also the warm-up
        engine.generate(mock)
        side = args.size // 2
        cases = {
            "no face (as drawn)": np.asarray(image),
            "subject's face": pasted(image, ("rachel", side, (side // 2, side // 2))),
            "two faces": pasted(image, ("joey", side - 8, (0, 0)), ("rachel", side - 8, (side + 8, side + 8))),
        }
        negative = pasted(image, ("joey", side, (side // 2, side // 2)))
        for rgb in cases.values():
            likeness.score_image(analyzer, reference, rgb, crops)

        # 2. Interleaved: a generation of each kind, then each scoring case.
        times: dict[str, list[float]] = {"default": [], "mock": [], **{name: [] for name in cases}}
        for _ in range(args.reps):
            times["default"].append(timed(lambda: engine.generate(default)))
            times["mock"].append(timed(lambda: engine.generate(mock)))
            for name, rgb in cases.items():
                times[name].append(timed(lambda rgb=rgb: likeness.score_image(analyzer, reference, rgb, crops)))
        median = {name: statistics.median(values) for name, values in times.items()}

        # best_of=3 as the prompt runner does it (studio/services/best_of.py): three rounds of
        # generation, each scored, the most alike kept.
        from studio.services.best_of import generate_best_of

        def score(images):
            return [likeness.score_image(analyzer, reference, np.asarray(i), crops) for i in images]

        best = []
        for _ in range(max(1, args.reps // 2)):
            best.append(timed(lambda: generate_best_of(lambda r, **_: engine.generate(r), score, default, 3)))
        per_candidate = statistics.median(best) / 3
        with_face = median["subject's face"]

        # 3. The known cases.
        positive = likeness.score_image(analyzer, reference, cases["subject's face"])
        other = likeness.score_image(analyzer, reference, negative)
        both = likeness.score_image(analyzer, reference, cases["two faces"])

    print(
        f"generation, {args.size}x{args.size} on {engine.device}: default {args.steps} steps "
        f"{median['default']:.3f} s, mock {args.mock_steps} steps {median['mock']:.3f} s ({args.reps} runs, medians)"
    )
    for name in cases:
        cost = median[name]
        print(
            f"likeness, {name}: {cost * 1000:.0f} ms = {100 * cost / median['default']:.1f} % of a default "
            f"generation (target < 10 %), {100 * cost / median['mock']:.1f} % of a mock one"
        )
    print(
        f"best_of=3: {statistics.median(best):.3f} s for 3 candidates = {per_candidate:.3f} s per candidate "
        f"({per_candidate / median['default']:.2f}x one default generation; the scoring's share "
        f"{100 * with_face / per_candidate:.1f} % with a face)"
    )
    print(
        f"one-time: loading the {analyzer.name} analyzer {load:.2f} s; a reference from "
        f"{len(photos)} photos {from_photos:.2f} s"
    )
    print(
        f"known positive (subject's face): score {positive['score']:.3f}, distance {positive['distance']:.3f}, "
        f"same person {positive['same_person']}; known negative (another person): score {other['score']:.3f}, "
        f"distance {other['distance']:.3f}, same person {other['same_person']}; both in one image: "
        f"{both['faces']} faces, best {both['score']:.3f} (face {both['face']['index']}); "
        f"{analyzer.name} same person from {threshold} (distance < {analyzer.same_person_distance})"
    )


if __name__ == "__main__":
    main()
