"""The Generate tab's second passes in a real browser: a FaceID prompt on two real faces (two
photos side by side as the input image, a mask that repaints a corner only) with face detailing
on; the image details then say face detailing ran, on both faces."""

import pytest
from photos import encode
from test_api_faces import corner_mask, faceid_tune
from test_detailer import two_people

from studio.domain import SUCCESS

DEMO_ID = 1


@pytest.mark.browser
def test_face_detailing_from_the_generate_tab_shows_in_the_image_details(live_url, page, studio, tmp_path):
    tune = faceid_tune(studio, 1, "anna")
    picture, mask = tmp_path / "two.png", tmp_path / "mask.png"
    picture.write_bytes(encode(two_people(), "PNG"))
    mask.write_bytes(encode(corner_mask(), "PNG"))
    studio.start_worker()
    page.goto(live_url)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").fill(f"<faceid:{tune}:1> a woman and a man")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_text("Parameters").click()
    parameters.get_by_label("Steps").fill("3")
    parameters.get_by_label("Width").fill("256")
    parameters.get_by_label("Height").fill("128")
    page.locator("#gen-input-image input[type=file]").set_input_files(str(picture))
    page.locator("#gen-input-image img[src*='studio-input.png']").wait_for()
    page.locator("#gen-passes").get_by_text("Face detailing · hires fix").click()
    page.locator("#gen-inpaint-faces input").click()
    page.get_by_role("option", name="on", exact=True).click()
    page.locator("#gen-mask input[type=file]").set_input_files(str(mask))
    page.locator("#gen-mask img[src*='studio-input.png']").wait_for()
    page.get_by_role("spinbutton", name="number input for Images").fill("1")
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=180_000)
    [prompt] = studio.list_prompts()
    assert prompt["status"] == SUCCESS and prompt["params"]["inpaint_faces"] is True
    assert prompt["params"].get("mask_image_path")
    page.locator("#gen-gallery .thumbnail-item").first.click()
    details = page.locator("#gen-details")
    details.get_by_text("Face detailing: 2 face(s)").wait_for()
    assert "Inpaint: mask" in details.inner_text()
