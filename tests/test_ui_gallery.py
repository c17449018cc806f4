"""The Gallery tab: the Studio views it stands on (filters, sort, likes per image, delete), and
in a real browser: like an image and see the count after a reload, filter, sort and delete."""

import pytest

from conftest import screenshot
from studio.domain import SUCCESS
from studio.errors import Conflict, InvalidInput, NotFound

DEMO_ID = 1  # the embedded demo model in the gallery
SMALL = {"steps": 3, "w": 64, "h": 64}


def _made(studio, text, num_images=2, **fields):
    """A prompt on the demo model, generated now (in this thread)."""
    prompt = studio.create_prompt(DEMO_ID, {"text": text, "num_images": num_images, **SMALL}, **fields)
    studio.run_pending()
    assert studio.get_prompt(prompt["id"])["status"] == SUCCESS
    return studio.get_prompt(prompt["id"])


def _pack_prompt_id(studio, slug="corporate-headshots"):
    return studio.get_pack(slug)["prompts_per_class"]["woman"][0]["id"]


# -- the Studio views the tab uses ---------------------------------------------------------


def test_gallery_filters_by_pack_and_sorts_by_likes_with_likes_per_image(studio):
    plain = _made(studio, "a plain vase")
    from_pack = _made(studio, "a headshot", orig_prompt_id=_pack_prompt_id(studio))
    studio.like_prompt(plain["id"], "ann", 1)
    studio.like_prompt(plain["id"], "bob", 1)
    studio.like_prompt(plain["id"], "bob", 0)

    newest = studio.gallery(user="bob")
    assert [item["id"] for item in newest] == [from_pack["id"], plain["id"]]
    assert newest[0]["pack_title"] == "Corporate Headshots" and newest[1]["pack_title"] is None
    assert newest[1]["tune_title"] == "Demo model (embedded, tiny)" and newest[1]["likes_count"] == 3
    assert [(i["idx"], i["likes"], i["liked"]) for i in newest[1]["images"]] == [(0, 1, True), (1, 2, True)]
    assert [i["liked"] for i in studio.gallery(user="ann")[1]["images"]] == [False, True]
    assert newest[1]["images"][0]["path"] == plain["images"][0] and newest[1]["images"][0]["seed"] == plain["seeds"][0]

    assert [item["id"] for item in studio.gallery(sort="likes")] == [plain["id"], from_pack["id"]]
    pack_id = studio.get_pack("corporate-headshots")["id"]
    assert [item["id"] for item in studio.gallery(pack_id=pack_id)] == [from_pack["id"]]
    assert studio.gallery(pack_id=studio.get_pack("pet-portraits")["id"]) == []
    assert [item["id"] for item in studio.gallery(tune_id=DEMO_ID, limit=1, offset=1)] == [plain["id"]]
    with pytest.raises(InvalidInput):
        studio.gallery(sort="oldest")


@pytest.mark.slow
def test_deleting_a_prompt_removes_its_images_likes_and_files_and_its_pack_counts(studio):
    keep = _made(studio, "a keeper", num_images=1)
    gone = _made(studio, "a goner", orig_prompt_id=_pack_prompt_id(studio))
    studio.like_prompt(gone["id"], "ann", 0)
    assert studio.get_pack("corporate-headshots")["likes_count"] == 1
    files = [studio.files.path(path) for path in gone["images"]]
    assert all(path.is_file() for path in files)

    studio.delete_prompt(gone["id"])
    assert [p["id"] for p in studio.list_prompts()] == [keep["id"]]
    assert not any(path.exists() for path in files)
    assert studio.files.path(keep["images"][0]).is_file()
    pack = studio.get_pack("corporate-headshots")
    assert (pack["likes_count"], pack["images_shown"], pack["runs"]) == (0, 0, 0)
    with pytest.raises(NotFound):
        studio.delete_prompt(gone["id"])


def test_a_prompt_cannot_be_deleted_while_it_waits(studio):
    waiting = studio.create_prompt(DEMO_ID, {"text": "a queued cup", "num_images": 1, **SMALL})
    with pytest.raises(Conflict) as error:
        studio.delete_prompt(waiting["id"])
    assert "stop it first" in error.value.message
    studio.cancel_prompt(waiting["id"])
    studio.delete_prompt(waiting["id"])
    assert studio.list_prompts() == []


# -- in the browser ------------------------------------------------------------------------


def _open_tab(page, live_url):
    page.goto(live_url)
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#gallery-board .prompt-card").first.wait_for()


@pytest.mark.browser
@pytest.mark.slow
def test_like_an_image_and_see_the_count_after_a_reload(live_url, page, studio):
    prompt = _made(studio, "a lantern at night")
    _open_tab(page, live_url)
    card = page.locator(f"#gallery-board .prompt-card[data-prompt='{prompt['id']}']")
    heart = card.locator("button.heart[data-idx='1']")
    assert heart.inner_text().strip() == "♥ 0"
    heart.click()
    card.locator("button.heart.on[data-idx='1']").wait_for()
    assert card.locator("button.heart[data-idx='1'] .count").inner_text() == "1"
    assert card.locator(".likes").inner_text() == "♥ 1"
    assert studio.prompt_images(prompt["id"])[1]["likes"] == 1
    screenshot(page, "tab-gallery")
    # The like is this browser's: after a reload it is still counted and still shown as mine.
    page.reload()
    page.get_by_role("tab", name="Gallery").click()
    card.locator("button.heart.on[data-idx='1']").wait_for()
    assert card.locator("button.heart[data-idx='1'] .count").inner_text() == "1"
    # Unlike.
    card.locator("button.heart[data-idx='1']").click()
    card.locator("button.heart:not(.on)[data-idx='1'] .count", has_text="0").wait_for()
    assert studio.get_prompt(prompt["id"])["likes_count"] == 0


@pytest.mark.browser
def test_filter_sort_and_delete(live_url, page, studio):
    older = _made(studio, "an old boat", num_images=1)
    newer = _made(studio, "a pack headshot", num_images=1, orig_prompt_id=_pack_prompt_id(studio))
    studio.like_prompt(older["id"], "someone", 0)
    _open_tab(page, live_url)
    board = page.locator("#gallery-board")
    cards = board.locator(".prompt-card")
    assert [cards.nth(i).get_attribute("data-prompt") for i in range(2)] == [str(newer["id"]), str(older["id"])]
    # Most liked first.
    page.locator("#gallery-sort").get_by_text("Most liked").click()
    board.locator(".prompt-card").first.and_(board.locator(f"[data-prompt='{older['id']}']")).wait_for()
    # Only the prompts a pack made.
    page.locator("#gallery-pack input").click()
    page.get_by_role("option", name="Corporate Headshots").click()
    board.locator(f".prompt-card[data-prompt='{older['id']}']").wait_for(state="detached")
    assert board.locator(".prompt-card").count() == 1 and "pack: Corporate Headshots" in board.inner_text()
    # Delete it, after the browser's confirm.
    page.once("dialog", lambda dialog: dialog.accept())
    board.locator(f".prompt-card[data-prompt='{newer['id']}'] button.trash").click()
    board.get_by_text("No prompts match these filters.").wait_for()
    assert [p["id"] for p in studio.list_prompts()] == [older["id"]]


@pytest.mark.browser
def test_prompt_text_shows_as_text_never_as_markup(live_url, page, studio):
    text = "a cat ${document.title='owned'} <img src=x onerror=\"document.title='owned'\"> \\u0041 `tick`"
    studio.create_prompt(DEMO_ID, {"text": text, "num_images": 1, **SMALL})  # queued: no worker runs
    _open_tab(page, live_url)
    card = page.locator("#gallery-board .prompt-card").first
    assert card.locator(".badge.QUEUING").count() == 1
    assert card.locator(".text").inner_text() == text
    assert card.locator(".text img").count() == 0 and page.title() != "owned"
