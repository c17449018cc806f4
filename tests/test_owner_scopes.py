"""Owners, the rest of it: rankings and pack figures count only what the caller may see, and
titles, adapter names and pack slugs are unique per owner (a 409 on create never tells of
someone else's)."""

from __future__ import annotations

import io

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


def test_packs_and_their_prompts_show_each_owner_only_its_own_counts(bare):
    """The pack-level figures (list, detail, one pack prompt, a reorder) follow the same rule as
    the rankings: a shared pack shows a non-admin only what its own prompts got."""
    shared = bare.get_pack("corporate-headshots")
    women = shared["prompts_per_class"]["woman"]
    ann_tune, bob_tune = _tune(bare, ANN, "ann's"), _tune(bare, BOB, "bob's")
    for _ in range(2):
        bare.like_prompt(_made(bare, bob_tune, BOB, women[0]["id"], 3), "bob")
    ann_prompt = _made(bare, ann_tune, ANN, women[1]["id"], 1)
    bare.like_prompt(ann_prompt, "ann")
    scored = bare.store.prompt_images(ann_prompt)[0]["id"]
    bare.store.update_image(scored, likeness_score=0.9, likeness_match=1)

    def pack_figures(pack):
        return pack["likes_count"], pack["images_shown"], pack["runs"], pack["likeness_rate"]

    expected = {ANN: (1, 1, 1, 1.0), BOB: (2, 6, 2, None), BOSS: (3, 7, 3, 1.0)}
    for who, figures in expected.items():
        [listed] = [p for p in bare.list_packs(principal=who) if p["id"] == shared["id"]]
        detail = bare.get_pack(shared["id"], principal=who)
        assert pack_figures(listed) == pack_figures(detail) == figures, who
        assert detail["score"] == listed["score"] and detail["likeness_mean"] == listed["likeness_mean"]
    ann_view = bare.get_pack(shared["id"], principal=ANN)["prompts_per_class"]["woman"]
    assert [(p["likes_count"], p["images_shown"], p["runs"]) for p in ann_view[:2]] == [(0, 0, 0), (1, 1, 1)]
    assert ann_view[1]["likeness_mean"] == 0.9
    assert bare.get_pack_prompt(women[0]["id"], principal=ANN)["likes_count"] == 0
    assert bare.get_pack_prompt(women[0]["id"], principal=BOB)["likes_count"] == 2
    assert bare.get_pack_prompt(women[0]["id"], principal=BOSS)["images_shown"] == 6
    # Nobody outside an event (the page as first built, sent to every visitor) learns any of it.
    nobody = Principal("")
    assert pack_figures(bare.get_pack(shared["id"], principal=nobody)) == (0, 0, 0, None)
    # Reordering a pack of Bob's own answers Bob's figures, as ever.
    bobs = bare.create_pack(PackRequest(title="Bob's", classes=("woman",)), principal=BOB)
    bobs_prompts = [
        bare.add_pack_prompt(bobs["id"], PackPromptRequest("woman", f"{{{{token}}}} {{{{name}}}} {n}"), principal=BOB)
        for n in range(2)
    ]
    bare.like_prompt(_made(bare, bob_tune, BOB, bobs_prompts[0]["id"], 1), "bob")
    order = [bobs_prompts[1]["id"], bobs_prompts[0]["id"]]
    reordered = bare.reorder_pack_prompts(bobs["id"], "woman", order, principal=BOB)
    assert [(p["id"], p["likes_count"]) for p in reordered] == [(order[0], 0), (order[1], 1)]


def test_a_shared_pack_over_rest_shows_each_key_its_own_likes_and_runs_and_an_admin_the_sum(tmp_path, demo_model_dir):
    import httpx
    from api_helpers import live_studio

    with live_studio(tmp_path / "home", demo_model_dir, worker=False, admins=("boss",)) as (url, studio):
        auth = {who: {"Authorization": f"Bearer {studio.create_api_key(who)}"} for who in ("ann", "bob", "boss")}
        made: dict[str, list[dict]] = {}
        for who in ("ann", "bob"):
            tune_id = _tune(studio, Principal(f"key:{who}"), f"{who}'s")
            run = httpx.post(
                f"{url}/p/corporate-headshots/tunes", json={"tune": {"tune_ids": [tune_id]}}, headers=auth[who]
            )
            assert run.status_code == 201, run.text
            made[who] = run.json()
            for prompt in made[who]:  # what the worker would have drawn: one image each
                studio.store.add_image({"prompt_id": prompt["id"], "idx": 0, "path": f"outputs/{prompt['id']}.png"})
        likes = {"ann": 1, "bob": 3}
        for who, count in likes.items():
            for prompt in made[who][:count]:
                liked = httpx.post(f"{url}/prompts/{prompt['id']}/likes", headers=auth[who])
                assert liked.status_code == 201, liked.text
        ann_liked = made["ann"][0]["orig_prompt_id"]

        def seen(who: str) -> tuple[dict, dict, dict, dict]:
            h = auth[who]
            [listed] = [p for p in httpx.get(f"{url}/packs", headers=h).json() if p["slug"] == "corporate-headshots"]
            [shown] = [p for p in httpx.get(f"{url}/gallery/packs", headers=h).json() if p["id"] == listed["id"]]
            detail = httpx.get(f"{url}/p/corporate-headshots", headers=h).json()
            per_prompt = {p["id"]: p for p in detail["prompts_per_class"]["woman"]}
            return listed, shown, detail, per_prompt

        for who, liked in (("ann", 1), ("bob", 3), ("boss", 4)):
            listed, shown, detail, per_prompt = seen(who)
            runs = 8 if who == "boss" else 4
            for pack in (listed, shown, detail):
                assert (pack["likes_count"], pack["images_shown"], pack["runs"]) == (liked, runs, runs), who
            assert sum(p["likes_count"] for p in per_prompt.values()) == liked, who
            assert all(p["runs"] == runs // 4 for p in per_prompt.values()), who
        _, _, _, bobs_view = seen("bob")
        assert bobs_view[ann_liked]["likes_count"] == 1, "Bob's own like of the same pack prompt, not Ann's"
        _, _, _, anns_view = seen("ann")
        assert anns_view[ann_liked]["likes_count"] == 1
        assert [p["likes_count"] for i, p in anns_view.items() if i != ann_liked] == [0, 0, 0]


# -- names unique per owner ----------------------------------------------------------------------


def test_two_keys_may_create_the_same_title_and_each_key_stays_idempotent(tmp_path, demo_model_dir):
    import httpx
    from api_helpers import live_studio, photo_files

    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        auth = {who: {"Authorization": f"Bearer {studio.create_api_key(who)}"} for who in ("ann", "bob")}
        form = {"tune[title]": "My portrait", "tune[name]": "woman", "tune[branch]": "fast"}

        def create(who: str) -> httpx.Response:
            files = photo_files(("rachel",))
            return httpx.post(f"{url}/tunes", data=form, files=files, headers=auth[who], timeout=120)

        first = {who: create(who) for who in ("ann", "bob")}
        assert [r.status_code for r in first.values()] == [201, 201], [r.text for r in first.values()]
        ann, bob = first["ann"].json(), first["bob"].json()
        assert ann["id"] != bob["id"] and ann["title"] == bob["title"] == "My portrait"
        # The same key again: its own tune back, nothing new (Astria's idempotency by title).
        again = create("ann")
        assert again.status_code == 201 and again.json()["id"] == ann["id"]
        for who, tune in (("ann", ann), ("bob", bob)):
            assert [t["id"] for t in httpx.get(f"{url}/tunes", headers=auth[who]).json()] == [tune["id"]]


def test_adapter_names_are_per_owner_and_tokens_resolve_to_the_owners_own(bare):
    from photos import encode, friend
    from PIL import Image

    from studio.errors import Conflict
    from studio.prompts import PromptRequest

    faces = {ANN: "ross", BOB: "monica"}
    for who, person in faces.items():
        made = bare.add_adapter("style", "mine", encode(friend(person), "PNG"), principal=who)
        assert made["owner"] == who.owner
    with pytest.raises(Conflict):  # the same owner twice: still a conflict, named
        bare.add_adapter("style", "mine", encode(friend("ross"), "PNG"), principal=ANN)
    assert [a["owner"] for a in bare.list_adapters(principal=ANN)] == [ANN.owner]
    assert bare.get_adapter("style", "mine", principal=BOB)["owner"] == BOB.owner
    assert bare.get_adapter("style", "mine", principal=BOSS)["owner"] == ANN.owner  # an admin: the first made

    base = bare.store.get_tune(1)
    request = PromptRequest(text="<be-style:mine> a cat", steps=2).validate()
    for who, person in faces.items():
        resolved = bare.resolver.generate_request(base, request, seed=1, input_image=None, owner=who.owner)
        expected = Image.open(io.BytesIO(encode(friend(person), "PNG"))).convert("RGB")
        assert resolved.style_image.size == expected.size
        assert resolved.style_image.convert("RGB").tobytes() == expected.tobytes(), who
    bare.delete_adapter("style", "mine", principal=BOB)
    assert bare.get_adapter("style", "mine", principal=ANN)["owner"] == ANN.owner  # Ann's is untouched


def test_pack_slugs_are_per_owner_and_shared_packs_keep_theirs(bare):
    from studio.errors import Conflict

    ann = bare.create_pack(PackRequest(title="Beach", slug="beach", classes=("woman",)), principal=ANN)
    bob = bare.create_pack(PackRequest(title="Beach", slug="beach", classes=("woman",)), principal=BOB)
    assert ann["id"] != bob["id"]
    assert bare.get_pack("beach", principal=ANN)["id"] == ann["id"]
    assert bare.get_pack("beach", principal=BOB)["id"] == bob["id"]
    with pytest.raises(Conflict):  # the same owner twice
        bare.create_pack(PackRequest(title="Beach 2", slug="beach", classes=("woman",)), principal=ANN)
    with pytest.raises(Conflict):  # a shared (starter) pack's slug: everyone reads that one
        bare.create_pack(PackRequest(title="Mine", slug="corporate-headshots", classes=("woman",)), principal=ANN)
    exported = bare.export_pack("beach", principal=BOB)
    with pytest.raises(Conflict):
        bare.import_pack(exported, principal=BOB)
    imported = bare.import_pack(exported, slug="beach", principal=Principal("key:cy"))
    assert imported["owner"] == "key:cy"
    bare.delete_pack("beach", principal=BOB)
    assert bare.get_pack("beach", principal=ANN)["id"] == ann["id"]
    with pytest.raises(NotFound):
        bare.get_pack("beach", principal=BOB)


def test_m100_migrates_an_existing_database_keeping_rows_ids_and_triggers(tmp_path):
    import sqlite3

    from sqlite_utils import Database

    from storage import Store
    from storage.migrations import migrations

    path = tmp_path / "studio.db"
    stamp = "2026-01-01T00:00:00.000Z"
    db = Database(sqlite3.connect(path, isolation_level=None))
    db.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db, stop_before="m100_names_unique_per_owner")
    run = db.execute
    for tune_id, owner in ((1, "key:ann"), (2, "key:bob"), (3, "key:ann")):
        run(
            "INSERT INTO tunes (id, title, model_type, owner, created_at, updated_at) VALUES (?, ?, 'lora', ?, ?, ?)",
            [tune_id, f"t{tune_id}", owner, stamp, stamp],
        )
    run("DELETE FROM tunes WHERE id = 3")  # the newest: its id must stay used
    run(
        "INSERT INTO packs (id, slug, title, owner, created_at, updated_at) VALUES (4, 'p', 'P', 'key:ann', ?, ?)",
        [stamp, stamp],
    )
    run("INSERT INTO pack_prompts (id, pack_id, class_name, text, created_at) VALUES (5, 4, 'man', 'x', ?)", [stamp])
    run(
        "INSERT INTO prompts (id, tune_id, text, orig_prompt_id, owner, created_at, updated_at) "
        "VALUES (6, 1, 'x', 5, 'key:ann', ?, ?)",
        [stamp, stamp],
    )
    run(
        "INSERT INTO adapters (id, name, kind, path, owner, created_at) VALUES (7, 'a', 'style', 'p', 'key:ann', ?)",
        [stamp],
    )
    triggers = sorted(r[0] for r in run("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall())
    rows = {t: run(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("tunes", "packs", "adapters", "prompts")}
    db.conn.close()

    store = Store(path)  # applies m100
    try:
        assert not migrations.pending(store.db)
        after = {t: [tuple(r.values()) for r in store._query(f"SELECT * FROM {t} ORDER BY id")] for t in rows}
        # Later migrations may add columns at the end; the columns m100 saw keep their values.
        assert {t: [r[: len(before[0])] for r in after[t]] for t, before in rows.items()} == rows
        names = sorted(r["name"] for r in store._query("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        assert names == triggers and store._query("PRAGMA foreign_key_check") == []
        # The same title, slug and name for another owner; ids continue above the deleted tune.
        assert store.add_tune({"title": "t1", "model_type": "lora", "owner": "key:bob"}) == 4
        assert store.add_pack({"slug": "p", "title": "P", "classes": ["man"], "owner": "key:bob"}) == 5
        assert store.add_adapter({"name": "a", "kind": "style", "path": "p", "owner": "key:bob"}) == 8
        assert store.add_tune_unless_titled({"title": "t1", "model_type": "lora", "owner": "key:ann"}) == (1, False)
        for table, row in (
            ("tunes", {"title": "t1", "model_type": "lora", "owner": "key:ann"}),
            ("packs", {"slug": "p", "title": "P", "owner": "key:ann"}),
            ("adapters", {"name": "a", "kind": "style", "path": "p", "owner": "key:ann"}),
        ):
            with pytest.raises(sqlite3.IntegrityError):
                store._insert(
                    table, {"created_at": stamp, **({"updated_at": stamp} if table != "adapters" else {}), **row}
                )
        # The triggers and cascades still act on the rebuilt tables.
        store.add_like(6, "bob")
        assert store.get_pack(4)["likes_count"] == 1
        store.delete_tune(1)
        assert store.get_prompt(6) is None
    finally:
        store.close()


def test_the_packs_tab_shows_each_login_its_own_counts_of_a_shared_pack(tmp_path, demo_model_dir):
    """The Packs tab's cards, summary and prompt list go through the event's principal, as REST
    does: Ann sees what her prompts got, Bob his, the admin the sum."""
    from test_owners import call_event, fn_index, login, served

    auth = (("ann", "pw-a"), ("bob", "pw-b"), ("boss", "pw-c"))
    with served(tmp_path, demo_model_dir, auth=auth, admins=("boss",)) as (url, studio, blocks):
        shared = studio.get_pack("corporate-headshots")
        first, second = (p["id"] for p in shared["prompts_per_class"]["woman"][:2])
        ann, bob = Principal("login:ann"), Principal("login:bob")
        ann_tune, bob_tune = _tune(studio, ann, "ann's"), _tune(studio, bob, "bob's")
        studio.like_prompt(_made(studio, ann_tune, ann, first, 1), "ann")
        for _ in range(2):
            studio.like_prompt(_made(studio, bob_tune, bob, second, 3), "bob")
        show = fn_index(blocks, "packs", "show_pack")

        for who, (likes, shown_, runs) in {"ann": (1, 1, 1), "bob": (2, 6, 2), "boss": (3, 7, 3)}.items():
            message = call_event(login(url, who, dict(auth)[who]), url, show, [shared["id"]])
            assert message.get("success"), message
            page = " ".join(str(value) for value in message["output"]["data"])
            assert f"♥ {likes} of {shown_} image(s) shown" in page, who  # the summary
            assert f"♥ {likes} of {shown_} image(s) · {runs} run(s)" in page, who  # the pack's card
