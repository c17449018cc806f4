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


def test_handlers_cannot_return_private_files(studio):
    """Under mount_gradio_app a handler returning a blocked path must fail, not serve it."""
    import gradio as gr
    from fastapi import FastAPI
    from gradio_client import Client

    from app import mount_ui
    from conftest import serve

    secret = studio.home / "db" / "studio.db"
    photo = studio.files.path(studio.files.put(b"\x89PNG private", "photos", ".png"))
    with gr.Blocks() as demo:
        which, out = gr.Textbox(), gr.File()
        which.submit(lambda w: str(secret if w == "db" else photo), which, out, api_name="leak")
    url, stop = serve(mount_ui(FastAPI(), demo, studio))
    try:
        client = Client(url + "/", verbose=False)
        for target in ("db", "photo"):
            with pytest.raises(Exception, match="blocked|not allowed|InvalidPath|error"):
                client.predict(target, api_name="/leak")
    finally:
        stop()
