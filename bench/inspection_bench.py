"""How fast are photos inspected? Builds N photos of 1024 px (JPEG, from the real photos shipped in
insightface's and scikit-image's packages, see tests/photos.py), then runs the studio's inspection
stage by stage with the configured face backend (default: dlib, offline):

    decode   bytes -> upright RGB (`inspection.decode_photo`)
    detect   faces and landmarks (`analyzer.detect`, plus the closer second look when none)
    embed    identity vector of the best face (`analyzer.embed`)
    checks   every per-photo finding and characteristic (`inspection.check_photo`)
    set      the report card over all photos (`inspection_report.report_card`)

    .venv/bin/python bench/inspection_bench.py                 # 30 photos, dlib
    .venv/bin/python bench/inspection_bench.py --photos 60 --backend insightface

Prints photos per second and milliseconds per photo for each stage, and the ratio to a bare
baseline: plain PIL decoding plus dlib's detector and descriptor called directly, the least any
dlib-based inspection must do. The target (issue 4) is at least 5 photos/s on a 2-core CPU; the
studio/baseline ratio target (issue 20) is at most 1.1. What the studio does beyond the
baseline is itemised: each per-photo check's cost, and the photos where the first look found no
face (the baseline gives up there; the studio looks again, which is what a missed face costs).
Run it on a quiet machine: the load average before and after is printed.
"""

from __future__ import annotations

import argparse  # noqa: E402
import logging  # noqa: E402
import os
import statistics  # noqa: E402
import sys
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import photos as P  # noqa: E402

from studio import inspection, inspection_report  # noqa: E402
from studio.faces import open_analyzer  # noqa: E402


def photo_set(count: int, side: int = 1024) -> list[tuple[str, bytes]]:
    """`count` JPEGs with their long side at `side` px: the astronaut in several framings, the
    six people of t1.jpg, the group photo itself, and edits of them (blur, dark, sunglasses)."""
    astronaut = P.astronaut()
    sources = [
        astronaut,
        P.mirrored(astronaut),
        P.rotated(astronaut, 7),
        P.cropped(astronaut, (60, 0, 420, 360)),
        P.with_sunglasses(astronaut, P.ASTRONAUT_EYES),
        P.blurred(astronaut, 2),
        P.darkened(astronaut, 0.3),
        P.group(),
        *(P.friend(name) for name in P.FRIENDS),
    ]
    return [(f"photo{i:02d}.jpg", P.encode(P.scaled(sources[i % len(sources)], side))) for i in range(count)]


def run_studio(files: list[tuple[str, bytes]], analyzer) -> dict[str, list[float]]:
    """Inspect every photo as the studio does; returns CPU seconds per stage and photo (CPU
    time, not wall time: on a busy machine wall time also counts waiting for a core)."""
    clock = time.process_time
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "embed": [], "checks": []}
    inspections = []
    for filename, data in files:
        started = clock()
        rgb = inspection.decode_photo(data, filename).rgb()
        decoded = clock()
        faces = analyzer.detect(rgb) or analyzer.detect(rgb, small_faces=True)
        detected = clock()
        embedding = analyzer.embed(rgb, faces[0]) if faces else None
        embedded = clock()
        inspections.append(inspection.check_photo(rgb, faces, embedding, backend=analyzer.name))
        checked = clock()
        stages["decode"].append(decoded - started)
        stages["detect"].append(detected - decoded)
        stages["embed"].append(embedded - detected)
        stages["checks"].append(checked - embedded)
    started = clock()
    inspection_report.report_card(inspections, analyzer.same_person_distance)
    stages["set"] = [clock() - started]
    return stages


def check_costs(files: list[tuple[str, bytes]], analyzer) -> dict[str, float]:
    """CPU ms per photo of each part of `inspection.check_photo`, called as it calls them."""
    import cv2

    from studio import inspection_checks as C

    costs: dict[str, float] = {}

    def timed(name, call):
        started = time.process_time()
        value = call()
        costs[name] = costs.get(name, 0.0) + (time.process_time() - started) * 1000 / len(files)
        return value

    for filename, data in files:
        rgb = inspection.decode_photo(data, filename).rgb()
        faces = analyzer.detect(rgb) or analyzer.detect(rgb, small_faces=True)
        subject = faces[0] if faces else None
        gray = timed("grey copy", lambda rgb=rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        timed("quality (blur, light)", lambda gray=gray, subject=subject: C.quality_findings(gray, subject))
        timed("framing", lambda gray=gray, faces=faces: C.framing_findings(gray.shape, faces, None))
        if subject is not None:
            timed("appearance (looks, hair)", lambda rgb=rgb, subject=subject: C.appearance(rgb, subject, {}))
        timed("duplicate hash", lambda gray=gray: C.perceptual_hash(gray))
        timed("background histogram", lambda rgb=rgb: C.border_histogram(rgb))
    return costs


def second_looks(files: list[tuple[str, bytes]], analyzer) -> tuple[int, int, float]:
    """(photos whose first look at the detector's scale found nothing, those the studio then
    found a face in, CPU ms per photo of the set that the looks after the first cost)."""
    missed = found = 0
    extra = 0.0
    for filename, data in files:
        rgb = inspection.decode_photo(data, filename).rgb()
        started = time.process_time()
        first, _, _ = analyzer._detector.run(rgb, 0, analyzer.detect_threshold)  # the baseline's look
        first_look = time.process_time() - started
        if len(first):
            continue
        missed += 1
        started = time.process_time()
        faces = analyzer.detect(rgb) or analyzer.detect(rgb, small_faces=True)
        extra += time.process_time() - started - first_look
        found += bool(faces)
    return missed, found, extra * 1000 / len(files)


def run_baseline(files: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(wall, CPU) seconds for plain PIL decoding + dlib HOG (upsample 0) + 5-point shape +
    descriptor of the best face."""
    import io

    import dlib
    from PIL import Image

    from studio.faces import dlib_models_dir

    folder = dlib_models_dir()
    detector = dlib.get_frontal_face_detector()
    shape5 = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    resnet = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    started, cpu_started = time.perf_counter(), time.process_time()
    for _, data in files:
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        rects, scores, _ = detector.run(rgb, 0, 0.3)
        if len(rects):
            best = rects[int(np.argmax(scores))]
            resnet.compute_face_descriptor(rgb, shape5(rgb, best))
    return time.perf_counter() - started, time.process_time() - cpu_started


def pooled(files: list[tuple[str, bytes]], backend: str, workers: int) -> None:
    """The whole set through `InspectionPool`, as `Studio.inspect_set` runs it: wall time
    (decoding included), the time to start the pool, and the CPU time its workers spend per
    photo once started: a first pool that only starts gives the start-up cost to subtract."""
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # terminated children only
        return usage.ru_utime + usage.ru_stime

    warm_up = [photo.rgb() for photo in (inspection.decode_photo(data, name) for name, data in files[:workers])]
    before = children_cpu()
    pool = inspection.InspectionPool(backend, workers)
    pool.analyze(warm_up)
    pool.close()
    start_up = children_cpu() - before

    started = time.perf_counter()
    pool = inspection.InspectionPool(backend, workers)
    try:
        pool.analyze(warm_up)
        cold = time.perf_counter() - started
        started, parent = time.perf_counter(), time.process_time()
        pool.analyze([inspection.decode_photo(data, name).rgb() for name, data in files])
        wall, parent = time.perf_counter() - started, time.process_time() - parent
    finally:
        pool.close()
    steady = children_cpu() - before - 2 * start_up
    count = len(files)
    print(
        f"  pool of {workers} processes: {count / wall:.2f} photos/s wall now; starting it took {cold:.2f} s "
        f"({start_up / workers:.2f} s CPU per worker)"
    )
    # With `workers` free cores the rate is bounded by the busiest of the parent and the workers.
    bound = max(parent, steady / workers)
    print(
        f"  pool CPU per photo: workers {steady / count * 1000:.1f} ms, parent (decode, transfer) "
        f"{parent / count * 1000:.1f} ms -> {count / bound:.2f} photos/s with {workers} free cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--backend", default="dlib", choices=("auto", "dlib", "insightface"))
    parser.add_argument("--workers", type=int, default=2, help="processes for the pooled run (Studio.inspect_set)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    files = photo_set(args.photos, args.side)
    started = time.perf_counter()
    analyzer = open_analyzer(args.backend)
    load = time.perf_counter() - started
    run_studio(files[:2], analyzer)  # warm caches (cv2, dlib's first-call allocations)
    started = time.perf_counter()
    stages = run_studio(files, analyzer)
    wall = time.perf_counter() - started
    cpu = sum(sum(values) for values in stages.values())

    print(f"{args.photos} photos of {args.side} px, backend {analyzer.name} (loaded in {load:.2f} s, not counted)")
    for stage, values in stages.items():
        per = sum(values) / (len(values) if stage != "set" else args.photos) * 1000
        print(f"  {stage:7s} {per:7.1f} ms/photo (CPU; median {statistics.median(values) * 1000:6.1f} ms per call)")
    print(f"  total   {cpu / args.photos * 1000:7.1f} ms/photo CPU -> {args.photos / cpu:.2f} photos/s (target >= 5)")
    print(
        f"  wall    {wall / args.photos * 1000:7.1f} ms/photo -> {args.photos / wall:.2f} photos/s on this machine now"
    )
    if args.workers > 1:
        pooled(files, analyzer.name, args.workers)
    print("  checks, CPU ms per photo (each finding the report card and the characteristics need):")
    for name, ms in check_costs(files, analyzer).items():
        print(f"    {name:26s} {ms:6.1f}")
    if analyzer.name == "dlib":
        missed, found, extra = second_looks(files, analyzer)
        print(
            f"  first look found no face in {missed} of {args.photos} photos; the looks after it found one in "
            f"{found} (faces the baseline misses), costing {extra:.1f} ms per photo of the set"
        )
        baseline, baseline_cpu = run_baseline(files)
        print(
            f"  bare dlib baseline: {args.photos / baseline:.2f} photos/s ({args.photos / baseline_cpu:.2f} by CPU time); "
            f"studio/baseline ratio {wall / baseline:.2f} (CPU {cpu / baseline_cpu:.2f})"
        )
    print(f"  load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (other processes share the CPU)")


if __name__ == "__main__":
    main()
