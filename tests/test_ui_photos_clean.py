"""The Photos tab in a real browser: Gradio's copy of an uploaded original (GPS and all) is gone
once the photo is stored, and "Start a new set" asks first."""

import os
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from photos import astronaut, friend
from test_clean_photos import dirty_jpeg

pytestmark = pytest.mark.browser


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Photos").click()
    page.get_by_role("heading", name="Report card").wait_for()


def _upload(page, paths: list[str], cards: int) -> None:
    page.locator("#photo-upload input[type=file]").set_input_files(paths)
    page.wait_for_function(f"() => document.querySelectorAll('#photo-cards .card').length === {cards}")


def _cached_copies(data: bytes) -> list[Path]:
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    size = len(data)
    return [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size == size and p.read_bytes() == data]


def test_gradios_copy_of_an_uploaded_original_is_deleted(live_url, page, studio, tmp_path):
    original = dirty_jpeg(astronaut(), comment=f"unique {uuid.uuid4()}".encode())
    path = tmp_path / "with-gps.jpg"
    path.write_bytes(original)
    _open(page, live_url)
    _upload(page, [str(path)], cards=1)
    assert "1 photo in the set" in page.locator("#photo-summary").inner_text()
    deadline = time.monotonic() + 10
    while _cached_copies(original) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _cached_copies(original) == []
    [row] = studio.get_photos([1])
    assert b"unique" not in studio.files.read(row["path"])


def test_start_a_new_set_asks_first(live_url, page, studio, tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(dirty_jpeg(friend("rachel")))
    _open(page, live_url)
    _upload(page, [str(path)], cards=1)

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.locator("#clear-photos").click()
    page.wait_for_timeout(1500)  # a cleared set would be drawn by now
    assert asked and "Start a new set" in asked[0]
    assert page.locator("#photo-cards .card").count() == 1
    assert "1 photo in the set" in page.locator("#photo-summary").inner_text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#clear-photos").click()
    page.wait_for_function("() => document.querySelectorAll('#photo-cards .card').length === 0")
    page.reload()
    page.get_by_role("tab", name="Photos").click()
    page.get_by_role("heading", name="Report card").wait_for()
    page.wait_for_timeout(1000)
    assert page.locator("#photo-cards .card").count() == 0  # the browser's set is empty too
