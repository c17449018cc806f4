"""The Photos tab in a real browser: drop photos, see a badge per photo with its reasons (a
warning on a bad one, a refused file), the report card, and a set that survives a reload, can
be corrected and shrinks when a photo is removed."""

import pytest
from photos import ASTRONAUT_EYES, TEXT_AS_JPG, astronaut, encode, mirrored, with_sunglasses

from conftest import screenshot

pytestmark = pytest.mark.browser


def _files(tmp_path, contents: dict[str, bytes]) -> list[str]:
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    return [str(tmp_path / name) for name in contents]


def _upload(page, paths: list[str], cards: int) -> None:
    page.locator("#photo-upload input[type=file]").set_input_files(paths)
    page.wait_for_function(f"() => document.querySelectorAll('#photo-cards .card').length === {cards}")


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Photos").click()
    page.get_by_role("heading", name="Report card").wait_for()


def test_uploaded_photos_get_a_badge_each_and_a_bad_one_a_warning(live_url, page, studio, tmp_path):
    paths = _files(
        tmp_path,
        {
            "eileen.jpg": encode(astronaut()),
            "sunglasses.jpg": encode(with_sunglasses(mirrored(astronaut()), ((308, 102), (265, 104)))),
            "notes.jpg": TEXT_AS_JPG,
        },
    )
    _open(page, live_url)
    _upload(page, paths, cards=3)

    cards = page.locator("#photo-cards .card")
    assert cards.nth(0).locator("img").count() == 1  # a thumbnail rendered from the stored photo
    shaded = cards.filter(has_text="sunglasses.jpg")
    assert shaded.get_attribute("data-level") == "warning"
    assert "Sunglasses hide the eyes" in shaded.get_attribute("title")  # the hover text
    assert cards.filter(has_text="eileen.jpg").get_attribute("data-level") == "ok"
    refused = cards.filter(has_text="notes.jpg")
    assert refused.get_attribute("data-level") == "rejected"
    assert "is not a PNG, JPEG or WEBP image" in refused.inner_text()
    assert "2 photos in the set" in page.locator("#photo-summary").inner_text()
    assert "usable for training" in page.locator("#report-card").inner_text()
    assert len(studio.get_photos([1, 2, 3])) == 2  # the text file was never stored
    screenshot(page, "tab-photos")


@pytest.mark.slow
def test_the_set_survives_a_reload_grows_and_shrinks(live_url, page, studio, tmp_path):
    first = _files(tmp_path, {"a.jpg": encode(astronaut())})
    second = _files(tmp_path, {"b.jpg": encode(with_sunglasses(astronaut(), ASTRONAUT_EYES))})
    _open(page, live_url)
    _upload(page, first, cards=1)
    _upload(page, second, cards=2)  # a second drop adds to the set

    page.reload()
    page.get_by_role("tab", name="Photos").click()
    page.wait_for_function("() => document.querySelectorAll('#photo-cards .card').length === 2")
    assert "2 photos in the set" in page.locator("#photo-summary").inner_text()

    page.locator("#photo-choice input").click()
    page.get_by_role("option", name="1. a.jpg").click()
    page.locator("#remove-photo").click()
    page.wait_for_function("() => document.querySelectorAll('#photo-cards .card').length === 1")
    assert "b.jpg" in page.locator("#photo-cards").inner_text()
    page.get_by_role("tab", name="Tunes").click()
    assert "1 photo " in page.locator("#tune-photo-note").inner_text()


def _add_characteristic(page, attribute: str, value: str) -> None:
    """Add a row to the characteristics table and type into it, as a person does: the table's
    own "+" when it is empty, else "Add row below" from the last row's cell menu."""
    table = page.locator("#characteristics")
    rows = table.locator(".virtual-row").count()
    if rows:
        table.get_by_test_id(f"cell-{rows - 1}-0").click()
        table.get_by_role("button", name="Open cell menu").first.click()
        page.get_by_role("menuitem", name="Add row below").click()
    else:
        table.get_by_role("button", name="Add row").click()
    for column, text in ((0, attribute), (1, value)):
        table.get_by_test_id(f"cell-{rows}-{column}").dblclick()
        table.get_by_label("Edit cell").fill(text)
        page.keyboard.press("Enter")
        table.get_by_test_id(f"cell-{rows}-{column}").filter(has_text=text).wait_for()


def test_corrected_characteristics_go_with_the_tune(live_url, page, studio, tmp_path):
    _open(page, live_url)
    _upload(page, _files(tmp_path, {"a.jpg": encode(astronaut())}), cards=1)
    page.locator("#photo-summary", has_text="1 photo in the set").wait_for()  # the table is drawn too
    _add_characteristic(page, "eye_color", "blue")
    # A later upload inspects the set again; the person's correction stays.
    _upload(page, _files(tmp_path, {"b.jpg": encode(mirrored(astronaut()))}), cards=2)
    page.locator("#characteristics").get_by_text("eye_color", exact=True).wait_for()

    page.get_by_role("tab", name="Tunes").click()
    page.locator("#tune-photo-note", has_text="eye_color: blue").wait_for()
    page.get_by_label("FaceID: no training, ready at once").check()
    page.get_by_label("Title").fill("Eileen")
    page.locator("#create-tune").click()
    page.locator("#tune-list .card[data-status=SUCCESS]").wait_for()
    [tune] = studio.list_tunes()
    assert tune["characteristics"]["eye_color"] == "blue"


def test_phone_width_and_dark_mode(browser, live_url, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(30000)
    page.goto(live_url + "?__theme=dark")
    page.get_by_role("tab", name="Photos").click()
    _upload(page, _files(tmp_path, {"a.jpg": encode(astronaut())}), cards=1)
    card = page.locator("#photo-cards .card").first.bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 390  # the grid wraps to the screen
    assert page.evaluate("document.body.classList.contains('dark')")
    screenshot(page, "tab-photos-phone-dark")
    context.close()
