"""The served app: UI at '/', and Gradio's file route closed to everything but public areas."""

import threading
import time

import httpx
import pytest
from conftest import free_port


@pytest.fixture
def server(studio):
    import uvicorn

    from app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_ui_is_served_with_the_demo_banner(server):
    response = httpx.get(server + "/")
    assert response.status_code == 200
    config = httpx.get(server + "/config").json()
    assert "Demo model" in str(config)


def test_file_route_serves_outputs_only(server, studio):
    public = studio.files.put(b"\x89PNG fake", "outputs", ".png")
    photo = studio.files.put(b"\x89PNG private", "photos", ".png")
    ok = httpx.get(f"{server}/gradio_api/file={studio.files.path(public)}")
    assert ok.status_code == 200 and ok.content == b"\x89PNG fake"
    for target in (studio.files.path(photo), studio.home / "db" / "studio.db", "/etc/passwd"):
        assert httpx.get(f"{server}/gradio_api/file={target}").status_code == 403
