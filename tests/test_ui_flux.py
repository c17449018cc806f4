"""Flux in the browser: the Generate tab shows only the controls that apply to the chosen model's
family (no negative prompt on FLUX.1's distilled guidance, the family's schedulers only) and
generates on the FLUX.1 demo; the Tunes tab names each base model's family and shows the
training's GPU memory before it starts; the Settings tab says which memory options are active."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import link_flux_demos, screenshot, serve, settle
from studio.config import Settings
from studio.core import Studio
from studio.families import FAMILIES

pytestmark = pytest.mark.browser

SD_DEMO, FLUX1_DEMO, FLUX2_DEMO = 1, 6, 7


@contextmanager
def _served(home: Path, demo_model_dir: Path, flux_demo_dirs: dict, **settings):
    """The whole app for a studio whose demos are the session's."""
    from app import create_app

    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    link_flux_demos(home, flux_demo_dirs)
    studio = Studio.open(Settings(home=home, demo_size=64, **settings))
    url, stop = serve(create_app(studio))
    try:
        yield url, studio
    finally:
        stop()
        studio.close()


@pytest.fixture
def flux_url(tmp_path, demo_model_dir, flux_demo_dirs):
    with _served(tmp_path / "home", demo_model_dir, flux_demo_dirs) as served:
        yield served


@pytest.fixture
def memory_url(tmp_path, demo_model_dir, flux_demo_dirs):
    """STUDIO_CPU_OFFLOAD=1 and STUDIO_QUANTIZE=nf4: settings only, nothing is generated (this
    machine has neither CUDA nor bitsandbytes)."""
    with _served(tmp_path / "home", demo_model_dir, flux_demo_dirs, cpu_offload=True, quantize="nf4") as served:
        yield served


def _pick_model(page, label: str) -> None:
    page.locator("#gen-model input").click()
    page.locator("#gen-model").get_by_role("option", name=label).click()
    page.locator("#gen-model").get_by_role("option").first.wait_for(state="detached")


def _scheduler_choices(page) -> list[str]:
    page.locator("#gen-scheduler input").click()
    options = page.locator("#gen-scheduler").get_by_role("option")
    options.first.wait_for()
    names = options.all_inner_texts()
    page.keyboard.press("Escape")
    return [name.split("\n")[-1].strip() for name in names]  # the chosen one starts with a check mark


def _open_generate(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").wait_for()
    settle(page)
    page.locator("#gen-parameters").get_by_text("Parameters").click()


def test_the_generate_tab_shows_only_the_controls_of_the_models_family(flux_url, page):
    url, studio = flux_url
    _open_generate(page, url)
    negative = page.locator("#gen-negative")
    # The SD demo (the default): classifier-free guidance, so a negative prompt and SD's schedulers.
    page.get_by_label("CFG scale").wait_for()  # the Parameters accordion has opened
    assert negative.is_visible()
    assert "dpm++2m_karras" in _scheduler_choices(page)
    negative.locator("textarea").fill("blurry")
    # FLUX.1: distilled guidance; the negative prompt goes (and its text with it).
    _pick_model(page, "FLUX.1 demo (embedded, tiny) · FLUX.1 base model")
    negative.wait_for(state="hidden")
    page.locator("#gen-family", has_text="distilled guidance").wait_for()
    page.get_by_label("Guidance (distilled)").wait_for()
    assert _scheduler_choices(page) == ["default", *FAMILIES["flux1"].schedulers]
    screenshot(page, "tab-generate-flux1")
    # FLUX.2 [klein] base: true CFG, so the negative prompt is back, empty.
    _pick_model(page, "FLUX.2 [klein] demo (embedded, tiny) · FLUX.2 [klein] base model")
    negative.wait_for(state="visible")
    assert negative.locator("textarea").input_value() == ""
    assert _scheduler_choices(page) == ["default", *FAMILIES["flux2"].schedulers]
    _pick_model(page, "Demo model (embedded, tiny) · SD 1.5 base model")
    page.get_by_label("CFG scale").wait_for()
    assert "dpm++sde_karras" in _scheduler_choices(page)


def test_the_settings_tab_says_which_memory_options_are_active(memory_url, page):
    url, _studio = memory_url
    page.goto(url)
    page.get_by_role("tab", name="Settings & status").click()
    status = page.locator("#status-text")
    status.get_by_text("Memory options").wait_for()
    assert "model CPU offload" in status.inner_text() and "nf4" in status.inner_text()
    page.locator("#status-models", has_text="FLUX.2 [klein]").wait_for()  # the gallery's family column


def test_the_tunes_tab_names_families_and_shows_the_training_memory_first(flux_url, page):
    url, studio = flux_url
    page.goto(url)
    page.get_by_role("tab", name="Tunes").click()
    memory = page.locator("#tune-memory")
    memory.get_by_text("GPU memory for this training").wait_for()
    assert "SD 1.5" in memory.inner_text()
    page.locator("#tune-base input").click()
    page.get_by_role("option", name="FLUX.1 demo (embedded, tiny) (FLUX.1)").click()
    memory.get_by_text("on FLUX.1").wait_for()
    flux_gb = studio.training_memory(_request(FLUX1_DEMO))["gb"]
    assert f"about {flux_gb:.1f} GB" in memory.inner_text()
    page.get_by_label("FaceID: no training, ready at once").check()
    memory.get_by_text("FaceID tunes are not trained").wait_for()
    screenshot(page, "tab-tunes-flux-memory")


def _request(base_id: int):
    from studio.tune_requests import TuneRequest

    return TuneRequest(title="estimate", name="woman", base_tune_id=base_id)


@pytest.mark.slow
def test_generate_on_the_flux_demo_in_the_browser(flux_url, page):
    url, studio = flux_url
    studio.start_worker()
    _open_generate(page, url)
    _pick_model(page, "FLUX.1 demo (embedded, tiny) · FLUX.1 base model")
    page.locator("#gen-negative").wait_for(state="hidden")
    page.locator("#gen-prompt textarea").fill("portrait of a woman, studio light")
    parameters = page.locator("#gen-parameters")
    parameters.get_by_label("Steps").fill("3")
    parameters.get_by_label("Width").fill("64")
    parameters.get_by_label("Height").fill("64")
    page.locator("#gen-run").click()
    page.locator("#gen-progress [data-status=SUCCESS]").wait_for(timeout=120_000)
    page.locator("#gen-gallery img").nth(1).wait_for()
    [prompt] = studio.list_prompts()
    assert prompt["tune_id"] == FLUX1_DEMO and prompt["negative_prompt"] in ("", None)
    assert len(prompt["images"]) == 2 and prompt["params"]["steps"] == 3
    assert not any("negative" in w for w in prompt.get("warnings") or [])  # nothing was sent to ignore
    screenshot(page, "tab-generate-flux1-done")
