"""Consistency of a pack run: the spread of its images' likeness and the prompts that fall below
the tune's typical score, in the pack's JSON."""

import pytest

from studio import likeness
from studio.packs import PackPromptRequest, PackRequest


def _record(score):
    if score is None:
        return {"backend": "dlib", "threshold": 0.916, "faces": 0, "score": None, "same_person": False}
    return {"backend": "dlib", "threshold": 0.916, "faces": 1, "score": score, "same_person": score >= 0.916}


def test_consistency_reports_the_spread_and_the_prompts_below_the_typical_score():
    rows = [
        {"tune_id": 1, "tune_title": "A", "prompt_id": p, "text": t, "orig_prompt_id": 10 + p, "likeness_score": s}
        for p, t, s in [(1, "beach", 0.95), (1, "beach", 0.97), (2, "ski", 0.80), (3, "space", None)]
    ]
    [run] = likeness.consistency(rows, {1: [0.95, 0.97, 0.80, 0.96, 0.94]})
    assert run["faces"] == 3 and run["prompts"] == 3 and run["typical"] == 0.95
    assert run["spread"] == pytest.approx(0.0759, abs=1e-4) and (run["min"], run["max"]) == (0.8, 0.97)
    assert [(p["prompt_id"], p["score"]) for p in run["below"]] == [(3, None), (2, 0.8)]


def test_the_pack_json_carries_each_runs_consistency(studio):
    pack = studio.create_pack(PackRequest(title="Beach Day", classes=("woman",)))
    for text in ("{{token}} {{name}} on a beach", "{{token}} {{name}} skiing", "{{token}} {{name}} in space"):
        studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", text, num_images=2))
    tune = studio.store.add_tune({"title": "Ann", "name": "woman", "token": "ohwx", "model_type": "lora"})
    made = studio.run_pack(pack["id"], [tune])
    scores = {0: (0.95, 0.96), 1: (0.94, 0.97), 2: (0.70, None)}
    for index, prompt in enumerate(made):
        images = [{"idx": i, "path": f"x{index}{i}.png", "seed": i, "width": 64, "height": 64} for i in range(2)]
        studio.store.finish_prompt(prompt["id"], images, warnings=[])
        for i, score in enumerate(scores[index]):
            studio.store.set_image_likeness(prompt["id"], i, _record(score))
    [run] = studio.get_pack(pack["id"])["consistency"]
    assert run["tune_id"] == tune and run["faces"] == 5 and run["min"] == 0.7
    assert [p["prompt_id"] for p in run["below"]] == [made[2]["id"]]
    assert run["below"][0]["text"].endswith("in space")
