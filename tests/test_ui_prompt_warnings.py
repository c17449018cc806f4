"""In the browser: a pack run on a tune without the characteristic its template names shows the
warning on the prompt's card, naming the placeholder that was left out."""

import pytest
from photos import encode, friend, mirrored

from studio.packs import PackPromptRequest, PackRequest, missing_warning
from studio.tune_requests import TuneRequest

pytestmark = pytest.mark.browser


def test_a_pack_prompt_shows_the_placeholders_it_left_out(live_url, page, studio):
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    studio.create_tune(TuneRequest(title="Rachel", name="woman", model_type="faceid", branch="fast"), photos=photos)
    pack = studio.create_pack(PackRequest(title="Eye portraits", classes=("woman",)))
    template = "portrait of {{token}} {{name}}, {{eye_color}}, smiling"
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", template, num_images=1))
    page.goto(live_url)
    page.get_by_role("tab", name="Packs").click()
    page.locator("#pack-cards .pack-card", has_text="Eye portraits").click()
    page.locator("#pack-summary").get_by_text("Eye portraits").wait_for()
    page.locator("#pack-run").click()
    card = page.locator("#pack-results .prompt-card").first
    card.get_by_text("portrait of ohwx woman, smiling").wait_for()
    card.get_by_text(missing_warning(["eye_color"])).wait_for()
    [prompt] = studio.list_prompts()
    assert prompt["warnings"] == [missing_warning(["eye_color"])]
