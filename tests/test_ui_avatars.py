"""The Avatars & LoRAs tab in a real browser: upload a LoRA, save a style avatar, see and copy
their tokens, see a bad upload refused with the studio's message, delete."""

import pytest
from lora_files import write_sd15_lora
from photos import astronaut, encode

from conftest import screenshot

pytestmark = pytest.mark.browser


def _open_tab(page, live_url):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(live_url)
    page.get_by_role("tab", name="Avatars & LoRAs").click()
    page.get_by_text("Your avatars and LoRAs").wait_for()


def test_upload_a_lora_and_save_a_style_avatar_then_copy_their_tokens(live_url, page, studio, tmp_path):
    _open_tab(page, live_url)
    # 1. A LoRA with trigger words.
    page.locator("#lora-file input[type=file]").set_input_files(str(write_sd15_lora(tmp_path / "toy.safetensors")))
    page.locator("#lora-file").get_by_text("toy.safetensors").wait_for()
    page.get_by_label("LoRA name").fill("toy")
    page.get_by_label("Trigger words").fill("toy style, plastic")
    page.locator("#upload-lora").click()
    page.locator("#adapter-list code", has_text="<be-lora:toy:1>").wait_for()
    # 2. A style avatar at weight 0.5 (the slider's default).
    (tmp_path / "cartoon.jpg").write_bytes(encode(astronaut()))
    page.locator("#avatar-image input[type=file]").set_input_files(str(tmp_path / "cartoon.jpg"))
    page.locator("#avatar-image img").first.wait_for()
    page.get_by_label("Avatar name").fill("cartoon1")
    page.locator("#save-avatar").click()
    page.locator("#adapter-list code", has_text="<be-style:cartoon1:0.5>").wait_for()

    lora, style = studio.get_adapter("lora", "toy"), studio.get_adapter("style", "cartoon1")
    assert lora["family"] == "sd15" and lora["metadata"]["trigger_words"] == ["toy style", "plastic"]
    assert style["weight"] == 0.5 and style["metadata"]["width"] == 512
    card = page.locator("#adapter-list .card[data-name=cartoon1]")
    assert card.locator("img").count() == 1  # the avatar's picture, rendered inline
    assert "trigger: toy style, plastic" in page.locator("#adapter-list .card[data-name=toy]").inner_text()
    # 3. The copy button puts the exact token on the clipboard.
    card.get_by_role("button", name="Copy").click()
    card.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == "<be-style:cartoon1:0.5>"
    screenshot(page, "tab-avatars")


def test_a_file_that_is_not_a_lora_is_refused_with_the_reason(live_url, page, studio, tmp_path):
    _open_tab(page, live_url)
    fake = tmp_path / "notes.safetensors"
    fake.write_bytes(b"not a safetensors file at all, just notes\n" * 4)
    page.locator("#lora-file input[type=file]").set_input_files(str(fake))
    page.locator("#lora-file").get_by_text("notes.safetensors").wait_for()
    page.get_by_label("LoRA name").fill("notes")
    page.locator("#upload-lora").click()
    page.get_by_text("upload a .safetensors LoRA (pickle files are refused)").wait_for()
    assert studio.list_adapters() == []


def test_delete_an_avatar(live_url, page, studio):
    studio.add_adapter("pose", "wave", encode(astronaut()), weight=0.8)
    _open_tab(page, live_url)
    page.locator("#adapter-list code", has_text="<be-pose:wave:0.8>").wait_for()
    page.locator("#adapter-choice input").click()
    page.get_by_role("option", name="wave (pose)").click()
    page.locator("#delete-adapter").click()
    page.get_by_text("Nothing saved yet").wait_for()
    assert studio.list_adapters() == []
