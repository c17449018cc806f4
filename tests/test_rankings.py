"""Rankings: Wilson lower bound of the like rate over images shown, flags for thin data, and
ranked lists of packs, pack prompts and prompts."""

from __future__ import annotations

import importlib.util
import math

import pytest

from conftest import ROOT
from studio import packs
from studio.config import Settings
from studio.core import Studio
from studio.errors import InvalidInput, NotFound
from studio.packs import PackPromptRequest, PackRequest


@pytest.fixture
def bare(tmp_path) -> Studio:
    studio = Studio.open(Settings(home=tmp_path / "home"))
    yield studio
    studio.close()


def _wilson_by_textbook(k: int, n: int, z: float = 1.96) -> float:
    """The same bound written the other common way (centre ± half-width of the interval)."""
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half


@pytest.mark.parametrize(
    ("likes", "shown", "expected"),
    [(1, 1, 0.2065), (3, 6, 0.1876), (60, 100, 0.5020), (1000, 10000, 0.0943), (0, 50, 0.0), (10, 10, 0.7225)],
)
def test_wilson_lower_bound_known_values(likes, shown, expected):
    assert packs.wilson_lower_bound(likes, shown) == pytest.approx(expected, abs=1e-4)
    if likes:
        assert packs.wilson_lower_bound(likes, shown) == pytest.approx(_wilson_by_textbook(likes, shown), abs=1e-12)


def test_wilson_lower_bound_edges_and_shape():
    assert packs.wilson_lower_bound(0, 0) == 0.0
    assert packs.wilson_lower_bound(12, 10) == packs.wilson_lower_bound(10, 10), "likes above shown are capped"
    # The same rate with more evidence scores higher, and never above the rate itself.
    bounds = [packs.wilson_lower_bound(n // 4, n) for n in (4, 40, 400, 4000)]
    assert bounds == sorted(bounds) and bounds[-1] < 0.25
    assert all(0 <= packs.wilson_lower_bound(k, 20) < k / 20 for k in range(1, 21))


@pytest.mark.parametrize(("shown", "flag"), [(0, "new"), (1, "few ratings"), (19, "few ratings"), (20, None)])
def test_rating_flags_thin_data(shown, flag):
    assert packs.rating(shown) == flag


def test_rank_neither_buries_new_packs_nor_lets_volume_win():
    rows = [
        {"id": 1, "likes_count": 1000, "images_shown": 10000},  # many runs, poor rate
        {"id": 2, "likes_count": 3, "images_shown": 6},  # new and promising
        {"id": 3, "likes_count": 1, "images_shown": 1},  # one lucky like
        {"id": 4, "likes_count": 60, "images_shown": 100},  # good and settled
        {"id": 5, "likes_count": 0, "images_shown": 0},  # never tried
        {"id": 6, "likes_count": 0, "images_shown": 500},  # shown a lot, never liked
    ]
    ranked = packs.rank(rows)
    assert [r["id"] for r in ranked] == [4, 3, 2, 1, 5, 6]
    by_id = {r["id"]: r for r in ranked}
    assert by_id[5]["rating"] == "new" and by_id[5]["like_rate"] is None
    assert by_id[2]["rating"] == "few ratings" and by_id[2]["like_rate"] == 0.5
    assert by_id[1]["rating"] is None and by_id[4]["score"] == pytest.approx(0.502, abs=1e-3)


def _made(studio: Studio, tune_id: int, pack_prompt_id: int, images: int) -> int:
    prompt_id = studio.store.add_prompt({"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": pack_prompt_id})
    for idx in range(images):
        studio.store.add_image({"prompt_id": prompt_id, "idx": idx, "path": f"outputs/{prompt_id}-{idx}.png"})
    return prompt_id


def test_packs_and_pack_prompts_rank_by_aggregated_likes(bare):
    tune_id = bare.store.add_tune({"title": "t", "name": "woman", "token": "ohwx", "model_type": "lora"})
    big = bare.create_pack(PackRequest(title="Big", classes=("woman",)))
    small = bare.create_pack(PackRequest(title="Small", classes=("woman",)))
    big_prompt = bare.add_pack_prompt(big["id"], PackPromptRequest("woman", "{{token}} {{name}} big"))
    small_a = bare.add_pack_prompt(small["id"], PackPromptRequest("woman", "{{token}} {{name}} a"))
    small_b = bare.add_pack_prompt(small["id"], PackPromptRequest("woman", "{{token}} {{name}} b"))
    # Big: 40 runs of 4 images, one like in every other run (20 / 160). Small: 2 runs, 3 likes of 8.
    for n in range(40):
        prompt_id = _made(bare, tune_id, big_prompt["id"], 4)
        if n % 2 == 0:
            bare.like_prompt(prompt_id, "ann")
    liked = _made(bare, tune_id, small_a["id"], 4)
    for user in ("ann", "bob", "cy"):
        bare.like_prompt(liked, user)
    _made(bare, tune_id, small_b["id"], 4)

    ranked = [p for p in bare.list_packs() if p["id"] in (big["id"], small["id"])]
    assert [p["slug"] for p in ranked] == ["small", "big"], "a better rate wins over more likes"
    assert (ranked[0]["likes_count"], ranked[0]["images_shown"], ranked[0]["rating"]) == (3, 8, "few ratings")
    assert (ranked[1]["likes_count"], ranked[1]["images_shown"], ranked[1]["rating"]) == (20, 160, None)
    starters = [p for p in bare.list_packs() if p["id"] not in (big["id"], small["id"])]
    assert starters and all(p["rating"] == "new" and p["score"] == 0 for p in starters)

    in_small = bare.pack_prompt_rankings(small["id"])
    assert [p["id"] for p in in_small] == [small_a["id"], small_b["id"]]
    assert in_small[0]["score"] == pytest.approx(packs.wilson_lower_bound(3, 4))
    everywhere = bare.pack_prompt_rankings()
    assert everywhere[0]["id"] == small_a["id"] and len(everywhere) == len(bare.store.list_pack_prompts())
    with pytest.raises(NotFound):
        bare.pack_prompt_rankings(10**6)


def test_prompts_rank_by_likes(bare):
    tune_id = bare.store.add_tune({"title": "t", "name": "woman", "token": "ohwx", "model_type": "lora"})
    other = bare.store.add_tune({"title": "o", "name": "man", "token": "ohwx", "model_type": "lora"})
    ids = [bare.store.add_prompt({"tune_id": tune_id, "text": f"p{n}"}) for n in range(4)]
    elsewhere = bare.store.add_prompt({"tune_id": other, "text": "x"})
    for prompt_id, likes in zip(ids, (1, 3, 0, 2)):
        for user in range(likes):
            bare.like_prompt(prompt_id, f"u{user}")
    for user in range(5):
        bare.like_prompt(elsewhere, f"u{user}")
    assert [p["id"] for p in bare.prompt_rankings(tune_id)] == [ids[1], ids[3], ids[0], ids[2]]
    assert [p["likes_count"] for p in bare.prompt_rankings(limit=2)] == [5, 3]
    with pytest.raises(InvalidInput):
        bare.prompt_rankings(limit=0)


def test_rank_bench_runs_small_and_agrees_with_a_recount(capsys):
    spec = importlib.util.spec_from_file_location("bench_rank", ROOT / "bench" / "rank.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--packs", "20", "--likes", "2000", "--repeat", "2"])
    assert result["likes"] == 2000
    out = capsys.readouterr().out
    assert "rank packs, counters" in out and "target: under 100 ms" in out
