"""The Packs tab in a real browser: packs as ranked cards, run a pack on a FaceID tune and like
what it made (the pack's counts follow), build a pack with the linter's findings inline, export
it, see a second import of it refused, delete it and import it back."""

import json

import pytest
from photos import encode, friend, mirrored
from playwright.sync_api import expect

from conftest import screenshot, settle
from studio.domain import SUCCESS
from studio.packs import PackPromptRequest, PackRequest
from studio.tune_requests import TuneRequest

pytestmark = pytest.mark.browser


def _faceid_tune(studio) -> dict:
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    return studio.create_tune(
        TuneRequest(title="Rachel", name="woman", model_type="faceid", branch="fast"), photos=photos
    )


def _open_tab(page, live_url):
    page.goto(live_url)
    page.get_by_role("tab", name="Packs").click()
    page.locator("#pack-cards .pack-card").first.wait_for()
    settle(page)


@pytest.mark.slow
def test_run_a_pack_on_a_tune_and_like_its_images(live_url, page, studio):
    tune = _faceid_tune(studio)
    pack = studio.create_pack(PackRequest(title="Tiny portraits", classes=("woman",)))
    small = {"num_images": 2, "steps": 3, "w": 64, "h": 64}
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", "portrait of {{token}} {{name}}, smiling", **small))
    studio.start_worker()
    _open_tab(page, live_url)
    cards = page.locator("#pack-cards")
    cards.locator(".pack-card", has_text="Tiny portraits").wait_for()  # made after the page was built
    assert cards.locator(".pack-card").count() == 4  # the three starter packs and this one
    # 1. A pack without prompts for the tune's class is refused with the reason.
    cards.locator(".pack-card", has_text="Pet Portraits").click()
    page.locator("#pack-summary").get_by_text("Pet Portraits").wait_for()
    page.locator("#pack-run").click()
    page.get_by_text("has no 'woman' prompts to run").first.wait_for()
    # 2. Pick the tiny pack from its card and run it on the tune (the only one, so chosen).
    cards.locator(".pack-card", has_text="Tiny portraits").click()
    page.locator("#pack-summary").get_by_text("Tiny portraits").wait_for()
    assert "Rachel" in page.locator("#pack-run-tune input").input_value()
    page.locator("#pack-run").click()
    results = page.locator("#pack-results")
    results.locator(".badge.SUCCESS").wait_for(timeout=120_000)
    results.locator("img").nth(1).wait_for()
    [prompt] = studio.gallery(pack_id=pack["id"])
    assert prompt["status"] == SUCCESS and prompt["text"] == "portrait of ohwx woman, smiling"
    assert prompt["tune_id"] == tune["id"] and len(prompt["images"]) == 2
    # 3. A like on its image counts for the pack, and its card says so.
    results.locator("button.heart[data-idx='0']").click()
    results.locator("button.heart.on[data-idx='0']").wait_for()
    assert studio.get_pack(pack["id"])["likes_count"] == 1
    page.get_by_role("tab", name="Gallery").click()
    page.get_by_role("tab", name="Packs").click()
    cards.locator(".pack-card", has_text="Tiny portraits").get_by_text("♥ 1 of 2 image(s)").wait_for()
    screenshot(page, "tab-packs")


@pytest.mark.slow
def test_build_a_pack_with_the_linter_inline_then_export_it(live_url, page, studio, tmp_path):
    _open_tab(page, live_url)
    editor = page.locator("#pack-editor")
    editor.get_by_text("Edit pack").click()
    # 1. A new pack from the form (it shows the chosen pack until cleared).
    expect(editor.get_by_label("Title")).to_have_value(studio.list_packs()[0]["title"])
    page.locator("#pack-blank").click()
    page.wait_for_function("() => document.querySelector('#pack-classes input:checked') === null")
    editor.get_by_label("Title").fill("Studio test pack")
    editor.get_by_label("woman").check()
    page.locator("#pack-create").click()
    page.locator("#pack-cards .pack-card", has_text="Studio test pack").wait_for()
    lint = page.locator("#pack-lint")
    lint.get_by_text("The pack has no prompts").wait_for()
    pack = studio.get_pack("studio-test-pack")
    assert pack["classes"] == ["woman"] and pack["prompts_per_class"] == {"woman": []}
    # 2. A prompt with a misspelt placeholder: the linter says so at once.
    text = page.locator("#pack-prompt-text textarea")
    text.fill("portrait of {{token}} {{name}}, {{eye_colour}}")
    page.locator("#pack-prompt-save").click()
    lint.get_by_text("{{eye_colour}} is filled by nothing").wait_for()
    # 3. Fix it (the saved prompt stays chosen in the editor) with a parameter: clean.
    text.fill("portrait of {{token}} {{name}}, {{eye_color}}")
    editor.get_by_label("Steps").fill("12")
    page.locator("#pack-prompt-save").click()
    lint.get_by_text("no problems found").wait_for()
    [template] = studio.get_pack("studio-test-pack")["prompts_per_class"]["woman"]
    assert template["text"] == "portrait of {{token}} {{name}}, {{eye_color}}" and template["params"] == {"steps": 12}
    assert "#" + str(template["id"]) in page.locator("#pack-prompts").inner_text()
    screenshot(page, "tab-packs-editor")
    # 4. Export: a pack file with the prompt; importing it again is refused (its slug is taken).
    files = page.locator("#pack-files")
    files.get_by_text("Import or export").click()
    page.locator("#pack-export").click()
    with page.expect_download() as download:
        page.locator("#pack-exported a[download='studio-test-pack.json']").click()
    exported = tmp_path / "pack.json"
    download.value.save_as(exported)
    document = json.loads(exported.read_text())
    assert document["slug"] == "studio-test-pack"
    assert document["prompts_per_class"]["woman"][0]["text"] == "portrait of {{token}} {{name}}, {{eye_color}}"
    page.locator("#pack-upload input[type=file]").set_input_files(str(exported))
    page.locator("#pack-upload").get_by_text("pack.json").wait_for()
    page.locator("#pack-import").click()
    page.get_by_text("A pack with the slug 'studio-test-pack' exists").first.wait_for()
    assert len(studio.list_packs()) == 4
    # 5. Delete the pack; the file brings it back.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#pack-delete").click()
    page.locator("#pack-cards .pack-card", has_text="Studio test pack").wait_for(state="detached")
    page.locator("#pack-import").click()
    page.locator("#pack-cards .pack-card.chosen", has_text="Studio test pack").wait_for()
    [template] = studio.get_pack("studio-test-pack")["prompts_per_class"]["woman"]
    assert template["params"] == {"steps": 12}


@pytest.mark.slow
def test_train_a_tune_from_a_pack_with_the_uploaded_photos(live_url, page, studio, tmp_path):
    pack = studio.create_pack(PackRequest(title="LoRA headshots", classes=("woman",), model_type="lora"))
    small = {"num_images": 1, "steps": 3, "w": 64, "h": 64}
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", "headshot of {{token}} {{name}}", **small))
    studio.start_worker()
    images = {"a.jpg": friend("rachel"), "b.jpg": mirrored(friend("rachel"))}
    for name, image in images.items():
        (tmp_path / name).write_bytes(encode(image))
    page.goto(live_url)
    page.get_by_role("tab", name="Photos").click()
    page.locator("#photo-upload input[type=file]").set_input_files([str(tmp_path / n) for n in images])
    page.wait_for_function("() => document.querySelectorAll('#photo-cards .card').length === 2")
    page.get_by_role("tab", name="Packs").click()
    page.locator("#pack-cards .pack-card", has_text="LoRA headshots").click()
    page.locator("#pack-summary").get_by_text("LoRA headshots").wait_for()
    page.locator("#pack-train").get_by_text("train a new tune from this pack").click()
    page.locator("#pack-train-note", has_text="2 photo(s)").wait_for()
    page.locator("#pack-train-title input, #pack-train-title textarea").first.fill("Rachel from a pack")
    page.locator("#pack-train-fast input").check()  # mock mode: a few training steps on the demo model
    page.locator("#pack-train-go").click()
    results = page.locator("#pack-results")
    results.locator(".badge.SUCCESS").wait_for(timeout=120_000)
    [tune] = [t for t in studio.list_tunes() if t["title"] == "Rachel from a pack"]
    assert tune["model_type"] == "lora" and tune["branch"] == "fast" and tune["status"] == "SUCCESS"
    assert studio.store.get_tune(tune["id"])["pack_id"] == pack["id"]
    [prompt] = studio.gallery(pack_id=pack["id"])
    assert prompt["tune_id"] == tune["id"] and prompt["text"] == "headshot of ohwx woman"
    assert "Rachel from a pack" in page.locator("#pack-run-tune input").input_value()
