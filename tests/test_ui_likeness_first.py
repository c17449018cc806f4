"""Likeness first in a real browser: a LoRA tune's photo captions edited in the Tunes tab, and
the Generate tab's "retry until it looks like them" control reaching the prompt's best_of."""

import pytest
from photos import encode, friend

from conftest import screenshot
from studio.tune_requests import TuneRequest

pytestmark = pytest.mark.browser


def test_edit_a_training_photos_caption_in_the_tunes_tab(live_url, page, studio):
    photos = [("a.jpg", encode(friend("rachel"))), ("b.jpg", encode(friend("monica")))]
    tune = studio.create_tune(TuneRequest(title="Rachel", name="woman", branch="fast", seed=3), photos=photos)
    first = tune["captions"][0]
    page.goto(live_url)
    page.get_by_role("tab", name="Tunes").click()
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune['id']} Rachel (lora)").click()
    page.locator("#captions").get_by_text("Captions of the training photos").click()
    box = page.locator("#caption-text textarea")
    page.wait_for_function("() => document.querySelector('#caption-text textarea').value.startsWith('ohwx woman')")
    assert box.input_value() == first["caption"]
    box.fill("ohwx woman, wearing a red scarf")
    page.locator("#save-caption").click()
    page.locator("#caption-list", has_text="wearing a red scarf").wait_for()
    assert studio.tune_captions(tune["id"])[0]["caption"] == "ohwx woman, wearing a red scarf"
    # a caption without the token is refused with the studio's message
    box.fill("a woman in a scarf")
    page.locator("#save-caption").click()
    page.get_by_text("must contain the tune's token").first.wait_for()
    assert studio.tune_captions(tune["id"])[0]["caption"] == "ohwx woman, wearing a red scarf"
    screenshot(page, "tab-tunes-captions")


@pytest.mark.slow
def test_the_retry_control_sets_best_of_on_the_prompt(live_url, page, studio):
    tune = studio.create_tune(
        TuneRequest(title="Rachel F", name="woman", model_type="faceid"), photos=[("r.jpg", encode(friend("rachel")))]
    )
    page.goto(live_url)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").fill(f"portrait of a woman <faceid:{tune['id']}:1>")
    page.locator("#gen-best-of input[type=number]").fill("3")
    page.locator("#gen-best-of input[type=number]").press("Enter")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_text("Parameters").click()
    parameters.get_by_label("Steps").fill("2")
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status]").first.wait_for()
    [prompt] = studio.list_prompts()
    assert prompt["params"]["best_of"] == 3
