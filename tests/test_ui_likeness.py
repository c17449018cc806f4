"""Likeness in the browser: every image in the Gallery carries its likeness badge (with the
backend's same-person threshold), the Gallery sorts by best likeness and filters by whether an
image shows the subject, and the Generate tab's results say the same in their captions.

The demo model draws no faces, so the stored images are swapped for known cases before they are
scored: the subject's face pasted in (a match), another person's (a miss), none (no face).
"""

import io

import pytest
from photos import encode, friend, mirrored, rotated

from conftest import screenshot
from studio.domain import SUCCESS
from studio.likeness import similarity_threshold
from studio.tune_requests import TuneRequest

HEADS = {"rachel": (40, 100, 340, 400), "joey": (100, 60, 400, 360)}


def _scored_prompts(studio) -> dict[str, int]:
    """Three one-image prompts of a FaceID tune of Rachel, oldest first: her face, Joey's face,
    no face; stored and scored as the job worker scores them."""
    from PIL import Image

    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    tune = studio.create_tune(TuneRequest(title="Rachel", name="woman", model_type="faceid"), photos=photos)
    ids = {}
    for case in ("match", "miss", "faceless"):
        prompt = studio.create_prompt(
            tune["id"], {"text": f"a portrait, {case}", "num_images": 1, "steps": 2, "w": 64, "h": 64}
        )
        studio.run_pending()
        made = studio.get_prompt(prompt["id"])
        assert made["status"] == SUCCESS
        canvas = Image.open(io.BytesIO(studio.files.read(made["images"][0]))).convert("RGB").resize((256, 256))
        head = {"match": "rachel", "miss": "joey"}.get(case)
        if head:
            face = friend(head).crop(HEADS[head])
            canvas.paste((rotated(face, 6) if head == "rachel" else face).resize((128, 128)), (64, 64))
        [row] = studio.store.prompt_images(prompt["id"])
        studio.store.update_image(row["id"], path=studio.files.put(encode(canvas, "PNG"), "outputs", ".png"))
        studio.rescore_prompt(prompt["id"])
        ids[case] = prompt["id"]
    return ids


def _order(board) -> list[str]:
    cards = board.locator(".prompt-card")
    return [cards.nth(i).get_attribute("data-prompt") for i in range(cards.count())]


@pytest.mark.slow
@pytest.mark.browser
def test_gallery_badges_sort_and_filter_by_likeness(live_url, page, studio):
    ids = _scored_prompts(studio)
    page.goto(live_url)
    page.get_by_role("tab", name="Gallery").click()
    board = page.locator("#gallery-board")
    board.locator(".prompt-card").nth(2).wait_for()
    assert _order(board) == [str(ids["faceless"]), str(ids["miss"]), str(ids["match"])]

    # A badge on every image, saying what the number means.
    threshold = f"{similarity_threshold(studio.face_analyzer.same_person_distance):.3f}"
    match = board.locator(f".prompt-card[data-prompt='{ids['match']}'] .badge.likeness")
    miss = board.locator(f".prompt-card[data-prompt='{ids['miss']}'] .badge.likeness")
    faceless = board.locator(f".prompt-card[data-prompt='{ids['faceless']}'] .badge.likeness")
    assert match.get_attribute("class").split()[-1] == "match" and f"same person ≥ {threshold}" in match.inner_text()
    assert miss.get_attribute("class").split()[-1] == "miss" and f"other person < {threshold}" in miss.inner_text()
    assert faceless.inner_text() == "no face found"
    assert f"same person scores {threshold} or more" in match.get_attribute("title")
    assert float(match.get_attribute("data-score")) > float(miss.get_attribute("data-score"))
    assert "likeness ⌀" in board.locator(f".prompt-card[data-prompt='{ids['match']}'] .head").inner_text()
    screenshot(page, "tab-gallery-likeness")

    # Best likeness first; prompts without a face last.
    page.locator("#gallery-sort").get_by_text("Best likeness").click()
    board.locator(".prompt-card").first.and_(board.locator(f"[data-prompt='{ids['match']}']")).wait_for()
    assert _order(board) == [str(ids["match"]), str(ids["miss"]), str(ids["faceless"])]

    # Only images of the subject, then only those that miss her.
    page.locator("#gallery-likeness input").click()
    page.get_by_role("option", name="Looks like the subject").click()
    board.locator(f".prompt-card[data-prompt='{ids['miss']}']").wait_for(state="detached")
    assert _order(board) == [str(ids["match"])]
    page.locator("#gallery-likeness input").click()
    page.get_by_role("option", name="Misses the subject").click()
    board.locator(f".prompt-card[data-prompt='{ids['match']}']").wait_for(state="detached")
    assert _order(board) == [str(ids["miss"]), str(ids["faceless"])]


@pytest.mark.browser
def test_generate_results_caption_their_likeness(live_url, page, studio):
    ids = _scored_prompts(studio)
    page.goto(live_url)
    page.get_by_role("tab", name="Generate").click()
    # The newest prompt is shown after a load; its one image has no face.
    caption = f"no face found ({studio.face_analyzer.name})"
    page.locator("#gen-gallery").get_by_text(caption).first.wait_for()
    page.locator("#gen-gallery img").first.click()
    page.locator("#gen-details").get_by_text(caption).wait_for()
    assert studio.get_prompt(ids["faceless"])["likeness"][0]["message"] == "no face found"
