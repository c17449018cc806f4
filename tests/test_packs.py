"""Packs: editing, templates, the linter, pack files and the starter packs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from studio import packs
from studio.config import Settings
from studio.core import Studio
from studio.errors import Conflict, InvalidInput, NotFound
from studio.packs import PackPromptRequest, PackRequest
from studio.services.models import ASSETS

STARTERS = {
    "corporate-headshots": {"man", "woman"},
    "fantasy-portraits": {"man", "woman"},
    "pet-portraits": {"cat", "dog"},
}


def png(color: tuple[int, int, int], size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def bare(tmp_path) -> Studio:
    """A studio without the demo model: packs never load one."""
    studio = Studio.open(Settings(home=tmp_path / "bare"))
    yield studio
    studio.close()


def _pack(studio: Studio, title: str = "Beach Day", **fields) -> dict:
    return studio.create_pack(PackRequest(title=title, classes=("man", "woman"), **fields))


# -- starter packs ----------------------------------------------------------------------------


def test_starter_packs_load_once_with_both_classes_and_no_lint_errors(tmp_path):
    studio = Studio.open(Settings(home=tmp_path / "home"))
    loaded = {p["slug"]: p for p in studio.list_packs()}
    assert set(STARTERS) <= set(loaded)
    for slug, classes in STARTERS.items():
        pack = studio.get_pack(slug)
        assert set(pack["prompts_per_class"]) == classes
        assert all(len(pack["prompts_per_class"][c]) >= 3 for c in classes)
        assert [i for i in studio.lint_pack(slug) if i.level == "error"] == []
        texts = [p["text"] for c in classes for p in pack["prompts_per_class"][c]]
        assert all("{{token}} {{name}}" in text for text in texts)
    studio.close()
    again = Studio.open(Settings(home=tmp_path / "home"))  # idempotent by slug
    assert sorted(p["slug"] for p in again.list_packs()) == sorted(loaded)
    again.close()


def test_starter_files_use_characteristics_and_cheap_params():
    for path in sorted(ASSETS.glob("packs/*.json")):
        document = json.loads(path.read_text())
        request, prompts, _, _ = packs.parse_document(document)
        names = {n for p in prompts for n in packs.prompts.placeholders(p.text)}
        if request.classes != ("cat", "dog"):
            assert names & set(packs.CHARACTERISTICS), path.name
        for prompt in prompts:
            assert prompt.w is None and prompt.h is None, "sizes come from the base model, so any base works"
            assert prompt.num_images <= 2 and (prompt.steps or 0) <= 25, path.name


# -- editing ----------------------------------------------------------------------------------


def test_create_pack_makes_a_slug_and_checks_fields(bare):
    pack = _pack(bare, "Beach Day: Summer!")
    assert pack["slug"] == "beach-day-summer" and pack["public"] is True and pack["unlisted"] is False
    assert pack["prompts_per_class"] == {"man": [], "woman": []}
    assert pack["rating"] == "new" and pack["score"] == 0.0
    with pytest.raises(Conflict):
        _pack(bare, "Beach day summer")
    with pytest.raises(NotFound) as error:
        _pack(bare, "Other", base_tune_id=999999)
    assert error.value.field == "base_tune_id"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "  "}, "title"),
        ({"slug": "Not A Slug"}, "slug"),
        ({"model_type": "checkpoint"}, "model_type"),
        ({"token": "two words"}, "token"),
        ({"classes": ("Big Cat",)}, "class_name"),
        ({"preset": "flux-lora-portrait"}, "preset"),
        ({"args": {"steps": 30}}, "args"),
        ({"args": {"rank": 0}}, "rank"),
    ],
)
def test_bad_pack_fields_name_the_field(bare, fields, field):
    with pytest.raises(InvalidInput) as error:
        bare.create_pack(PackRequest(**{"title": "Fine", **fields}))
    assert error.value.field == field


def test_update_pack_changes_fields_and_keeps_slugs_unique(bare):
    pack = _pack(bare)
    other = _pack(bare, "Snow Day")
    updated = bare.update_pack(pack["id"], title="Beach Night", unlisted=True, preset="portrait")
    assert (updated["title"], updated["unlisted"], updated["preset"], updated["slug"]) == (
        "Beach Night",
        True,
        "portrait",
        "beach-day",
    )
    assert bare.update_pack("beach-day", description="sunny")["description"] == "sunny"  # by slug too
    with pytest.raises(Conflict):
        bare.update_pack(pack["id"], slug=other["slug"])
    with pytest.raises(InvalidInput) as error:
        bare.update_pack(pack["id"], colour="red")
    assert error.value.field == "colour"
    assert [p["slug"] for p in bare.list_packs(listed=True) if p["slug"].endswith("day")] == ["snow-day"]


def test_pack_prompts_add_edit_reorder_remove(bare):
    pack = _pack(bare)
    a = bare.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}} on a beach", steps=12))
    b = bare.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}} surfing", num_images=2))
    c = bare.add_pack_prompt(pack["id"], PackPromptRequest("dog", "{{token}} {{name}} digging"))
    assert (a["position"], b["position"], c["position"]) == (0, 1, 0)
    assert a["params"] == {"steps": 12} and b["num_images"] == 2
    assert bare.get_pack(pack["id"])["classes"] == ["man", "woman", "dog"]

    order = bare.reorder_pack_prompts(pack["id"], "woman", [b["id"], a["id"]])
    assert [p["id"] for p in order] == [b["id"], a["id"]]
    with pytest.raises(InvalidInput):
        bare.reorder_pack_prompts(pack["id"], "woman", [b["id"]])

    moved = bare.edit_pack_prompt(a["id"], PackPromptRequest("dog", "{{token}} {{name}} asleep", cfg_scale=5))
    assert (moved["class_name"], moved["position"], moved["params"]) == ("dog", 1, {"cfg_scale": 5.0})
    bare.remove_pack_prompt(c["id"])
    per_class = bare.get_pack(pack["id"])["prompts_per_class"]
    assert [p["id"] for p in per_class["dog"]] == [a["id"]] and [p["id"] for p in per_class["woman"]] == [b["id"]]
    with pytest.raises(NotFound):
        bare.remove_pack_prompt(c["id"])


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"text": " "}, "text"),
        ({"num_images": 9}, "num_images"),
        ({"steps": 0}, "steps"),
        ({"w": 500}, "w"),
        ({"scheduler": "ddim-ish"}, "scheduler"),
        ({"cfg_scale": 31}, "cfg_scale"),
    ],
)
def test_bad_pack_prompt_fields_name_the_field(bare, request_fields, field):
    pack = _pack(bare)
    with pytest.raises(InvalidInput) as error:
        bare.add_pack_prompt(
            pack["id"], PackPromptRequest(**{"class_name": "man", "text": "{{token}} man", **request_fields})
        )
    assert error.value.field == field


def test_cover_is_the_image_of_the_last_prompt_added(bare):
    pack = _pack(bare)
    red = bare.add_pack_prompt(pack["id"], PackPromptRequest("man", "{{token}} {{name}} red"), image=png((255, 0, 0)))
    assert bare.get_pack(pack["id"])["cover_path"] == red["image_path"]
    bare.add_pack_prompt(pack["id"], PackPromptRequest("man", "{{token}} {{name}} plain"))  # no image: cover stays
    assert bare.get_pack(pack["id"])["cover_path"] == red["image_path"]
    blue = bare.add_pack_prompt(
        pack["id"], PackPromptRequest("woman", "{{token}} {{name}} blue"), image=png((0, 0, 255))
    )
    assert bare.get_pack(pack["id"])["cover_path"] == blue["image_path"]
    bare.remove_pack_prompt(blue["id"])  # Astria: remove the last prompt to get the previous cover back
    assert bare.get_pack(pack["id"])["cover_path"] == red["image_path"]
    assert not bare.files.path(blue["image_path"]).exists(), "an image nothing shows is deleted"
    with pytest.raises(InvalidInput):
        bare.add_pack_prompt(pack["id"], PackPromptRequest("man", "{{token}} man"), image=b"GIF89a not an image")


def test_an_existing_prompt_becomes_a_template_and_its_image_the_cover(bare):
    pack = _pack(bare)
    tune_id = bare.store.add_tune({"title": "t", "name": "woman", "token": "sks", "model_type": "lora"})
    params = {"num_images": 2, "seed": 42, "steps": 9, "cfg_scale": 5.0, "w": 512, "denoising_strength": 0.8}
    prompt_id = bare.store.add_prompt(
        {"tune_id": tune_id, "text": "sks woman on a pier, sunset", "negative_prompt": "blur", "params": params}
    )
    for idx, color in enumerate([(5, 5, 5), (250, 250, 5)]):
        path = bare.files.put(png(color), "outputs", ".png")
        bare.store.add_image({"prompt_id": prompt_id, "idx": idx, "path": path})
    template = bare.add_prompt_to_pack(pack["id"], prompt_id, image_idx=1)
    assert template["text"] == "{{token}} {{name}} on a pier, sunset" and template["class_name"] == "woman"
    assert template["params"] == {"steps": 9, "cfg_scale": 5.0, "w": 512} and template["num_images"] == 2
    assert template["negative_prompt"] == "blur"
    cover = bare.get_pack(pack["id"])["cover_path"]
    assert cover.startswith("covers/") and bare.files.read(cover) == png((250, 250, 5))
    with pytest.raises(InvalidInput):
        bare.add_prompt_to_pack(pack["id"], prompt_id, image_idx=2)


def test_delete_pack_keeps_prompts_made_from_it(bare):
    pack = _pack(bare)
    template = bare.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}}"), image=png((1, 2, 3)))
    tune_id = bare.store.add_tune({"title": "t", "name": "woman", "token": "ohwx", "model_type": "lora"})
    prompt_id = bare.store.add_prompt({"tune_id": tune_id, "text": "ohwx woman", "orig_prompt_id": template["id"]})
    bare.delete_pack(pack["id"])
    with pytest.raises(NotFound):
        bare.get_pack(pack["id"])
    assert bare.store.get_prompt(prompt_id)["orig_prompt_id"] is None
    assert not bare.files.path(template["image_path"]).exists()


# -- templates and the linter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "characteristics", "expected", "missing"),
    [
        (
            "{{token}} {{name}}, {{eye_color}}, smiling",
            {"eye_color": "blue eyes"},
            "ohwx woman, blue eyes, smiling",
            [],
        ),
        ("{{token}} {{name}}, {{eye_color}}, smiling", {}, "ohwx woman, smiling", ["eye_color"]),
        ("{{token}} {{name}}, {{ hair_color }}", {"hair_color": "NONE"}, "ohwx woman", ["hair_color"]),
        ("{{eye_color}}, portrait of {{token}} {{name}}", {"eye_color": ""}, "portrait of ohwx woman", ["eye_color"]),
        ("{{token}} {{name}} with {{glasses}}", {"glasses": "glasses"}, "ohwx woman with glasses", []),
    ],
)
def test_fill_template(text, characteristics, expected, missing):
    values = packs.pack_values({"token": "ohwx", "name": "woman", "characteristics": characteristics})
    assert packs.fill_template(text, values) == (expected, missing)


@pytest.mark.parametrize(
    ("text", "params", "code", "level"),
    [
        ("{{token}} {{name}} with {{eyes}}", {}, "unresolved_placeholder", "error"),
        ("{{token}} {{name}} {hair_color}", {}, "malformed_placeholder", "error"),
        ("{{token}} {{name}} {{hair_color}", {}, "malformed_placeholder", "error"),
        ("{{token}} man in a suit", {}, "class_mismatch", "error"),
        ("ohwx woman in a suit", {}, "literal_token", "warning"),
        ("a woman in a suit", {}, "no_token", "warning"),
        ("{{token}} {{name}}", {"steps": 500}, "bad_params", "error"),
    ],
)
def test_lint_finds_each_problem(text, params, code, level):
    pack = {"token": "ohwx", "classes": ["woman"]}
    issues = packs.lint(pack, [{"id": 7, "class_name": "woman", "text": text, "params": params}])
    assert (code, level) in {(i.code, i.level) for i in issues}
    found = next(i for i in issues if i.code == code)
    assert found.pack_prompt_id == 7 and found.message.startswith("Prompt 7 (woman)")


def test_lint_pack_level_findings_and_a_clean_pack(bare):
    pack = _pack(bare)
    assert [i.code for i in bare.lint_pack(pack["id"])] == [
        "no_prompts",
        "class_without_prompts",
        "class_without_prompts",
    ]
    bare.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}}, {{eye_color}}, at the beach"))
    assert [i.code for i in bare.lint_pack(pack["id"])] == ["class_without_prompts"]
    bare.add_pack_prompt(pack["id"], PackPromptRequest("man", "{{token}} {{name}} at the beach"))
    assert bare.lint_pack(pack["id"]) == []
    tune_issues = bare.lint_pack(pack["slug"], characteristics={"hair_color": "red hair"})
    assert [(i.code, i.class_name) for i in tune_issues] == [("missing_characteristic", "woman")]
    assert bare.lint_pack(pack["id"], characteristics={"eye_color": "green eyes"}) == []


# -- pack files -------------------------------------------------------------------------------


def _rich_pack(studio: Studio) -> dict:
    pack = studio.create_pack(
        PackRequest(
            title="Studio Lights",
            description="moody",
            classes=("man", "woman"),
            token="sks",
            args={"max_train_steps": 30},
        )
    )
    studio.add_pack_prompt(
        pack["id"],
        PackPromptRequest(
            "woman", "{{token}} {{name}}, {{hair_color}}, rim light", "blurry", 2, 6.5, 18, "euler_a", 512, 640
        ),
        image=png((200, 10, 10)),
    )
    studio.add_pack_prompt(pack["id"], PackPromptRequest("man", "{{token}} {{name}} in fog", seed=7, face_swap=True))
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}} neon"), image=png((10, 200, 10)))
    return studio.get_pack(pack["id"])


def _comparable(pack: dict, studio: Studio) -> dict:
    keep = (
        "slug",
        "title",
        "description",
        "classes",
        "model_type",
        "base_tune_id",
        "preset",
        "token",
        "args",
        "public",
        "unlisted",
    )
    prompts = {
        name: [
            (
                p["text"],
                p["negative_prompt"],
                p["num_images"],
                p["params"],
                p["position"],
                p["image_path"] and studio.files.read(p["image_path"]),
            )
            for p in items
        ]
        for name, items in pack["prompts_per_class"].items()
    }
    return {**{k: pack[k] for k in keep}, "prompts": prompts, "cover": studio.files.read(pack["cover_path"])}


def test_exported_pack_imports_identically_on_a_fresh_studio(bare, tmp_path):
    original = _rich_pack(bare)
    text = bare.export_pack(original["id"])
    document = json.loads(text)
    assert document["cover"].startswith("data:image/png;base64,")
    fresh = Studio.open(Settings(home=tmp_path / "fresh"))
    imported = fresh.import_pack(text)
    assert _comparable(imported, fresh) == _comparable(original, bare)
    assert fresh.export_pack(imported["id"]) == text
    with pytest.raises(Conflict):
        fresh.import_pack(text)
    renamed = fresh.import_pack(json.loads(text), slug="studio-lights-2")
    assert renamed["slug"] == "studio-lights-2" and renamed["id"] != imported["id"]
    fresh.close()


def test_import_reads_a_sibling_cover_and_refuses_paths(bare, tmp_path):
    document = json.loads(bare.export_pack(_rich_pack(bare)["id"]))
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "cover.png").write_bytes(png((9, 9, 250)))
    (folder / "pack.json").write_text(json.dumps({**document, "slug": "sibling", "cover": "cover.png"}))
    pack = bare.import_pack(folder / "pack.json")
    assert bare.files.read(pack["cover_path"]) == png((9, 9, 250))
    for cover in ("../cover.png", "/etc/passwd", "missing.png"):
        (folder / "bad.json").write_text(json.dumps({**document, "slug": "bad", "cover": cover}))
        with pytest.raises(InvalidInput):
            bare.import_pack(folder / "bad.json")
    with pytest.raises(InvalidInput):  # a sibling name means nothing without the file's folder
        bare.import_pack(json.dumps({**document, "slug": "bad", "cover": "cover.png"}))
    assert bare.store.find_pack_by_slug("bad") is None


@pytest.mark.parametrize(
    "change",
    [
        {"format": "something-else"},
        {"version": 99},
        {"prompts_per_class": []},
        {"prompts_per_class": {"woman": [{"txt": "typo"}]}},
        {"prompts_per_class": {"woman": [{"text": "{{token}} woman", "cfg": 3}]}},
        {"prompts_per_class": {"woman": [{"text": "{{token}} woman", "steps": 900}]}},
        {"model_type": "dreambooth"},
        {"cover": "data:image/png;base64,bm90IGFuIGltYWdl"},
    ],
)
def test_import_refuses_bad_files_without_writing_anything(bare, change):
    document = {**json.loads(bare.export_pack(_rich_pack(bare)["id"])), "slug": "other", **change}
    before = len(bare.list_packs())
    with pytest.raises(InvalidInput):
        bare.import_pack(document)
    assert len(bare.list_packs()) == before


def test_import_refuses_text_that_is_not_json(bare, tmp_path):
    with pytest.raises(InvalidInput):
        bare.import_pack("{not json")
    with pytest.raises(InvalidInput):
        bare.import_pack(Path(tmp_path / "nope.json"))


# -- tune from pack ---------------------------------------------------------------------------


@pytest.fixture
def small_studio(tmp_path, demo_model_dir) -> Studio:
    """A studio on the session's demo model that generates at 64 px (pack prompts set no size)."""
    home = tmp_path / "small"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, demo_size=64, allow_private_urls=True))
    yield studio
    studio.close()


def _woman_photos() -> list[tuple[str, bytes]]:
    from photos import encode, friend, mirrored

    people = [friend("rachel"), friend("phoebe"), friend("monica")]
    images = [*people, mirrored(people[0]), mirrored(people[1])]
    return [(f"photo{n}.jpg", encode(image)) for n, image in enumerate(images)]


class _Hook:
    """A local HTTP endpoint that records the JSON bodies POSTed to it."""

    def __init__(self):
        import http.server
        import threading

        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done?user=7"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 20) -> list:
        import time

        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies


@pytest.mark.slow
def test_starter_pack_end_to_end_on_the_demo_model(small_studio):
    """Pick a starter pack, upload 5 photos, choose 'woman': a tune trains, the pack's woman
    prompts run and make images; likes raise those pack prompts and the pack in the rankings,
    and a second tune from the same pack adds to the same counts."""
    studio, hook = small_studio, _Hook()
    # The pack's training args reach its tunes: one sample image at the end instead of one per
    # checkpoint keeps this test cheap.
    pack = studio.update_pack("corporate-headshots", args={"checkpointing_steps": 0})
    woman = pack["prompts_per_class"]["woman"]
    characteristics = {"eye_color": "green eyes", "hair_color": "red hair", "age": "NONE"}

    tune = studio.tune_from_pack(
        pack["id"], _woman_photos(), "woman", "Jane - e2e 1", characteristics, branch="fast", prompts_callback=hook.url
    )
    assert (tune["name"], tune["token"], tune["model_type"], tune["status"]) == ("woman", "ohwx", "lora", "QUEUING")
    assert studio.store.get_tune(tune["id"])["pack_id"] == pack["id"]
    assert tune["args"]["training"]["checkpointing_steps"] == 0
    studio.run_pending()
    assert studio.store.get_tune(tune["id"])["status"] == "SUCCESS"
    made = sorted(studio.store.list_prompts(tune_id=tune["id"]), key=lambda p: p["id"])
    assert [p["orig_prompt_id"] for p in made] == [p["id"] for p in woman]
    assert all(p["status"] == "SUCCESS" for p in made), [p["message"] for p in made]
    assert "ohwx woman" in made[1]["text"] and "red hair, green eyes" in made[1]["text"] and "{{" not in made[1]["text"]
    assert "NONE" not in made[0]["text"]
    for prompt in made:
        images = studio.store.prompt_images(prompt["id"])
        assert len(images) == woman[0]["num_images"] and studio.files.path(images[0]["path"]).is_file()

    studio.like_prompt(made[0]["id"], "ann")
    studio.like_prompt(made[2]["id"], "ann")
    ranked = studio.list_packs()
    assert ranked[0]["slug"] == "corporate-headshots" and ranked[0]["likes_count"] == 2
    assert ranked[0]["images_shown"] == len(made) and ranked[0]["rating"] == "few ratings"
    top = studio.pack_prompt_rankings(pack["id"])
    assert {p["id"] for p in top[:2]} == {woman[0]["id"], woman[2]["id"]}
    assert all(p["score"] > 0 for p in top[:2]) and top[2]["score"] == 0

    body = hook.wait(1)
    assert len(body) == 1 and sorted(p["id"] for p in body[0]) == [p["id"] for p in made]
    assert sorted(p["orig_prompt_id"] for p in body[0]) == sorted(p["id"] for p in woman)

    uploaded = [photo["id"] for photo in studio.store.tune_photos(tune["id"])]  # no second inspection
    assert len(uploaded) == 5
    second = studio.tune_from_pack(pack["slug"], None, "woman", "Jane - e2e 2", photo_ids=uploaded, branch="fast")
    studio.run_pending()
    again = studio.store.list_prompts(tune_id=second["id"])
    studio.like_prompt(next(p["id"] for p in again if p["orig_prompt_id"] == woman[0]["id"]), "bob")
    after = studio.get_pack(pack["id"])
    assert (after["likes_count"], after["images_shown"], after["runs"]) == (3, 2 * len(made), 2 * len(made))
    first = next(p for p in after["prompts_per_class"]["woman"] if p["id"] == woman[0]["id"])
    assert (first["likes_count"], first["runs"]) == (2, 2)


def test_tune_from_pack_refuses_before_storing_anything(small_studio):
    studio = small_studio
    tunes_before = len(studio.store.list_tunes())
    with pytest.raises(InvalidInput) as error:
        studio.tune_from_pack("pet-portraits", _woman_photos(), "woman", "no woman prompts")
    assert error.value.field == "name" and "cat, dog" in error.value.message
    other = studio.get_pack("fantasy-portraits")["prompts_per_class"]["man"][0]["id"]
    with pytest.raises(InvalidInput) as error:
        studio.tune_from_pack("corporate-headshots", _woman_photos(), "woman", "foreign", prompt_ids=[other])
    assert error.value.field == "prompt_ids"
    broken = _pack(studio, "Broken")
    studio.add_pack_prompt(broken["id"], PackPromptRequest("woman", "{{token}} {{name}} with {{eyes}}"))
    with pytest.raises(InvalidInput) as error:
        studio.tune_from_pack(broken["id"], _woman_photos(), "woman", "broken")
    assert error.value.field == "pack_id" and "{{eyes}}" in error.value.message
    with pytest.raises(NotFound):
        studio.tune_from_pack(10**6, _woman_photos(), "woman", "nowhere")
    assert len(studio.store.list_tunes()) == tunes_before


def test_run_pack_on_existing_tunes_with_chosen_prompts(small_studio):
    studio = small_studio
    pack = studio.get_pack("pet-portraits")
    cat, dog = pack["prompts_per_class"]["cat"], pack["prompts_per_class"]["dog"]
    # Tunes still QUEUING: their prompts are stored and wait for training, nothing generates now.
    tom = studio.store.add_tune(
        {
            "title": "Tom",
            "name": "cat",
            "token": "sks",
            "model_type": "lora",
            "characteristics": {"eye_color": "amber eyes"},
        }
    )
    rex = studio.store.add_tune({"title": "Rex", "name": "dog", "token": "ohwx", "model_type": "lora"})
    made = studio.run_pack(pack["id"], [tom, rex], prompt_ids=[cat[0]["id"], cat[2]["id"], dog[1]["id"]])
    assert [(p["tune_id"], p["orig_prompt_id"]) for p in made] == [
        (tom, cat[0]["id"]),
        (tom, cat[2]["id"]),
        (rex, dog[1]["id"]),
    ]
    assert made[0]["text"].startswith("studio portrait of sks cat, amber eyes, sitting")
    assert all(p["status"] == "QUEUING" for p in made)
    assert studio.get_pack(pack["id"])["runs"] == 3
    with pytest.raises(NotFound):
        studio.run_pack(pack["id"], [tom, 10**6])
    with pytest.raises(InvalidInput):
        studio.run_pack(pack["id"], [])
    assert studio.get_pack(pack["id"])["runs"] == 3


def test_face_detailing_and_hires_fix_go_from_pack_prompt_through_file_to_run(bare, tmp_path):
    pack = _pack(bare, "Night Out")
    fixes = {"inpaint_faces": False, "inpaint_faces_strength": 0.6, "hires_fix": True, "hires_scale": 1.5}
    bare.add_pack_prompt(pack["id"], PackPromptRequest(class_name="woman", text="{{token}} {{name}} at night", **fixes))
    bare.add_pack_prompt(pack["id"], PackPromptRequest(class_name="woman", text="{{token}} {{name}} dancing"))
    text = bare.export_pack(pack["id"])
    entry = json.loads(text)["prompts_per_class"]["woman"][0]
    assert {k: entry[k] for k in fixes} == fixes
    fresh = Studio.open(Settings(home=tmp_path / "fresh"))
    imported = fresh.import_pack(text)
    tune = fresh.store.add_tune({"title": "Ann", "name": "woman", "token": "sks", "model_type": "lora"})
    fixed, plain = fresh.run_pack(imported["id"], [tune])  # the tune is QUEUING: stored, not generated
    fixed_params, plain_params = (fresh.store.get_prompt(p["id"])["params"] for p in (fixed, plain))
    assert {k: fixed_params[k] for k in fixes} == fixes and fixed_params["hires_denoising_strength"] == 0.5
    assert plain_params["inpaint_faces"] is None and plain_params["hires_fix"] is False
    fresh.close()
    for name, value in [("inpaint_faces", "maybe"), ("hires_scale", 9.0), ("hires_denoising_strength", 0.0)]:
        with pytest.raises(InvalidInput) as error:
            bare.add_pack_prompt(pack["id"], PackPromptRequest(class_name="woman", text="x", **{name: value}))
        assert error.value.field == name
    with pytest.raises(InvalidInput) as error:
        bare.import_pack(text.replace('"hires_scale": 1.5', '"hires_scale": "big"'), slug="night-out-2")
    assert error.value.field == "hires_scale"
