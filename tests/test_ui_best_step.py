"""The best checkpoint by likeness is the step prompts use once the samples are scored: shown in
the Tunes tab and the API, reversible from both (pick a step by hand, then "Use the best step")."""

import httpx
import pytest
from photos import encode, friend, mirrored
from test_likeness import _image, _pasted

from studio.tune_requests import TuneRequest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _scored_tune(studio) -> int:
    """A LoRA tune trained on the demo model whose samples are then replaced by what a real model
    might draw (step 3: another person, 6: the subject, 8: no face) and scored: 6 is best."""
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    request = TuneRequest(title="Rachel LoRA", name="woman", branch="fast", seed=3, checkpointing_steps=3)
    tune = studio.create_tune(request, photos=photos)
    studio.run_pending()
    for step, placed in [(3, [("joey", (0, 0))]), (6, [("rachel", (0, 0))]), (8, [])]:
        checkpoint = studio.store.get_checkpoint(tune["id"], step)
        sample = _pasted(_image(studio, checkpoint["sample_path"]).resize((112, 112)), *placed)
        studio.store.update_checkpoint(checkpoint["id"], sample_path=studio.files.put(encode(sample, "PNG"), "samples", ".png"))  # fmt: skip
    studio.score_checkpoints(tune["id"])
    return tune["id"]


def test_the_tunes_tab_uses_the_best_step_and_the_choice_is_reversible(live_url, page, studio):
    tune_id = _scored_tune(studio)
    page.goto(live_url)
    page.get_by_role("tab", name="Tunes").click()
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune_id} Rachel LoRA (lora)").click()
    summary = page.locator("#tune-summary")
    summary.get_by_text("Prompts use the best step by likeness, 6.").wait_for()

    page.locator("#checkpoint-step input").click()
    page.get_by_role("option", name="8", exact=True).click()
    page.locator("#use-checkpoint").click()
    summary.get_by_text("Prompts use step 8, chosen by hand; the best step by likeness is 6.").wait_for()
    assert (studio.get_tune(tune_id)["active_step"], studio.get_tune(tune_id)["use_best_step"]) == (8, False)

    page.locator("#use-best-step").click()
    summary.get_by_text("Prompts use the best step by likeness, 6.").wait_for()
    assert (studio.get_tune(tune_id)["active_step"], studio.get_tune(tune_id)["use_best_step"]) == (6, True)


def test_the_api_shows_the_best_step_and_goes_back_to_it(live_url, studio):
    tune_id = _scored_tune(studio)
    body = httpx.get(f"{live_url}/tunes/{tune_id}").json()
    assert (body["best_step"], body["active_step"], body["use_best_step"]) == (6, 6, True)
    studio.set_active_checkpoint(tune_id, 3)
    body = httpx.get(f"{live_url}/tunes/{tune_id}").json()
    assert (body["active_step"], body["use_best_step"]) == (3, False)
    back = httpx.post(f"{live_url}/tunes/{tune_id}/best_step")
    assert back.status_code == 200, back.text
    assert (back.json()["active_step"], back.json()["use_best_step"]) == (6, True)
    assert back.json()["best_step_note"] == "Prompts use the best step by likeness, 6."
    assert httpx.post(f"{live_url}/tunes/999/best_step").status_code == 404
