"""Likeness on the demo model: every image made from a subject tune is scored against the tune's
reference face with the backend that made it; checkpoints get a best step; packs rank by likes
blended with likeness; the gallery sorts and filters by it; the API lists it beside `images`.

The demo model draws textures, not faces, so known cases are made by pasting real faces from the
test photo set into its images: Rachel's (the subject) for a known positive, Joey's (another
person) for a known negative.
"""

import io

import numpy as np
import pytest
from photos import encode, friend, mirrored, rotated

from studio import likeness
from studio.errors import InvalidInput
from studio.tune_requests import TuneRequest

DEMO_ID = 1
# Head boxes (x0, y0, x1, y1) in friend(name) at 512 px: the face with a margin around it.
HEADS = {"rachel": (40, 100, 340, 400), "joey": (100, 60, 400, 360)}


def _head(name: str, side: int = 112):
    head = friend(name).crop(HEADS[name])
    if name == "rachel":  # not the exact pixels the reference was made from
        head = rotated(head, 6)
    return head.resize((side, side))


def _pasted(image, *placed):
    """A copy of `image` with (name, (x, y)) heads pasted in."""
    out = image.convert("RGB").copy()
    for name, at in placed:
        out.paste(_head(name), at)
    return out


def _faceid_tune(studio):
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    return studio.create_tune(
        TuneRequest(title="Rachel", name="woman", model_type="faceid", branch="fast"), photos=photos
    )


def _image(studio, path):
    from PIL import Image

    return Image.open(io.BytesIO(studio.files.read(path))).convert("RGB")


def _replace_image(studio, prompt_id, idx, image):
    """Swap a stored generated image for `image` (what a real model would have drawn)."""
    [row] = [r for r in studio.store.prompt_images(prompt_id) if r["idx"] == idx]
    studio.store.update_image(row["id"], path=studio.files.put(encode(image, "PNG"), "outputs", ".png"))


# -- pure parts ------------------------------------------------------------------------------


def test_thresholds_are_the_backends_same_person_distances_as_similarities():
    assert likeness.similarity_threshold(0.6) == pytest.approx(0.82)
    assert likeness.similarity_threshold(1.1) == pytest.approx(0.395)
    # cosine = 1 - d²/2 for unit vectors
    a, b = likeness.unit([1.0, 0.0]), likeness.unit([0.8, 0.6])
    assert float(np.dot(a, b)) == pytest.approx(1 - np.linalg.norm(a - b) ** 2 / 2)


@pytest.mark.parametrize(
    ("tune", "text", "expected"),
    [
        ({"id": 5, "model_type": "faceid"}, "a photo", 5),
        ({"id": 6, "model_type": "lora"}, "<faceid:5:1> a photo", 6),
        ({"id": 1, "model_type": "checkpoint"}, "<lora:7:0.8> and <faceid:5:1>", 5),
        ({"id": 1, "model_type": "checkpoint"}, "<lora:cartoon:1> <lora:7:1>", 7),
        ({"id": 1, "model_type": "checkpoint"}, "<lora:cartoon:1> a photo", None),
    ],
)
def test_the_subject_is_the_prompts_tune_else_the_first_faceid_then_lora_it_names(tune, text, expected):
    assert likeness.subject_tune_id(tune, text) == expected


def test_pets_and_styles_are_not_scored():
    assert likeness.scores_subject({"model_type": "lora", "name": "woman"})
    assert likeness.scores_subject({"model_type": "faceid", "name": "couple"})
    assert not likeness.scores_subject({"model_type": "lora", "name": "dog"})
    assert not likeness.scores_subject({"model_type": "lora", "name": "style"})
    assert not likeness.scores_subject({"model_type": "checkpoint", "name": None})


def test_best_step_is_the_highest_scoring_sample_with_a_face():
    def checkpoint(step, score):
        return {"step": step, "likeness": None if score is None else {"score": score}}

    assert likeness.best_step([checkpoint(2, 0.5), checkpoint(4, 0.9), checkpoint(6, 0.7)]) == 4
    assert likeness.best_step([checkpoint(2, 0.9), checkpoint(4, 0.9)]) == 4  # a tie: the later
    assert likeness.best_step([{"step": 2, "likeness": {"score": None}}, checkpoint(4, None)]) is None


def test_blend_weighs_likeness_at_the_documented_weight_and_leaves_unscored_items_alone():
    liked = {"id": 1, "score": 0.5, "images_shown": 40}
    looks = {**liked, "likeness_scored": 40, "likeness_matched": 40, "likeness_faces": 40, "likeness_sum": 36.0}
    blended = likeness.with_stats(looks)
    bound = blended["likeness_score"]
    assert 0.9 < bound < 1 and blended["likeness_rate"] == 1 and blended["likeness_mean"] == pytest.approx(0.9)
    assert blended["blended_score"] == pytest.approx(0.7 * 0.5 + 0.3 * bound)
    assert likeness.LIKENESS_WEIGHT == 0.3
    plain = likeness.with_stats(liked)
    assert plain["blended_score"] == 0.5 and plain["likeness_mean"] is None and plain["likeness_rate"] is None


# -- FaceID: the known positive and negative ---------------------------------------------------


def test_faceid_images_score_the_subject_inside_and_another_person_outside_the_same_person_range(studio):
    tune = _faceid_tune(studio)
    analyzer = studio.face_analyzer
    prompt = studio.create_prompt(tune["id"], {"text": "a portrait", "num_images": 1, "seed": 4, "steps": 2})
    studio.run_pending()
    made = studio.get_prompt(prompt["id"])
    assert made["status"] == "SUCCESS" and len(made["likeness"]) == 1
    [record] = made["likeness"]  # the demo model draws no faces
    assert record["backend"] == analyzer.name and record["faces"] == 0
    assert record["score"] is None and record["message"] == likeness.NO_FACE and not record["same_person"]

    generated = _image(studio, made["images"][0])
    positive = studio.score_likeness(tune["id"], _pasted(generated, ("rachel", (72, 72))))
    negative = studio.score_likeness(tune["id"], _pasted(generated, ("joey", (72, 72))))
    both = studio.score_likeness(tune["id"], _pasted(generated, ("joey", (8, 8)), ("rachel", (136, 136))))
    threshold = likeness.similarity_threshold(analyzer.same_person_distance)
    assert positive["same_person"] and positive["score"] >= threshold and positive["faces"] == 1
    assert not negative["same_person"] and negative["score"] < threshold and negative["faces"] == 1
    assert positive["threshold"] == threshold and positive["distance"] < analyzer.same_person_distance
    # Two people: each face is scored, the subject's is reported.
    assert both["faces"] == 2 and both["same_person"]
    assert both["score"] == pytest.approx(positive["score"], abs=0.05)
    x0, y0, x1, y1 = both["face"]["bbox"]
    assert x0 >= 120 and y0 >= 120  # Rachel's head, pasted at (136, 136), not Joey's


def test_scores_are_stored_per_image_and_the_api_lists_them_beside_the_image_urls(studio):
    tune = _faceid_tune(studio)
    small = {"num_images": 3, "seed": 4, "steps": 2, "w": 64, "h": 64}
    prompt = studio.create_prompt(tune["id"], {"text": "a portrait", **small})
    studio.run_pending()
    generated = _image(studio, studio.get_prompt(prompt["id"])["images"][0]).resize((256, 256))
    _replace_image(studio, prompt["id"], 0, _pasted(generated, ("rachel", (72, 72))))
    _replace_image(studio, prompt["id"], 1, _pasted(generated, ("joey", (72, 72))))

    studio.rescore_prompt(prompt["id"])
    body = studio.prompt_json(prompt["id"], "http://studio.test")
    assert all(isinstance(url, str) and url.startswith("http://studio.test/images/") for url in body["images"])
    assert len(body["likeness"]) == len(body["images"]) == 3
    match, other, faceless = body["likeness"]
    assert match["same_person"] and match["face"]["bbox"]
    assert other["score"] is not None and not other["same_person"]
    assert faceless["score"] is None and faceless["message"] == likeness.NO_FACE
    rows = studio.store.prompt_images(prompt["id"])
    assert [r["likeness_match"] for r in rows] == [1, 0, 0]
    assert rows[0]["likeness_score"] == match["score"] and rows[2]["likeness_score"] is None


def test_images_of_a_base_model_without_a_subject_are_not_scored(studio):
    prompt = studio.create_prompt(
        DEMO_ID, {"text": "a field", "num_images": 1, "seed": 1, "steps": 2, "w": 64, "h": 64}
    )
    studio.run_pending()
    assert studio.get_prompt(prompt["id"])["likeness"] == [None]
    assert studio.prompt_json(prompt["id"])["likeness"] == [None]


# -- LoRA: checkpoints, the best step, switching the active weights ----------------------------


@pytest.mark.slow
def test_lora_checkpoints_get_scores_a_best_step_and_any_step_can_be_made_active(studio):
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    request = TuneRequest(title="Rachel LoRA", name="woman", branch="fast", seed=3, checkpointing_steps=3)
    tune = studio.create_tune(request, photos=photos)
    studio.run_pending()
    tune = studio.get_tune(tune["id"])
    assert tune["status"] == "SUCCESS" and [c["step"] for c in tune["checkpoints"]] == [3, 6, 8]
    # Training scored every sample (the demo model's show no face) against a reference made
    # from the photos once and stored with the backend that made it.
    assert all(c["likeness"]["message"] == likeness.NO_FACE for c in tune["checkpoints"])
    assert tune["best_step"] is None and not any(c["best"] for c in tune["checkpoints"])
    assert tune["best_step_note"] == (
        "No step is marked best: no checkpoint sample shows a face (the embedded demo models draw textures, "
        "not faces); prompts use step 8."
    )
    assert tune["use_best_step"] and tune["active_step"] == 8
    row = studio.store.get_tune(tune["id"])
    assert row["embedding_path"] and row["face_backend"] == studio.face_analyzer.name
    studio.likeness_reference(tune["id"])
    assert studio.store.get_tune(tune["id"])["embedding_path"] == row["embedding_path"]

    # Samples as a real model might draw them: another person, the subject, no face.
    for step, placed in [(3, [("joey", (0, 0))]), (6, [("rachel", (0, 0))]), (8, [])]:
        checkpoint = studio.store.get_checkpoint(tune["id"], step)
        sample = _pasted(_image(studio, checkpoint["sample_path"]).resize((112, 112)), *placed)
        path = studio.files.put(encode(sample, "PNG"), "samples", ".png")
        studio.store.update_checkpoint(checkpoint["id"], sample_path=path)
    studio.score_checkpoints(tune["id"])
    tune = studio.get_tune(tune["id"])
    scores = {c["step"]: c["likeness"] for c in tune["checkpoints"]}
    assert scores[6]["same_person"] and not scores[3]["same_person"] and scores[8]["score"] is None
    assert tune["best_step"] == 6 and [c["step"] for c in tune["checkpoints"] if c["best"]] == [6]
    # Scores exist: the tune follows its best step (the default), until its owner picks one.
    assert tune["active_step"] == 6 and tune["use_best_step"]
    assert tune["best_step_note"] == "Prompts use the best step by likeness, 6."

    def render() -> np.ndarray:
        made = studio.create_prompt(
            DEMO_ID,
            {"text": f"<lora:{tune['id']}:1> ohwx woman", "seed": 9, "steps": 2, "num_images": 1, "w": 64, "h": 64},
        )
        studio.run_pending()
        return np.asarray(_image(studio, studio.get_prompt(made["id"])["images"][0]), np.float32) / 255

    def loaded_last() -> str:
        return studio.engine.loaded_loras[-1]

    best = render()
    assert loaded_last() == str(studio.files.path(studio.store.get_checkpoint(tune["id"], 6)["weights_path"]))
    chosen = studio.set_active_checkpoint(tune["id"], 8)
    assert (chosen["active_step"], chosen["use_best_step"]) == (8, False)
    assert chosen["best_step_note"] == "Prompts use step 8, chosen by hand; the best step by likeness is 6."
    final = render()
    assert loaded_last() == str(studio.files.path(studio.store.get_checkpoint(tune["id"], 8)["weights_path"]))
    assert np.abs(best - final).max() > 0  # two training steps apart: a small difference, but one
    studio.score_checkpoints(tune["id"])  # scoring again keeps the owner's choice
    assert studio.get_tune(tune["id"])["active_step"] == 8
    back = studio.use_best_step(tune["id"])
    assert (back["active_step"], back["use_best_step"]) == (6, True)
    assert np.abs(render() - best).max() <= 1 / 255


# -- packs: counters and the blended ranking ---------------------------------------------------


def _record(score: float | None, threshold: float = 0.916) -> dict:
    return {
        "backend": "dlib",
        "threshold": threshold,
        "faces": 0 if score is None else 1,
        "score": score,
        "distance": None,
        "same_person": score is not None and score >= threshold,
        "face": None,
        "message": likeness.NO_FACE if score is None else None,
    }


def _pack_with_images(store, tune_id, slug, scores):
    """A pack of one prompt made into one generation prompt with an image per score."""
    pack_id = store.add_pack({"slug": slug, "title": slug, "classes": ["woman"]})
    pack_prompt_id = store.add_pack_prompt({"pack_id": pack_id, "class_name": "woman", "text": "ohwx woman"})
    prompt_id = store.add_prompt({"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": pack_prompt_id})
    store.finish_prompt(
        prompt_id, [{"idx": i, "path": f"outputs/{slug}{i}.png", "seed": i} for i in range(len(scores))], warnings=[]
    )
    for index, score in enumerate(scores):
        store.set_image_likeness(prompt_id, index, _record(score))
    return pack_id, pack_prompt_id, prompt_id


def _counters_match(store):
    for table in ("pack_prompts", "packs"):
        for row in store.recount_likeness(table):
            assert (row["counter_scored"], row["counter_matched"], row["counter_faces"]) == (
                row["likeness_scored"],
                row["likeness_matched"],
                row["likeness_faces"],
            ), (table, row)
            assert row["counter_sum"] == pytest.approx(row["likeness_sum"], abs=1e-9), (table, row)


def test_pack_likeness_counters_follow_every_change(studio):
    store = studio.store
    tune_id = store.add_tune({"title": "t", "name": "woman", "model_type": "faceid", "status": "SUCCESS"})
    pack_id, pack_prompt_id, prompt_id = _pack_with_images(store, tune_id, "alpha", [0.95, 0.5, None])
    pack = store.get_pack(pack_id)
    assert (pack["likeness_scored"], pack["likeness_matched"], pack["likeness_faces"]) == (3, 1, 2)
    assert pack["likeness_sum"] == pytest.approx(1.45)
    _counters_match(store)

    store.set_image_likeness(prompt_id, 1, _record(0.97))  # scored again: replaces, never adds
    store.set_image_likeness(prompt_id, 2, None)
    assert store.get_pack_prompt(pack_prompt_id)["likeness_matched"] == 2
    _counters_match(store)

    second = store.add_prompt({"tune_id": tune_id, "text": "again", "orig_prompt_id": pack_prompt_id})
    store.finish_prompt(second, [{"idx": 0, "path": "outputs/b.png", "seed": 1}], warnings=[])
    store.set_image_likeness(second, 0, _record(0.3))
    store.delete_prompt(prompt_id)
    assert store.get_pack(pack_id)["likeness_scored"] == 1
    _counters_match(store)
    store.delete_pack_prompt(pack_prompt_id)
    assert store.get_pack(pack_id)["likeness_scored"] == 0 and store.get_pack(pack_id)["likeness_sum"] == 0
    _counters_match(store)


def test_packs_rank_by_likes_or_blended_with_likeness(studio):
    store = studio.store
    tune_id = store.add_tune({"title": "t", "name": "woman", "model_type": "faceid", "status": "SUCCESS"})
    # Liked more, but the images stopped looking like the person; liked a little less, all her.
    liked, liked_prompt, liked_run = _pack_with_images(store, tune_id, "liked", [0.5] * 20)
    true, true_prompt, true_run = _pack_with_images(store, tune_id, "true", [0.95] * 20)
    for index in range(12):
        store.add_like(liked_run, "u", index)
    for index in range(10):
        store.add_like(true_run, "u", index)

    by_likes = [p["slug"] for p in studio.list_packs() if p["slug"] in ("liked", "true")]
    blended = studio.list_packs(blend=True)
    assert by_likes == ["liked", "true"]
    assert [p["slug"] for p in blended if p["slug"] in ("liked", "true")] == ["true", "liked"]
    shown = {p["slug"]: p for p in blended}
    assert shown["true"]["likeness_mean"] == pytest.approx(0.95) and shown["true"]["likeness_rate"] == 1
    assert shown["liked"]["likeness_rate"] == 0 and shown["liked"]["like_rate"] == pytest.approx(0.6)
    assert [p["id"] for p in studio.pack_prompt_rankings(blend=True)][:2] == [true_prompt, liked_prompt]
    assert studio.get_pack(true)["prompts_per_class"]["woman"][0]["likeness_mean"] == pytest.approx(0.95)
    api = studio.pack_json(studio.get_pack(true), "http://studio.test", with_prompts=True)
    assert api["likeness_rate"] == 1 and api["blended_score"] > api["score"]
    del liked, true_run


# -- gallery ------------------------------------------------------------------------------------


def test_the_gallery_sorts_and_filters_by_likeness(studio):
    store = studio.store
    tune_id = store.add_tune({"title": "t", "name": "woman", "model_type": "faceid", "status": "SUCCESS"})
    ids = {}
    for name, scores in [("good", [0.7, 0.97]), ("other", [0.6]), ("faceless", [None]), ("unscored", [])]:
        ids[name] = store.add_prompt({"tune_id": tune_id, "text": name, "status": "SUCCESS"})
        store.finish_prompt(ids[name], [{"idx": 0, "path": f"outputs/{name}.png", "seed": 0}], warnings=[])
        for index, score in enumerate(scores):
            if index:
                store.add_image({"prompt_id": ids[name], "idx": index, "path": f"outputs/{name}{index}.png"})
            store.set_image_likeness(ids[name], index, _record(score))

    def names(**options):
        return [next(k for k, v in ids.items() if v == item["id"]) for item in studio.gallery(**options)]

    assert names(sort="likeness") == ["good", "other", "unscored", "faceless"]
    assert names(likeness="match") == ["good"]
    assert names(likeness="miss") == ["faceless", "other"]
    [good] = studio.gallery(likeness="match")
    assert [image["likeness"]["score"] for image in good["images"]] == [0.7, 0.97]
    with pytest.raises(InvalidInput) as error:
        studio.gallery(likeness="best")
    assert error.value.field == "likeness"


# -- over HTTP ----------------------------------------------------------------------------------


def test_the_api_lists_likeness_beside_images_and_ranks_packs_blended_on_request(tmp_path, demo_model_dir):
    import httpx
    from api_helpers import live_studio

    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        tune = _faceid_tune(studio)
        prompt = studio.create_prompt(tune["id"], {"text": "a portrait", "num_images": 2, "seed": 4, "steps": 2})
        studio.run_pending()
        generated = _image(studio, studio.get_prompt(prompt["id"])["images"][0]).resize((256, 256))  # 64 px here
        _replace_image(studio, prompt["id"], 1, _pasted(generated, ("rachel", (8, 8))))
        studio.rescore_prompt(prompt["id"])
        body = httpx.get(f"{url}/tunes/{tune['id']}/prompts/{prompt['id']}").json()
        assert [type(image) for image in body["images"]] == [str, str]
        assert [record["same_person"] for record in body["likeness"]] == [False, True]
        assert body["likeness"][0]["message"] == likeness.NO_FACE

        liked, _, liked_run = _pack_with_images(studio.store, tune["id"], "liked", [0.5] * 20)
        true, _, true_run = _pack_with_images(studio.store, tune["id"], "true", [0.95] * 20)
        for index in range(12):
            studio.store.add_like(liked_run, "u", index)
        for index in range(10):
            studio.store.add_like(true_run, "u", index)
        ours = ("liked", "true")
        by_likes = [p["slug"] for p in httpx.get(f"{url}/packs").json() if p["slug"] in ours]
        blended = [p for p in httpx.get(f"{url}/packs", params={"blend": "true"}).json() if p["slug"] in ours]
        assert by_likes == ["liked", "true"] and [p["slug"] for p in blended] == ["true", "liked"]
        assert blended[0]["likeness_rate"] == 1 and blended[0]["blended_score"] > blended[1]["blended_score"]
