"""The Generate tab's reference slots in a real browser, on the tiny FLUX.2 [klein] demo: an
outfit uploaded to its slot shows as a thumbnail of a clean copy (Gradio's cached original,
EXIF and comment included, is deleted at once) and reaches the prompt as an `outfit` reference,
which the image's parameters name."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from photos import friend
from test_ui_flux import FLUX2_DEMO, _open_generate, _pick_model, _served

from studio.domain import SUCCESS
from studio.prompts import parse_parameters

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def flux_url(tmp_path, demo_model_dir, flux_demo_dirs):
    with _served(tmp_path / "home", demo_model_dir, flux_demo_dirs) as served:
        yield served


def test_an_outfit_slot_uploads_a_clean_thumbnail_and_reaches_the_prompt(flux_url, page, tmp_path):
    from PIL import Image
    from test_clean_photos import dirty_jpeg

    url, studio = flux_url
    studio.start_worker()
    path = tmp_path / "outfit.jpg"
    path.write_bytes(dirty_jpeg(friend("ross"), comment=f"unique {uuid.uuid4()}".encode()))
    _open_generate(page, url)
    _pick_model(page, "FLUX.2 [klein] demo (embedded, tiny) · FLUX.2 [klein] base model")
    page.locator("#gen-prompt textarea").fill("portrait of a woman")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_label("Steps").fill("2")
    parameters.get_by_label("Width").fill("64")
    parameters.get_by_label("Height").fill("64")
    page.locator("#gen-references").get_by_text("Reference images").click()
    for role in ("face", "outfit", "background", "pose", "style"):
        page.locator(f"#gen-ref-{role}").wait_for()
    with page.expect_response(lambda r: r.request.method == "POST" and "/gradio_api/upload" in r.url) as uploaded:
        page.locator("#gen-ref-outfit input[type=file]").set_input_files(str(path))
    [cached] = uploaded.value.json()
    thumbnail = page.locator("#gen-ref-outfit img[src*='studio-input.png']")
    thumbnail.wait_for()
    assert httpx.get(f"{url}/gradio_api/file={cached}").status_code in (403, 404)
    clean = httpx.get(url + thumbnail.get_attribute("src").removeprefix(url))
    assert clean.status_code == 200 and clean.content.startswith(b"\x89PNG") and b"unique" not in clean.content
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=120_000)
    [prompt] = studio.list_prompts()
    assert prompt["status"] == SUCCESS and prompt["tune_id"] == FLUX2_DEMO
    [reference] = prompt["params"]["reference_images"]
    assert reference["role"] == "outfit"
    with Image.open(io.BytesIO(studio.files.read(reference["path"]))) as picture:
        assert picture.size == friend("ross").size and not picture.info.get("exif")
    with Image.open(io.BytesIO(studio.files.read(prompt["images"][0]))) as image:
        extra = parse_parameters(image.info["parameters"])["extra"]
    assert extra["Reference roles"] == "outfit"
    assert extra["Reference instructions"] == "Show the subject, wearing the outfit from image 1."
