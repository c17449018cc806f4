"""The embedded SDXL demo in the browser: chosen in the Generate tab, it generates there; the
Tunes tab offers it as a base model to train on."""

import pytest
from api_helpers import live_studio
from test_ui_flux import _open_generate, _pick_model

pytestmark = pytest.mark.browser

SDXL_DEMO = 10


@pytest.fixture
def sdxl_url(tmp_path, demo_model_dir, sdxl_demo_dir):
    with live_studio(tmp_path / "home", demo_model_dir, sdxl_demo=sdxl_demo_dir) as served:
        yield served


def test_generate_on_the_sdxl_demo_in_the_browser(sdxl_url, page):
    url, studio = sdxl_url
    _open_generate(page, url)
    _pick_model(page, "SDXL demo (embedded, tiny) · SDXL base model")
    page.locator("#gen-prompt textarea").fill("portrait of ohwx woman")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_label("Steps").fill("3")
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=120_000)
    [prompt] = studio.list_prompts()
    assert prompt["tune_id"] == SDXL_DEMO and prompt["params"]["steps"] == 3
    assert studio.engine.loaded_model[1] == "sdxl"

    page.get_by_role("tab", name="Tunes").click()
    page.locator("#tune-base input").click()
    page.get_by_role("option", name="SDXL demo (embedded, tiny) (SDXL)").click()
    page.locator("#tune-memory").get_by_text("on SDXL").wait_for()
