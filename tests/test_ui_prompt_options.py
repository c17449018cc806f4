"""The Generate tab's prompt options in a real browser: pick an aspect ratio and a film look,
generate, and the image and its details show them."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import screenshot
from studio.domain import SUCCESS


def _pick(page, label: str, option: str) -> None:
    page.locator("#gen-parameters").get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()


@pytest.mark.browser
def test_an_aspect_ratio_and_a_film_look_reach_the_image_and_its_details(live_url, page, studio):
    studio.start_worker()
    page.goto(live_url)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").fill("a lighthouse at dusk")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_text("Parameters").click()
    parameters.get_by_label("Steps").fill("2")
    parameters.get_by_label("Height").fill("96")  # the width follows the ratio
    _pick(page, "Aspect ratio", "2:3")
    _pick(page, "Color grading", "Film Velvia")
    parameters.get_by_label("Film grain").check()
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=120_000)
    [prompt] = studio.list_prompts()
    assert prompt["status"] == SUCCESS
    assert prompt["params"]["aspect_ratio"] == "2:3" and prompt["params"]["color_grading"] == "Film Velvia"
    image = Image.open(io.BytesIO(studio.files.read(prompt["images"][0])))
    assert image.size == (64, 96)
    assert "Color grading: Film Velvia" in image.text["parameters"] and "Film grain: 6" in image.text["parameters"]
    assert np.asarray(image).std() > 1
    page.locator("#gen-gallery .thumbnail-item").first.click()
    details = page.locator("#gen-details")
    details.get_by_text("Passes: Color grading: Film Velvia · Film grain: 6").wait_for()
    assert "aspect 2:3" in details.inner_text()
    screenshot(page, "generate-prompt-options")
