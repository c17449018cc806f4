"""What the UI tells a person after an action, in a real browser: a refused action leaves the
form readable and the terminal free of tracebacks; tabs show what other tabs and API clients made
meanwhile; an action that changes something says so."""

import logging

import pytest
from lora_files import write_sd15_lora
from photos import astronaut, encode, friend, mirrored, rotated
from playwright.sync_api import expect

from studio.prompts import PromptRequest
from studio.tune_requests import TuneRequest

pytestmark = pytest.mark.browser


def _photos() -> list[tuple[str, bytes]]:
    return [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]


def _open(page, url: str, tab: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name=tab).click()


def test_a_refused_upload_keeps_the_form_readable_and_prints_no_traceback(
    live_url, page, studio, tmp_path, capfd, caplog
):
    lora = write_sd15_lora(tmp_path / "toy.safetensors")
    studio.add_adapter("lora", "toy", lora.read_bytes())
    _open(page, live_url, "Avatars & LoRAs")
    page.locator("#adapter-list .card[data-name=toy]").wait_for()
    page.locator("#lora-file input[type=file]").set_input_files(str(lora))
    page.locator("#lora-name textarea").fill("toy")
    with caplog.at_level(logging.INFO, logger="studio.ui.common"):
        page.locator("#upload-lora").click()
        page.get_by_text("There is already a lora named 'toy'").wait_for()
    # Gradio marks a failed event's outputs with an "Error" badge that hides their contents:
    # here only the listing is marked, and the name the person has to change stays in view.
    for field in ("#lora-name", "#lora-triggers", "#lora-file", "#adapter-choice"):
        assert page.locator(field).get_by_text("Error", exact=True).count() == 0, field
    assert page.locator("#lora-name textarea").input_value() == "toy"
    # The person's mistake is one log line, not a traceback in the terminal.
    assert "There is already a lora named 'toy'" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def test_the_tunes_tab_shows_a_tune_made_elsewhere_when_opened(live_url, page, studio):
    _open(page, live_url, "Photos")
    page.get_by_role("heading", name="Report card").wait_for()
    tune = studio.create_tune(TuneRequest(title="From the API", name="woman", model_type="faceid"), photos=_photos())
    page.get_by_role("tab", name="Tunes").click()
    page.locator(f"#tune-list .card[data-id='{tune['id']}']").wait_for()
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune['id']} From the API (faceid)").wait_for()


def test_a_pack_run_counts_on_its_card_and_says_what_its_prompts_wait_for(live_url, page, studio):
    # No worker: the LoRA tune stays queued, so the pack's prompts wait for its training.
    tune = studio.create_tune(
        TuneRequest(title="Rachel LoRA", name="woman", model_type="lora", branch="fast"), photos=_photos()
    )
    _open(page, live_url, "Packs")
    card = page.locator("#pack-cards .pack-card", has_text="Fantasy Portraits")
    card.click()
    page.locator("#pack-summary").get_by_text("Fantasy Portraits").wait_for()
    assert "Rachel LoRA" in page.locator("#pack-run-tune input").input_value()
    assert "0 run(s)" in card.inner_text()
    page.locator("#pack-run").click()
    # The card counts the run at once, without a reload.
    page.locator("#pack-cards .pack-card", has_text="Fantasy Portraits").get_by_text("3 run(s)").wait_for()
    waiting = page.locator("#pack-results .prompt-card .waiting")
    waiting.first.wait_for()
    assert waiting.count() == 3
    assert waiting.first.inner_text() == "waiting for the tune 'Rachel LoRA' to finish training (0%)"
    assert studio.get_tune(tune["id"])["status"] == "QUEUING"


def test_the_settings_tab_lists_keys_made_elsewhere_and_its_curl_uses_the_key(live_url, page, studio):
    _open(page, live_url, "Photos")
    page.get_by_role("heading", name="Report card").wait_for()
    studio.create_api_key("script")  # after the page was built, as another browser would
    page.get_by_role("tab", name="Settings & status").click()
    page.locator("#api-keys :text-is('script'):visible").first.wait_for()
    # Double quotes: the shell puts the key in place of $API_KEY.
    assert 'curl -H "Authorization: Bearer $API_KEY"' in page.locator("#curl-example").inner_text()
    page.get_by_label("Key id to revoke").fill("999")
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("There is no key 999").wait_for()
    assert len(studio.list_api_keys()) == 1


def test_a_corrected_characteristic_is_marked_edited_after_the_set_grows(live_url, page, studio, tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(astronaut()))
    (tmp_path / "b.jpg").write_bytes(encode(mirrored(astronaut())))
    _open(page, live_url, "Photos")
    page.locator("#photo-upload input[type=file]").set_input_files(str(tmp_path / "a.jpg"))
    table = page.locator("#characteristics")
    table.get_by_test_id("cell-1-0").filter(has_text="hair_color").wait_for()
    table.get_by_test_id("cell-1-1").dblclick()
    table.get_by_label("Edit cell").fill("red hair")
    page.keyboard.press("Enter")
    table.get_by_test_id("cell-1-1").filter(has_text="red hair").wait_for()
    page.locator("#photo-upload input[type=file]").set_input_files(str(tmp_path / "b.jpg"))
    page.locator("#photo-summary", has_text="2 photos in the set").wait_for()
    # The detector's confidence was about its own value; the person's value is theirs.
    table.get_by_test_id("cell-1-2").filter(has_text="edited").wait_for()
    assert table.get_by_test_id("cell-1-1").inner_text().startswith("red hair")


def test_stop_on_a_finished_prompt_says_so_without_an_error(live_url, page, studio):
    base = studio.default_base_model()["id"]
    prompt = studio.create_prompt(base, PromptRequest(text="a quiet lake", num_images=1))
    studio.cancel_prompt(prompt["id"])  # no worker: it never ran
    _open(page, live_url, "Generate")
    page.locator("#gen-progress [data-status=CANCELED]").wait_for()
    page.locator("#gen-stop").click()
    page.get_by_text(f"Prompt #{prompt['id']} has finished: there is nothing to stop.").wait_for()
    assert page.locator(".toast-body", has_text="Error").count() == 0


@pytest.mark.slow
def test_use_this_checkpoint_says_which_step_prompts_use(live_url, page, studio):
    tune = studio.create_tune(
        TuneRequest(title="Rachel LoRA", name="woman", model_type="lora", branch="fast"), photos=_photos()
    )
    studio.start_worker()
    _open(page, live_url, "Tunes")
    page.locator(f"#tune-list .card[data-id='{tune['id']}'][data-status=SUCCESS]").wait_for(timeout=120_000)
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune['id']} Rachel LoRA (lora)").click()
    steps = [c["step"] for c in studio.get_tune(tune["id"])["checkpoints"]]
    assert len(steps) > 1
    page.locator("#tune-summary", has_text=f"prompts use step {steps[-1]}.").wait_for()
    page.locator("#checkpoint-step input").click()
    page.get_by_role("option", name=str(steps[0]), exact=True).click()
    page.locator("#use-checkpoint").click()
    page.get_by_text(f"Tune {tune['id']} now uses the checkpoint of step {steps[0]}.").wait_for()
    page.locator("#tune-summary", has_text=f"prompts use step {steps[0]}.").wait_for()
    assert studio.get_tune(tune["id"])["active_step"] == steps[0]


def test_the_packs_tab_prefers_a_pack_with_prompts_for_the_tunes_class(live_url, page, studio):
    # The best ranked pack (Pet Portraits) has no 'woman' prompts: running it would only fail.
    studio.create_tune(TuneRequest(title="Rachel", name="woman", model_type="faceid"), photos=_photos())
    _open(page, live_url, "Packs")
    page.locator("#pack-summary").get_by_text("Fantasy Portraits").wait_for()
    assert "Fantasy Portraits" in page.locator("#pack-choice input").input_value()
    # The person's own choice stays, and the note says which packs would work.
    page.locator("#pack-cards .pack-card", has_text="Pet Portraits").click()
    page.locator("#pack-run-note").get_by_text(
        "This pack has no 'woman' prompts; packs that do: Fantasy Portraits, Corporate Headshots."
    ).wait_for()
    assert "Pet Portraits" in page.locator("#pack-choice input").input_value()
    page.locator("#pack-cards .pack-card", has_text="Corporate Headshots").click()
    expect(page.locator("#pack-run-note")).not_to_contain_text("This pack has no")


def test_a_prompt_deleted_elsewhere_leaves_the_generate_tab_when_shown(live_url, page, studio):
    base = studio.default_base_model()["id"]
    prompt = studio.create_prompt(base, PromptRequest(text="a quiet lake", num_images=1))
    studio.cancel_prompt(prompt["id"])  # no worker: it never ran
    _open(page, live_url, "Generate")
    page.locator(f"#gen-progress :text('Prompt #{prompt['id']}')").wait_for()
    page.get_by_role("tab", name="Photos").click()
    studio.delete_prompt(prompt["id"])  # as the Gallery tab or the API would
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-progress", has_text="Write a prompt and press Generate").wait_for()
    assert page.locator(".toast-body", has_text="Error").count() == 0


def test_cancel_training_is_only_offered_while_a_tune_trains(live_url, page, studio):
    # No worker: the LoRA tune stays queued; a FaceID tune is ready at once.
    queued = studio.create_tune(
        TuneRequest(title="Queued LoRA", name="woman", model_type="lora", branch="fast"), photos=_photos()
    )
    ready = studio.create_tune(TuneRequest(title="Ready", name="woman", model_type="faceid"), photos=_photos())
    _open(page, live_url, "Tunes")
    cancel = page.locator("#cancel-tune")
    assert cancel.is_disabled()  # no tune chosen
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{queued['id']} Queued LoRA (lora)").click()
    page.locator("#cancel-tune:enabled").wait_for()
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{ready['id']} Ready (faceid)").click()
    page.locator("#tune-summary", has_text=f"#{ready['id']} Ready").wait_for()
    page.locator("#cancel-tune:disabled").wait_for()


def test_a_tunes_photo_of_another_person_carries_the_sets_warning(live_url, page, studio):
    a = astronaut()
    files = [(f"{n}.jpg", encode(image)) for n, image in enumerate([a, mirrored(a), rotated(a, 7)])]
    tune = studio.create_tune(
        TuneRequest(title="Astronaut", name="woman", model_type="faceid"),
        photos=[*files, ("joey.jpg", encode(friend("joey")))],
    )
    _open(page, live_url, "Tunes")
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune['id']} Astronaut (faceid)").click()
    joey = page.locator("#tune-photos .card", has_text="joey.jpg")
    joey.get_by_text("This may be a different person: remove it.").wait_for()
    assert joey.get_attribute("data-level") == "warning"
    assert page.locator("#tune-photos .card", has_text="0.jpg").get_attribute("data-level") == "ok"
