"""How fast are packs ranked? Seeds a studio with N packs whose prompts have been run and liked,
then times `Studio.list_packs()` (counters kept by triggers, scored in Python) against the bare
baseline: the same ranking from a JOIN + COUNT recount of the rows on every read.

    .venv/bin/python bench/rank.py                  # 1,000 packs, 200,000 likes
    .venv/bin/python bench/rank.py --packs 100 --likes 20000

Prints the median of several reads for each, the ratio, and checks that both agree. The target
(issue 6) is 1,000 packs with 200,000 likes ranked in under 100 ms.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio import packs  # noqa: E402
from studio.config import Settings  # noqa: E402
from studio.core import Studio  # noqa: E402

CLASSES = ("man", "woman")


def seed(
    studio: Studio, n_packs: int, n_likes: int, *, prompts_per_class: int = 5, runs: int = 5, images: int = 8
) -> None:
    """Fill the studio: each pack has `prompts_per_class` templates per class, each template
    was run `runs` times with `images` images, and `n_likes` likes are spread over them with a
    like rate that differs per pack. Written through the Store's verbs in one transaction."""
    rng = random.Random(6)
    store = studio.store
    with store.transaction():
        tune_id = store.add_tune({"title": "bench", "name": "woman", "token": "ohwx", "model_type": "lora"})
        targets = []  # (prompt_id, weight)
        for n in range(n_packs):
            pack_id = store.add_pack({"slug": f"bench-{n}", "title": f"Bench {n}", "classes": list(CLASSES)})
            quality = rng.betavariate(2, 5)
            for class_name in CLASSES:
                for k in range(prompts_per_class):
                    pack_prompt_id = store.add_pack_prompt(
                        {"pack_id": pack_id, "class_name": class_name, "text": f"{{{{token}}}} {{{{name}}}} {k}"}
                    )
                    for _ in range(runs):
                        prompt_id = store.add_prompt(
                            {"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": pack_prompt_id}
                        )
                        for idx in range(images):
                            store.add_image({"prompt_id": prompt_id, "idx": idx, "path": f"outputs/{prompt_id}-{idx}"})
                        targets.append((prompt_id, quality * rng.random()))
        prompt_ids = [t[0] for t in targets]
        weights = [t[1] for t in targets]
        added = 0
        while added < n_likes:
            for prompt_id in rng.choices(prompt_ids, weights, k=n_likes - added):
                added += store.add_like(prompt_id, f"user{rng.randrange(100)}", rng.randrange(-1, images))


def median_ms(fn, repeat: int) -> float:
    fn()  # warm the page cache and the statement cache
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, default=1000)
    parser.add_argument("--likes", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        studio = Studio.open(Settings(home=Path(home)))
        try:
            started = time.perf_counter()
            seed(studio, args.packs, args.likes)
            seeded = time.perf_counter() - started

            def baseline() -> list[dict]:
                counts = {row["id"]: row for row in studio.store.recount_packs()}
                rows = (packs.pack_view({**p, **counts[p["id"]]}) for p in studio.store.list_packs())
                return packs.rank(rows)

            fast, slow = studio.list_packs(), baseline()
            assert [p["id"] for p in fast] == [p["id"] for p in slow], "counters disagree with a recount"
            counters_ms = median_ms(studio.list_packs, args.repeat)
            recount_ms = median_ms(baseline, args.repeat)
            prompts_ms = median_ms(studio.pack_prompt_rankings, args.repeat)
        finally:
            studio.close()
    likes = sum(p["likes_count"] for p in fast)
    print(f"seeded {len(fast)} packs, {likes} likes, {sum(p['images_shown'] for p in fast)} images in {seeded:.1f} s")
    print(f"rank packs, counters (Studio.list_packs):   {counters_ms:8.1f} ms")
    print(
        f"rank packs, JOIN + COUNT recount (baseline): {recount_ms:8.1f} ms   ({recount_ms / counters_ms:.1f}x slower)"
    )
    print(f"rank all pack prompts (pack_prompt_rankings): {prompts_ms:7.1f} ms")
    print(f"target: under 100 ms -> {'met' if counters_ms < 100 else 'MISSED'}")
    return {"counters_ms": counters_ms, "recount_ms": recount_ms, "prompts_ms": prompts_ms, "likes": likes}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
