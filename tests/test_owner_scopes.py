"""Owners, the rest of it: rankings count only what the caller may see, and titles, adapter
names and pack slugs are unique per owner (a 409 on create never tells of someone else's)."""

from __future__ import annotations

import pytest

from studio.config import Settings
from studio.core import Studio
from studio.errors import NotFound
from studio.packs import PackPromptRequest, PackRequest
from studio.principals import Principal

ANN, BOB, BOSS = Principal("key:ann"), Principal("key:bob"), Principal("key:boss", is_admin=True)


@pytest.fixture
def bare(tmp_path) -> Studio:
    studio = Studio.open(Settings(home=tmp_path / "home"))
    yield studio
    studio.close()


def _tune(studio: Studio, owner: Principal, title: str) -> int:
    return studio.store.add_tune(
        {"title": title, "name": "woman", "token": "ohwx", "model_type": "lora", "owner": owner.owner}
    )


def _made(studio: Studio, tune_id: int, owner: Principal, pack_prompt_id: int | None, images: int) -> int:
    prompt_id = studio.store.add_prompt(
        {"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": pack_prompt_id, "owner": owner.owner}
    )
    for idx in range(images):
        studio.store.add_image({"prompt_id": prompt_id, "idx": idx, "path": f"outputs/{prompt_id}-{idx}.png"})
    return prompt_id


def test_prompt_rankings_keep_to_the_callers_prompts_and_admins_see_all(bare):
    ann_tune, bob_tune = _tune(bare, ANN, "ann's"), _tune(bare, BOB, "bob's")
    ann_prompts = [_made(bare, ann_tune, ANN, None, 1) for _ in range(2)]
    bob_prompt = _made(bare, bob_tune, BOB, None, 1)
    for user in range(5):
        bare.like_prompt(bob_prompt, f"u{user}")
    bare.like_prompt(ann_prompts[1], "u0")

    assert [p["id"] for p in bare.prompt_rankings(principal=ANN)] == [ann_prompts[1], ann_prompts[0]]
    assert [p["id"] for p in bare.prompt_rankings(principal=BOB)] == [bob_prompt]
    assert [p["id"] for p in bare.prompt_rankings(principal=BOSS)] == [bob_prompt, ann_prompts[1], ann_prompts[0]]
    assert [p["id"] for p in bare.prompt_rankings(ann_tune, principal=ANN)] == [ann_prompts[1], ann_prompts[0]]
    with pytest.raises(NotFound):
        bare.prompt_rankings(bob_tune, principal=ANN)  # someone else's tune reads as missing
    assert [p["id"] for p in bare.prompt_rankings(bob_tune, principal=BOSS)] == [bob_prompt]


def test_pack_prompt_rankings_count_only_the_callers_prompts_and_packs(bare):
    shared = bare.create_pack(PackRequest(title="Shared", classes=("woman",)))
    bare.store.update_pack(shared["id"], owner=None)
    shared_a = bare.add_pack_prompt(shared["id"], PackPromptRequest("woman", "{{token}} {{name}} a"))
    shared_b = bare.add_pack_prompt(shared["id"], PackPromptRequest("woman", "{{token}} {{name}} b"))
    bobs = bare.create_pack(PackRequest(title="Bob's", classes=("woman",)), principal=BOB)
    bobs_prompt = bare.add_pack_prompt(bobs["id"], PackPromptRequest("woman", "{{token}} {{name}} c"), principal=BOB)
    ann_tune, bob_tune = _tune(bare, ANN, "ann's"), _tune(bare, BOB, "bob's")
    # Bob runs and likes shared prompt a a lot; Ann runs b once and likes it.
    for _ in range(3):
        bare.like_prompt(_made(bare, bob_tune, BOB, shared_a["id"], 4), "bob")
    bare.like_prompt(_made(bare, bob_tune, BOB, bobs_prompt["id"], 4), "bob")
    bare.like_prompt(_made(bare, ann_tune, ANN, shared_b["id"], 2), "ann")

    def figures(rows):
        return {p["id"]: (p["likes_count"], p["images_shown"], p["runs"]) for p in rows}

    seen_by_ann = figures(bare.pack_prompt_rankings(principal=ANN))
    assert bobs_prompt["id"] not in seen_by_ann, "another owner's pack is not ranked for Ann"
    assert seen_by_ann[shared_a["id"]] == (0, 0, 0) and seen_by_ann[shared_b["id"]] == (1, 2, 1)
    ranked = [p["id"] for p in bare.pack_prompt_rankings(shared["id"], principal=ANN)]
    assert ranked[0] == shared_b["id"], "Ann's ranking follows her likes, not Bob's"
    seen_by_bob = figures(bare.pack_prompt_rankings(principal=BOB))
    assert seen_by_bob[shared_a["id"]] == (3, 12, 3) and seen_by_bob[shared_b["id"]] == (0, 0, 0)
    assert seen_by_bob[bobs_prompt["id"]] == (1, 4, 1)
    with pytest.raises(NotFound):
        bare.pack_prompt_rankings(bobs["id"], principal=ANN)
    everyone = figures(bare.pack_prompt_rankings(principal=BOSS))
    assert everyone[shared_a["id"]] == (3, 12, 3) and everyone[shared_b["id"]] == (1, 2, 1)
    assert everyone[bobs_prompt["id"]] == (1, 4, 1)
