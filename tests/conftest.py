"""Shared fixtures. Everything is offline: the hub is switched off before any library loads."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import FileStore, Store  # noqa: E402
from studio.config import Settings  # noqa: E402
from studio.core import Studio  # noqa: E402


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The embedded demo model, built once per test session through the production path."""
    from studio.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="session")
def flux_demo_dirs(tmp_path_factory) -> dict[str, Path]:
    """The embedded FLUX.1 and FLUX.2 [klein] demos, built once per test session through the
    production path; `link_flux_demos` puts them into a studio home."""
    from studio.demo_flux import ensure_flux_demo

    root = tmp_path_factory.mktemp("flux-models")
    return {family: ensure_flux_demo(root / family, family) for family in ("flux1", "flux2")}


@pytest.fixture(scope="session")
def sdxl_demo_dir(tmp_path_factory) -> Path:
    """The embedded SDXL demo, built once per test session through the production path;
    `link_sdxl_demo` puts it into a studio home."""
    from studio.demo_sdxl import ensure_sdxl_demo

    return ensure_sdxl_demo(tmp_path_factory.mktemp("sdxl-models") / "sdxl")


def link_sdxl_demo(home: Path, folder: Path) -> None:
    """Link the session's SDXL demo where a studio under `home` looks for it (not rebuilt)."""
    (home / "models").mkdir(parents=True, exist_ok=True)
    (home / "models" / "demo-sdxl").symlink_to(folder, target_is_directory=True)


def link_flux_demos(home: Path, dirs: dict[str, Path]) -> None:
    """Link the session's Flux demos where a studio under `home` looks for them (not rebuilt)."""
    (home / "models").mkdir(parents=True, exist_ok=True)
    for family, folder in dirs.items():
        (home / "models" / f"demo-{family}").symlink_to(folder, target_is_directory=True)


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "studio.db")
    yield store
    store.close()


@pytest.fixture
def files(tmp_path) -> FileStore:
    return FileStore(tmp_path / "files")


@pytest.fixture
def studio(tmp_path, demo_model_dir) -> Studio:
    """A studio on a fresh home whose demo model is the session's (linked, not rebuilt)."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home))
    yield studio
    studio.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app):
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; returns (url, stop)."""
    import uvicorn

    port = free_port()
    # A browser page still open at teardown holds a websocket/SSE stream; without a short grace
    # period uvicorn would wait for it and every browser test would end with a long stall.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    return f"http://127.0.0.1:{port}", serve_config(config)


def serve_config(config):
    """Run a uvicorn server for `config` in a thread until it has started; returns its stop()."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(3)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)

    return stop


@pytest.fixture
def site():
    """A local web site for image URLs and callbacks (tests/api_helpers.py)."""
    from api_helpers import Site

    site = Site()
    yield site
    site.close()


@pytest.fixture
def live_url(studio):
    """The whole studio app (UI + API) served for this test."""
    from app import create_app

    url, stop = serve(create_app(studio))
    yield url
    stop()


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (its own browser download does not work offline)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it with apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def settle(page) -> None:
    """Wait until the page's load-time events have finished (no output marked pending for half a
    second). A value typed while they run can be lost: Gradio may re-apply a field's old value
    when their outputs arrive, so tests that fill a form right after a load wait for this."""
    page.wait_for_function(
        """() => {
          const now = Date.now();
          if (document.querySelector('.pending')) window.__busy = now;
          return now - (window.__busy || 0) > 500;
        }""",
        polling=100,
    )


def screenshot(page, name: str) -> Path:
    """Save a screenshot as a test artifact under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
