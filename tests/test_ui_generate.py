"""The Generate tab: the Studio views it stands on (tokens, progress, re-run), and in a real
browser: generate with a FaceID tune's token and see the images, like one, follow a prompt
across a reload, stop a run, see a bad token refused; and gradio_client through `/generate`."""

import pytest
from photos import encode, friend, mirrored

from conftest import ROOT, screenshot, settle
from studio.domain import CANCELED, QUEUING, SUCCESS
from studio.errors import Conflict, InvalidInput
from studio.tune_requests import TuneRequest

DEMO_ID = 1  # the embedded demo model in the gallery
SMALL = {"steps": 3, "w": 64, "h": 64}


def _faceid_tune(studio, title="Rachel") -> dict:
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    return studio.create_tune(TuneRequest(title=title, name="woman", model_type="faceid", branch="fast"), photos=photos)


# -- the Studio views the tab uses ---------------------------------------------------------


def test_prompt_tokens_list_ready_tunes_and_saved_avatars(studio):
    assert studio.prompt_tokens() == []
    tune = _faceid_tune(studio)
    studio.add_adapter("style", "cartoon1", encode(friend("ross")), weight=0.5)
    assert studio.prompt_tokens() == [
        {"token": f"<faceid:{tune['id']}:1>", "kind": "faceid", "label": "Rachel"},
        {"token": "<be-style:cartoon1:0.5>", "kind": "style", "label": "cartoon1"},
    ]


def test_prompt_progress_says_where_a_prompt_is(studio):
    first = studio.create_prompt(DEMO_ID, {"text": "a dog", "num_images": 1, **SMALL})
    second = studio.create_prompt(DEMO_ID, {"text": "a cat", "num_images": 1, **SMALL})
    waiting = studio.prompt_progress(second["id"])
    assert waiting["status"] == QUEUING and waiting["queued"] and waiting["ahead"] == 1
    assert waiting["step"] == 0 and waiting["total"] == 0
    studio.run_pending()
    done = studio.prompt_progress(first["id"])
    assert done["status"] == SUCCESS and done["step"] == done["total"] == 3 and done["eta"] is None
    assert done["ahead"] == 0 and len(done["images"]) == 1


def test_rerun_with_one_images_seed_remakes_that_image(studio):
    prompt = studio.create_prompt(DEMO_ID, {"text": "a red bird", "num_images": 2, "seed": 40, **SMALL})
    studio.run_pending()
    again = studio.rerun_prompt(prompt["id"], 1)
    assert again["id"] != prompt["id"] and again["tune_id"] == DEMO_ID and again["text"] == "a red bird"
    assert again["params"]["seed"] == 41 and again["params"]["num_images"] == 1
    assert again["params"]["steps"] == 3 and again["params"]["w"] == 64
    studio.run_pending()
    original = studio.files.read(studio.get_prompt(prompt["id"])["images"][1])
    remade = studio.files.read(studio.get_prompt(again["id"])["images"][0])
    assert _pixels(original).shape == _pixels(remade).shape == (64, 64, 3)
    assert abs(_pixels(original) - _pixels(remade)).max() <= 2 / 255  # same seed, same image
    with pytest.raises(InvalidInput) as error:
        studio.rerun_prompt(prompt["id"], 2)
    assert error.value.field == "image_idx"


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255


# -- in the browser ------------------------------------------------------------------------


def _open_tab(page, live_url):
    page.goto(live_url)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").wait_for()
    settle(page)


def _small_parameters(page, steps=3):
    parameters = page.locator("#gen-parameters")
    parameters.get_by_text("Parameters").click()
    # Twice, a second apart: a number typed while the page's load-time events (which show no
    # progress, so `settle` cannot see them) deliver their outputs can be dropped by Gradio.
    for _ in range(2):
        parameters.get_by_label("Steps").fill(str(steps))
        parameters.get_by_label("Width").fill("64")
        parameters.get_by_label("Height").fill("64")
        page.wait_for_timeout(1000)


@pytest.mark.browser
@pytest.mark.slow
def test_generate_with_a_faceid_token_then_like_an_image(live_url, page, studio):
    tune = _faceid_tune(studio)
    studio.start_worker()
    _open_tab(page, live_url)
    # 1. The tune's token is offered; clicking it inserts it where the caret is.
    box = page.locator("#gen-prompt textarea")
    box.fill("portrait of a woman, studio light")
    box.press("End")
    page.locator("#gen-tokens button", has_text=f"<faceid:{tune['id']}:1>").click()
    assert box.input_value() == f"portrait of a woman, studio light <faceid:{tune['id']}:1> "
    page.get_by_label("Negative prompt").fill("blurry")
    _small_parameters(page)
    # 2. Generate: the job queue makes the images and the tab shows them.
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=120_000)
    page.locator("#gen-gallery img").nth(1).wait_for()
    [prompt] = studio.list_prompts()
    assert prompt["status"] == SUCCESS and f"<faceid:{tune['id']}:1>" in prompt["text"]
    assert prompt["negative_prompt"] == "blurry" and prompt["params"]["steps"] == 3
    assert len(prompt["images"]) == 2 and prompt["params"]["num_images"] == 2
    assert "2 image(s)" in page.locator("#gen-progress").inner_text()
    screenshot(page, "tab-generate")
    # 3. Pick the second image: its seed shows; like it.
    page.locator("#gen-gallery .thumbnail-item").nth(1).click()
    details = page.locator("#gen-details")
    details.get_by_text(f"seed {prompt['seeds'][1]}").wait_for()
    page.locator("#gen-like").click()
    details.get_by_text("♥ 1 (you like it)").wait_for()
    assert studio.prompt_images(prompt["id"])[1]["likes"] == 1
    # The README's picture of the tab: the form folded, the page at its top.
    page.locator("#gen-parameters").get_by_text("Parameters").click()
    page.keyboard.press("Escape")  # close the image preview
    page.evaluate("window.scrollTo(0, 0)")
    (ROOT / "docs").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "docs" / "generate-tab.png"))


@pytest.mark.browser
def test_a_queued_prompt_is_followed_after_a_reload_then_rerun(live_url, page, studio):
    prompt = studio.create_prompt(DEMO_ID, {"text": "a lighthouse", "num_images": 1, **SMALL})
    _open_tab(page, live_url)
    page.reload()
    page.get_by_role("tab", name="Generate").click()
    progress = page.locator("#gen-progress")
    progress.locator("[data-status=QUEUING]").wait_for()
    assert f"Prompt #{prompt['id']}" in progress.inner_text() and "next in the queue" in progress.inner_text()
    studio.start_worker()  # the page was loaded before the work started: it follows on its own
    progress.locator("[data-status=SUCCESS]").wait_for(timeout=120_000)
    page.locator("#gen-gallery img").first.wait_for()
    # Re-run the image with its seed: a new prompt, one image, the same seed.
    page.locator("#gen-gallery .thumbnail-item").first.click()
    page.locator("#gen-rerun").click()
    progress.get_by_text(f"Prompt #{prompt['id'] + 1}").wait_for()
    progress.locator("[data-status=SUCCESS]").wait_for(timeout=120_000)
    again, first = studio.list_prompts()
    assert again["text"] == "a lighthouse" and again["seeds"] == first["seeds"][:1]
    # Someone else's newer prompt does not take over this browser's page after a reload.
    other = studio.create_prompt(DEMO_ID, {"text": "someone else's lighthouse", "num_images": 1, **SMALL})
    page.reload()
    page.get_by_role("tab", name="Generate").click()
    progress.get_by_text(f"Prompt #{again['id']}").wait_for()
    assert f"Prompt #{other['id']}" not in progress.inner_text()


@pytest.mark.browser
def test_stop_cancels_the_run(live_url, page, studio):
    studio.start_worker()
    _open_tab(page, live_url)
    page.locator("#gen-prompt textarea").fill("a very long walk")
    _small_parameters(page, steps=150)
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status]").wait_for()
    page.locator("#gen-stop").click()
    page.locator("#gen-progress [data-status=CANCELED]").wait_for(timeout=60_000)
    [prompt] = studio.list_prompts()
    assert prompt["status"] == CANCELED and prompt["images"] == []
    with pytest.raises(Conflict):
        studio.cancel_prompt(prompt["id"])


@pytest.mark.browser
def test_a_bad_token_is_refused_with_the_studios_message(live_url, page, studio):
    _open_tab(page, live_url)
    page.locator("#gen-prompt textarea").fill("a toy <lora:nope:1>")
    page.locator("#gen-run").click()
    page.get_by_text("unknown LoRA 'nope'").first.wait_for()
    assert studio.list_prompts() == []


def test_gradio_client_generates_through_the_public_api_name(live_url, studio):
    from gradio_client import Client
    from PIL import Image

    studio.start_worker()
    client = Client(live_url + "/", verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/generate" in endpoints and "/stop" not in endpoints  # Stop acts on this page's run only
    try:
        progress, images, _ = client.predict(
            tune_id=DEMO_ID,
            text="a watercolor fox",
            num_images=1,
            steps=3,
            w=64,
            h=64,
            seed=7,
            api_name="/generate",
        )
    finally:
        client.close()  # its heartbeat connection would hold the server's shutdown
    [prompt] = studio.list_prompts()
    assert prompt["status"] == SUCCESS and prompt["text"] == "a watercolor fox" and prompt["seeds"] == [7]
    assert f"Prompt #{prompt['id']}" in progress and "SUCCESS" in progress
    [image] = images
    assert image["caption"] == "#1 · seed 7"
    with Image.open(image["image"]) as picture:
        assert picture.size == (64, 64)


@pytest.mark.browser
@pytest.mark.slow
def test_an_input_images_cached_original_is_gone_once_uploaded_and_generate_still_uses_it(
    live_url, page, studio, tmp_path
):
    import io
    import uuid

    import httpx
    from PIL import Image
    from test_clean_photos import dirty_jpeg

    original = dirty_jpeg(friend("ross"), comment=f"unique {uuid.uuid4()}".encode())
    path = tmp_path / "with-gps.jpg"
    path.write_bytes(original)
    studio.start_worker()
    _open_tab(page, live_url)
    page.locator("#gen-prompt textarea").fill("a watercolor portrait")
    _small_parameters(page)
    with page.expect_response(lambda r: r.request.method == "POST" and "/gradio_api/upload" in r.url) as uploaded:
        page.locator("#gen-input-image input[type=file]").set_input_files(str(path))
    [cached] = uploaded.value.json()
    # Once the upload event has run, the form shows (and holds) a clean copy, not the original.
    shown = page.locator("#gen-input-image img[src*='studio-input.png']")
    shown.wait_for()
    assert httpx.get(f"{live_url}/gradio_api/file={cached}").status_code in (403, 404)
    clean = httpx.get(live_url + shown.get_attribute("src").removeprefix(live_url))
    assert clean.status_code == 200 and clean.content.startswith(b"\x89PNG")
    assert b"unique" not in clean.content and b"Exif" not in clean.content
    with Image.open(io.BytesIO(clean.content)) as picture:
        assert picture.size == friend("ross").size and not picture.info.get("exif")

    # Generate reads it, and again on a second click.
    for run in (1, 2):
        page.locator("#gen-run").click()
        page.wait_for_function(
            "n => { const p = document.querySelector('#gen-progress');"
            " return p.innerText.includes('Prompt #' + n) && p.querySelector('[data-status=SUCCESS]'); }",
            arg=run,
            timeout=120_000,
        )
        prompts = studio.list_prompts()
        assert len(prompts) == run and all(p["status"] == SUCCESS for p in prompts)
    for prompt in studio.list_prompts():
        stored = studio.files.read(prompt["params"]["input_image_path"])
        with Image.open(io.BytesIO(stored)) as picture:
            assert picture.size == friend("ross").size
