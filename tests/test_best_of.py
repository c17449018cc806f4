"""best_of=N: N candidates per image, the most alike (with a face, not a copy) kept."""

import io

import pytest
from photos import encode, friend, mirrored, rotated
from PIL import Image

from studio.errors import InvalidInput
from studio.prompts import PromptRequest
from studio.services import best_of
from studio.tune_requests import TuneRequest

RACHEL_HEAD = (40, 100, 340, 400)
JOEY_HEAD = (100, 60, 400, 360)


def test_pick_prefers_a_face_then_not_a_copy_then_the_score():
    no_face = {"score": None}
    assert best_of.pick([no_face, {"score": 0.5}, {"score": 0.9}]) == 2
    assert best_of.pick([{"score": 0.99, "copy_paste": True}, {"score": 0.93, "copy_paste": False}]) == 1
    assert best_of.pick([no_face, None, {"score": 0.99, "copy_paste": True}]) == 2
    assert best_of.pick([no_face, no_face]) == 0  # nothing to choose by: the first


def test_best_of_is_checked_with_a_ceiling():
    assert PromptRequest.from_dict({"text": "x", "best_of": "3"}).validate().best_of == 3
    with pytest.raises(InvalidInput) as refused:
        PromptRequest.from_dict({"text": "x", "best_of": 9}).validate()
    assert refused.value.field == "best_of"


def _paste(image: Image.Image, name: str) -> Image.Image:
    out = image.copy()
    box = RACHEL_HEAD if name == "rachel" else JOEY_HEAD
    head = friend(name).crop(box)
    if name == "rachel":  # another photo of her than the training one: the same person, no copy
        head = mirrored(rotated(head, 8))
    side = out.width * 3 // 4
    out.paste(head.resize((side, side)), (out.width // 8, out.height // 8))
    return out


def test_best_of_three_keeps_the_candidate_with_the_subjects_face(studio, monkeypatch):
    """Candidates: as drawn (no face), another person, the subject: the subject's is kept with
    its seed, and its record lists the three scores."""
    tune = studio.create_tune(
        TuneRequest(title="Rachel", name="woman", model_type="faceid"), photos=[("r.jpg", encode(friend("rachel")))]
    )
    generate = studio.runtime.generate
    seeds, pngs = [], []

    def candidates(request, **callbacks):
        results = generate(request, **callbacks)
        seeds.append(request.seed)
        paste = {1: "joey", 2: "rachel"}.get(len(seeds) - 1)
        if paste is None:
            pngs.append(results[0].png)
            return results
        out = []
        for r in results:
            image = _paste(r.image, paste)
            png = io.BytesIO()
            image.save(png, format="PNG")
            out.append(type(r)(image=image, png=png.getvalue(), seed=r.seed, parameters=r.parameters))
        pngs.append(out[0].png)
        return out

    monkeypatch.setattr(studio.runtime, "generate", candidates)
    prompt = studio.create_prompt(
        tune["id"], {"text": "a portrait", "num_images": 1, "seed": 40, "steps": 2, "best_of": 3}
    )
    studio.run_pending()
    assert seeds == [40, 41, 42]
    done = studio.get_prompt(prompt["id"])
    [record] = done["likeness"]
    assert record["best_of"]["candidates"] == 3 and record["best_of"]["kept"] == 2
    scores = record["best_of"]["scores"]
    assert scores[0] is None and scores[2] > scores[1] and record["score"] == scores[2]
    assert record["same_person"] and not record["copy_paste"]
    [row] = studio.store.prompt_images(prompt["id"])
    assert row["seed"] == 42
    assert studio.files.read(row["path"]) == pngs[2] != pngs[1]  # the subject's candidate is the image kept
