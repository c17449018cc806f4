"""Does the studio scale out on Ray? Generation jobs per minute on the embedded demo model, in one
run: the in-process runner (the baseline), then 1 and N Ray engine workers (N = this machine's
cores, 2 here) on a local Ray instance bound to loopback, each worker with one CPU.

    .venv/bin/python bench/scale.py                  # 12 jobs per runner, 256 px, 8 steps
    .venv/bin/python bench/scale.py --jobs 6 --steps 4 --size 128

Each runner gets a fresh studio in each of --rounds rounds (taken in turn, the best kept), warms its engine(s) with one job per worker, then runs --jobs
prompts (queued at once, one image each, different seeds) through its job worker; the clock runs
from starting the worker to the last prompt's SUCCESS. The in-process baseline runs with as many
torch threads as one Ray worker has CPUs, so "1 worker vs in-process" is the cost of the
boundary (shipping the request, relaying progress, the PNGs coming back), not a thread count.

Targets: N workers >= 1.7 x the jobs/min of 1 worker; 1 Ray worker >= 0.9 x in-process. On a
machine whose cores other processes use too, the scaling figure is lower: the load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def jobs_per_minute(demo: Path, home: Path, *, jobs: int, steps: int, size: int, workers: int, **settings) -> float:
    from storage.status import SUCCESS
    from studio.config import Settings
    from studio.core import Studio

    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo, target_is_directory=True)
    studio = Studio.open(Settings(home=home, **settings))
    try:

        def queue(count: int, first_seed: int) -> list[int]:
            request = {"text": "a photo of a dog", "num_images": 1, "steps": steps, "w": size, "h": size}
            return [studio.create_prompt(1, {**request, "seed": first_seed + n})["id"] for n in range(count)]

        def wait(ids: list[int]) -> None:
            while True:
                rows = [studio.store.get_prompt(i) for i in ids]
                if all(row["status"] == SUCCESS for row in rows):
                    return
                failed = [row for row in rows if row["status"] in ("FAILED", "CANCELED")]
                if failed:
                    raise SystemExit(f"a prompt failed: {failed[0]['message']}")
                time.sleep(0.02)

        warm = queue(workers, 1000)  # one per worker: every engine loaded before the clock
        studio.start_worker()
        wait(warm)
        studio.queue.worker.stop()
        ids = queue(jobs, 0)
        started = time.monotonic()
        studio.queue.worker.start()
        wait(ids)
        return jobs / (time.monotonic() - started) * 60
    finally:
        studio.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12, help="prompts per runner")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps per prompt")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three runners; the best is kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N, the larger Ray pool")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray
    import torch

    from studio.demo_model import ensure_demo_model

    shape = dict(jobs=args.jobs, steps=args.steps, size=args.size)
    with tempfile.TemporaryDirectory(prefix="studio-scale-") as folder:
        root = Path(folder)
        demo = ensure_demo_model(root / "demo")
        ray.init(
            address="local",
            num_cpus=args.workers,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
        )
        on_ray = dict(ray_address="auto", ray_worker_cpus=1)
        baseline = one = many = 0.0
        try:
            # The three runners in turn, each round; the best of each kept (other load comes and goes).
            for n in range(args.rounds):
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # as one Ray worker with one CPU
                baseline = max(baseline, jobs_per_minute(demo, root / f"local{n}", workers=1, **shape))
                torch.set_num_threads(threads)
                one = max(one, jobs_per_minute(demo, root / f"ray1-{n}", workers=1, ray_workers=1, **on_ray, **shape))
                wide = dict(workers=args.workers, ray_workers=args.workers)
                many = max(many, jobs_per_minute(demo, root / f"rayN-{n}", **wide, **on_ray, **shape))
        finally:
            ray.shutdown()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"generation jobs per minute, best of {args.rounds} round(s) "
        f"({args.jobs} jobs, {args.size} px, {args.steps} steps; load average {load})"
    )
    print(f"  in-process runner (1 torch thread): {baseline:7.1f}")
    print(f"  Ray, 1 worker (1 CPU):              {one:7.1f}")
    print(f"  Ray, {args.workers} workers (1 CPU each):       {many:7.1f}")
    print(f"ratio {args.workers} workers / 1 worker:   {many / one:.2f}  (target >= 1.7)")
    print(f"ratio 1 Ray worker / in-process: {one / baseline:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
