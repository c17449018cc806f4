"""Best-of generation: `best_of=N` on a prompt draws N candidates per image and keeps the one that
looks most like the tune's subject (studio/likeness.py), the others discarded.

Candidates come in rounds: round k generates the prompt's `num_images` images from seed
`seed + k * num_images`, so round 0 is what the prompt makes without best-of, and candidate k of
image i has the seed that image i + k * num_images of one big request would have (the kept
image's seed reproduces it). Each candidate is scored as any image is; `pick` keeps, per image,
the candidate with a face that is not a copy of a training photo and scores highest (a copy
scores high because it is pasted, not drawn), else the best copy, else the first candidate. The
kept image's likeness record carries `best_of`: the candidates' scores and which was kept.

A prompt whose images are not scored (no subject tune, a pet, a style, no face backend) makes
one round only: there is nothing to choose by.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


def pick(records: Sequence[Mapping[str, Any] | None]) -> int:
    """The index of the candidate to keep among likeness `records` (module docstring)."""

    def rank(index: int) -> tuple:
        record = records[index] or {}
        score = record.get("score")
        return (score is not None, not record.get("copy_paste"), score if score is not None else -2.0, -index)

    return max(range(len(records)), key=rank)


def generate_best_of(
    generate: Callable[..., list],
    score: Callable[[list], list],
    request,
    best_of: int,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list, list[dict[str, Any] | None]]:
    """(kept results, their likeness records) of `best_of` rounds of `generate(request)`
    (`GenerateRequest`; `generate` returns `GeneratedImage`s), scored by `score(images)`.
    `on_step` sees the rounds' steps as one run."""
    rounds = []
    records: list[list] = []
    started = time.perf_counter()
    for k in range(max(1, best_of)):
        round_request = dataclasses.replace(request, seed=request.seed + k * request.num_images)

        def step(i: int, total: int, k: int = k) -> None:
            if on_step is not None:
                on_step(k * total + i, best_of * total)

        results = generate(round_request, on_step=step, should_stop=should_stop)
        rounds.append(results)
        records.append(score([r.image for r in results]))
        if k == 0 and all(r is None for r in records[0]):
            return results, records[0]  # not scored: nothing to choose by
    kept, kept_records = [], []
    for i in range(len(rounds[0])):
        candidates = [records[k][i] for k in range(len(rounds))]
        best = pick(candidates)
        record = dict(candidates[best] or {})
        record["best_of"] = {
            "candidates": len(candidates),
            "kept": best,
            "scores": [(c or {}).get("score") for c in candidates],
        }
        kept.append(rounds[best][i])
        kept_records.append(record)
    log.info(
        "best_of=%s: %s candidates in %.2f s (%.2f s each)",
        best_of,
        best_of * len(rounds[0]),
        time.perf_counter() - started,
        (time.perf_counter() - started) / (best_of * len(rounds[0])),
    )
    return kept, kept_records
