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
