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
