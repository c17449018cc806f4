"""The Tunes tab in a real browser: a FaceID tune from the Photos tab's set, a LoRA tune whose
progress the page follows (across a reload) to SUCCESS with its sample strip and download, and
cancel, delete and a missing photo set shown as the studio says."""

from pathlib import Path

import pytest
from photos import astronaut, encode, mirrored, rotated

from conftest import screenshot
from studio.engine_models import safetensors_header

pytestmark = pytest.mark.browser


def _upload_photos(page, url: str, tmp_path) -> None:
    """Drop three photos of one face in the Photos tab and wait for their cards."""
    images = {"a.jpg": astronaut(), "b.jpg": mirrored(astronaut()), "c.jpg": rotated(astronaut(), 8)}
    for name, image in images.items():
        (tmp_path / name).write_bytes(encode(image))
    page.goto(url)
    page.get_by_role("tab", name="Photos").click()
    page.locator("#photo-upload input[type=file]").set_input_files([str(tmp_path / n) for n in images])
    page.wait_for_function("() => document.querySelectorAll('#photo-cards .card').length === 3")
    page.get_by_role("tab", name="Tunes").click()
    page.locator("#tune-photo-note", has_text="3 photos").wait_for()


def _create(page, title: str, kind: str, *, fast: bool = False) -> None:
    page.get_by_label(kind).check()
    page.get_by_label("Title").fill(title)
    if fast:
        page.locator("#tune-fast input").check()
    page.locator("#create-tune").click()


def _card(page, status: str):
    return page.locator(f"#tune-list .card[data-status={status}]")


def test_create_a_faceid_tune_from_the_uploaded_photos(live_url, page, studio, tmp_path):
    _upload_photos(page, live_url, tmp_path)
    _create(page, "Eileen FaceID", "FaceID: no training, ready at once")
    card = _card(page, "SUCCESS")
    card.wait_for()

    [tune] = studio.list_tunes()
    assert (tune["title"], tune["model_type"], tune["status"]) == ("Eileen FaceID", "faceid", "SUCCESS")
    assert len(studio.tune_photos(tune["id"])) == 3
    assert card.locator("code").inner_text() == f"<faceid:{tune['id']}:1>"
    # The new tune is selected: its details show the token and the photos it was made from.
    page.locator("#tune-summary", has_text="status SUCCESS").wait_for()
    assert page.locator("#tune-token textarea").input_value() == f"<faceid:{tune['id']}:1>"
    assert page.locator("#tune-photos .card img").count() == 3
    assert not page.locator("#download-lora").is_visible()  # FaceID has no LoRA to download
    screenshot(page, "tab-tunes-faceid")


@pytest.mark.slow
def test_a_lora_tune_trains_to_success_while_the_page_follows_it(live_url, page, studio, tmp_path):
    _upload_photos(page, live_url, tmp_path)
    _create(page, "Eileen LoRA", "LoRA: trained on the photos (minutes on a GPU)", fast=True)
    _card(page, "QUEUING").wait_for()  # no worker yet: it waits in the queue
    assert "waiting in the queue" in _card(page, "QUEUING").inner_text()

    studio.start_worker()
    _card(page, "TRAINING").wait_for(timeout=60000)
    page.reload()  # progress lives in the database: a reloaded page picks it up
    page.get_by_role("tab", name="Tunes").click()
    _card(page, "SUCCESS").or_(_card(page, "TRAINING").locator(".bar")).first.wait_for()
    _card(page, "SUCCESS").wait_for(timeout=120000)

    [tune] = studio.list_tunes()
    assert tune["status"] == "SUCCESS" and tune["checkpoints"]
    page.locator("#tune-choice input").click()
    page.get_by_role("option", name=f"#{tune['id']} Eileen LoRA (lora)").click()
    page.locator("#samples img").first.wait_for()
    assert page.locator("#samples img").count() == len([c for c in tune["checkpoints"] if c["sample"]])
    with page.expect_download() as download:
        page.locator("#download-lora").click()
    data = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == f"eileen-lora-{tune['id']}.safetensors"
    assert any("lora" in key for key in safetensors_header(data))
    screenshot(page, "tab-tunes-lora")


def test_cancel_then_delete_a_queued_tune(live_url, page, studio, tmp_path):
    _upload_photos(page, live_url, tmp_path)
    _create(page, "Never trained", "LoRA: trained on the photos (minutes on a GPU)", fast=True)
    _card(page, "QUEUING").wait_for()
    page.locator("#cancel-tune").click()
    _card(page, "CANCELED").wait_for()
    assert studio.list_tunes()[0]["status"] == "CANCELED"

    page.locator("#delete-tune").click()
    page.get_by_text("No tunes yet").wait_for()
    assert studio.list_tunes() == []


def test_a_tune_needs_the_photo_set_and_says_so(live_url, page, studio):
    page.goto(live_url)
    page.get_by_role("tab", name="Tunes").click()
    page.get_by_label("Title").fill("No photos")
    page.locator("#create-tune").click()
    page.get_by_text("Upload photos in the Photos tab first").wait_for()
    assert studio.list_tunes() == []


def test_photos_and_a_faceid_tune_through_the_public_api_names(live_url, studio, tmp_path):
    from gradio_client import Client, handle_file

    for name, image in {"a.jpg": astronaut(), "b.jpg": mirrored(astronaut())}.items():
        (tmp_path / name).write_bytes(encode(image))
    client = Client(live_url, verbose=False)
    photo_set, summary, *_ = client.predict(
        paths=[handle_file(str(tmp_path / "a.jpg")), handle_file(str(tmp_path / "b.jpg"))],
        class_name="woman",
        api_name="/upload_photos",
    )
    assert len(photo_set["ids"]) == 2 and "2 photos in the set" in summary
    # Advanced settings left empty are None; the photo set is the one the upload returned.
    empty = {f"param_{n}": None for n in range(8, 21)}
    client.predict(
        values=photo_set,
        **{**empty, "param_1": "faceid", "param_2": "From a script", "param_17": "", "param_11": "", "param_12": ""},
        api_name="/create_tune",
    )
    [tune] = studio.list_tunes()
    assert (tune["title"], tune["model_type"], tune["status"]) == ("From a script", "faceid", "SUCCESS")
    assert sorted(p["id"] for p in studio.tune_photos(tune["id"])) == sorted(photo_set["ids"])
