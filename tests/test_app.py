"""The served app: UI at '/', and Gradio's file route closed to everything but public areas."""

import httpx
import pytest


@pytest.fixture
def server(live_url):
    return live_url


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
