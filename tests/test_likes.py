"""Likes: one per user per prompt (or image), counts that survive concurrency, and aggregation
from prompts made from a pack up to their pack prompt and pack."""

from __future__ import annotations

import random
import threading

import pytest
from sqlite_utils import Database

from storage import Store
from storage.migrations import migrations
from studio.config import Settings
from studio.core import Studio
from studio.errors import InvalidInput, NotFound
from studio.packs import PackPromptRequest, PackRequest


@pytest.fixture
def bare(tmp_path) -> Studio:
    studio = Studio.open(Settings(home=tmp_path / "home"))
    yield studio
    studio.close()


def _tune(store: Store, title: str = "Ann") -> int:
    return store.add_tune({"title": title, "name": "woman", "token": "ohwx", "model_type": "lora"})


def _run(store: Store, tune_id: int, pack_prompt_id: int | None, images: int = 2) -> int:
    """A prompt made from a pack prompt (or a plain one), with its generated images."""
    prompt_id = store.add_prompt({"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": pack_prompt_id})
    for idx in range(images):
        store.add_image({"prompt_id": prompt_id, "idx": idx, "path": f"outputs/{prompt_id}-{idx}.png"})
    return prompt_id


def _pack(studio: Studio, title: str = "Garden", n_prompts: int = 2) -> tuple[dict, list[dict]]:
    pack = studio.create_pack(PackRequest(title=title, classes=("woman",)))
    templates = [
        studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", f"{{{{token}}}} {{{{name}}}} garden {n}"))
        for n in range(n_prompts)
    ]
    return pack, templates


def assert_counters_match_rows(store: Store) -> None:
    for row in store.recount_prompt_likes():
        assert row["counter"] == row["likes_count"], row
    counters = {p["id"]: p for p in store.list_pack_prompts()}
    for row in store.recount_pack_prompts():
        assert {k: counters[row["id"]][k] for k in row} == row
    packs = {p["id"]: p for p in store.list_packs()}
    for row in store.recount_packs():
        assert {k: packs[row["id"]][k] for k in row} == row


def test_like_once_per_user_and_unlike(bare):
    prompt_id = _run(bare.store, _tune(bare.store), None)
    assert bare.like_prompt(prompt_id, "ann")["likes_count"] == 1
    assert bare.like_prompt(prompt_id, "ann") == {
        "prompt_id": prompt_id,
        "image_idx": None,
        "liked": True,
        "likes_count": 1,
    }
    assert bare.like_prompt(prompt_id, "bob")["likes_count"] == 2
    assert bare.like_prompt(prompt_id, "ann", image_idx=1)["likes_count"] == 3  # an image is its own like
    assert sorted(bare.store.liked_by(prompt_id, "ann")) == [-1, 1]
    assert bare.unlike_prompt(prompt_id, "ann")["likes_count"] == 2
    assert bare.unlike_prompt(prompt_id, "ann") == {
        "prompt_id": prompt_id,
        "image_idx": None,
        "liked": False,
        "likes_count": 2,
    }
    assert bare.store.liked_by(prompt_id, "ann") == [1]
    assert_counters_match_rows(bare.store)


@pytest.mark.parametrize(
    ("prompt_id", "user", "image_idx", "error", "field"),
    [
        (999, "ann", None, NotFound, "prompt_id"),
        (None, " ", None, InvalidInput, "user"),
        (None, "x" * 201, None, InvalidInput, "user"),
        (None, "ann", 2, InvalidInput, "image_idx"),
        (None, "ann", -1, InvalidInput, "image_idx"),
    ],
)
def test_bad_likes_say_what_is_wrong(bare, prompt_id, user, image_idx, error, field):
    real = _run(bare.store, _tune(bare.store), None, images=2)
    with pytest.raises(error) as raised:
        bare.like_prompt(prompt_id or real, user, image_idx)
    assert raised.value.field == field
    assert bare.store.count_likes(real) == 0


def test_a_like_on_a_pack_prompt_run_counts_for_the_pack_prompt_and_the_pack(bare):
    pack, (first, second) = _pack(bare)
    tune_id = _tune(bare.store)
    run_a, run_b, run_c = (_run(bare.store, tune_id, t["id"]) for t in (first, first, second))
    bare.like_prompt(run_a, "ann")
    bare.like_prompt(run_b, "ann", image_idx=0)
    bare.like_prompt(run_b, "bob", image_idx=0)
    bare.like_prompt(run_c, "ann")
    got = bare.get_pack(pack["id"])
    assert (got["likes_count"], got["images_shown"], got["runs"]) == (4, 6, 3)
    woman = {p["id"]: p for p in got["prompts_per_class"]["woman"]}
    assert (woman[first["id"]]["likes_count"], woman[first["id"]]["images_shown"]) == (3, 4)
    assert (woman[second["id"]]["likes_count"], woman[second["id"]]["images_shown"]) == (1, 2)
    bare.unlike_prompt(run_b, "bob", image_idx=0)
    assert bare.get_pack_prompt(first["id"])["likes_count"] == 2 and bare.get_pack(pack["id"])["likes_count"] == 3
    assert_counters_match_rows(bare.store)


def test_counts_follow_deletions(bare):
    pack, (first, second) = _pack(bare)
    tune_a, tune_b = _tune(bare.store, "a"), _tune(bare.store, "b")
    runs = [_run(bare.store, tune, t["id"]) for tune in (tune_a, tune_b) for t in (first, second)]
    for n, prompt_id in enumerate(runs):
        for user in range(n + 1):
            bare.like_prompt(prompt_id, f"u{user}")
    assert bare.get_pack(pack["id"])["likes_count"] == 10
    bare.store.delete_tune(tune_a)  # its prompts, images and likes cascade away
    assert (bare.get_pack(pack["id"])["likes_count"], bare.get_pack(pack["id"])["images_shown"]) == (7, 4)
    assert_counters_match_rows(bare.store)
    bare.store.delete_prompt(runs[3])
    bare.remove_pack_prompt(first["id"])  # its counts leave the pack
    got = bare.get_pack(pack["id"])
    assert (got["likes_count"], got["images_shown"], got["runs"]) == (0, 0, 0)
    assert bare.store.get_prompt(runs[2])["likes_count"] == 3, "the prompt keeps its own likes"
    assert_counters_match_rows(bare.store)


def test_twenty_threads_liking_and_unliking_leave_counts_equal_to_rows(bare):
    pack, templates = _pack(bare, n_prompts=3)
    tune_id = _tune(bare.store)
    prompt_ids = [_run(bare.store, tune_id, t["id"], images=3) for t in templates for _ in range(2)]
    prompt_ids.append(_run(bare.store, tune_id, None))
    # Half the threads share the studio's connection; the others write through their own
    # connection to the same file, so the counts cannot lean on the Store's Python lock.
    other = Store(bare.store.path)
    errors: list[Exception] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        store = other if n % 2 else bare.store
        try:
            for _ in range(150):
                prompt_id = rng.choice(prompt_ids)
                user, idx = f"user{rng.randrange(4)}", rng.choice([-1, 0, 1])
                if n % 2:
                    (store.add_like if rng.random() < 0.6 else store.remove_like)(prompt_id, user, idx)
                elif rng.random() < 0.6:
                    bare.like_prompt(prompt_id, user, None if idx < 0 else idx)
                else:
                    bare.unlike_prompt(prompt_id, user, None if idx < 0 else idx)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    assert_counters_match_rows(bare.store)
    total = sum(bare.store.count_likes(p) for p in prompt_ids[:-1])
    assert total > 0 and bare.get_pack(pack["id"])["likes_count"] == total


def test_counters_are_backfilled_for_a_database_made_before_them(tmp_path):
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m040_pack_counters")
    stamp = "2026-01-01T00:00:00.000Z"
    db["tunes"].insert({"id": 1, "title": "t", "model_type": "lora", "created_at": stamp, "updated_at": stamp})
    db["packs"].insert({"id": 1, "slug": "p", "title": "P", "created_at": stamp, "updated_at": stamp})
    db["pack_prompts"].insert({"id": 1, "pack_id": 1, "class_name": "man", "text": "x", "created_at": stamp})
    db["prompts"].insert_all(
        {"id": n, "tune_id": 1, "text": "x", "orig_prompt_id": 1, "created_at": stamp, "updated_at": stamp}
        for n in (1, 2)
    )
    db["images"].insert_all({"prompt_id": n, "idx": 0, "path": f"o/{n}", "created_at": stamp} for n in (1, 2))
    db["likes"].insert_all({"prompt_id": 1, "user": u, "created_at": stamp} for u in ("a", "b", "c"))
    db.close()
    store = Store(path)
    assert store.get_prompt(1)["likes_count"] == 3
    pack = store.get_pack(1)
    assert (pack["likes_count"], pack["images_shown"], pack["runs"]) == (3, 2, 2)
    assert_counters_match_rows(store)
    store.close()
