"""The studio opens in a real browser with its banner and status tab."""

import pytest

from conftest import screenshot

pytestmark = pytest.mark.browser


def test_status_tab_in_browser(page, live_url):
    page.goto(live_url)
    page.get_by_text("Demo model.").first.wait_for()
    page.get_by_role("tab", name="Settings & status").click()
    page.get_by_text("Data folder").wait_for()
    assert page.get_by_text("Realistic Vision V5.1").count() >= 1
    screenshot(page, "tab-status")


def test_create_api_key_in_browser(page, live_url, studio):
    page.goto(live_url)
    page.get_by_role("tab", name="Settings & status").click()
    page.get_by_label("Owner").fill("my-app")
    page.get_by_role("button", name="Create key").click()
    key_box = page.locator("#new-api-key textarea")
    page.wait_for_function("() => document.querySelector('#new-api-key textarea').value.startsWith('sk_')")
    key = key_box.input_value()
    [row] = studio.list_api_keys()
    assert row["owner"] == "key:my-app"
    from studio.services.api_keys import key_hash

    assert studio.store.api_key_owner(key_hash(key)) == "key:my-app"
