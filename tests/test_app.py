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


def test_traversal_out_of_the_public_area_is_refused(server, studio):
    public = studio.files.path(studio.files.put(b"\x89PNG fake", "outputs", ".png"))
    photo = studio.files.path(studio.files.put(b"\x89PNG private", "photos", ".png"))
    up = "/".join([".."] * len(public.relative_to(studio.home).parts[:-1]))
    attempts = [
        f"{public.parent}/../photos/{photo.name}",
        f"{public.parent}/{up}/db/studio.db",
        f"{public.parent}/%2e%2e/photos/{photo.name}",
        f"{public.parent}/..%2f..%2fdb%2fstudio.db",
        f"{public.parent}/{'../' * 12}etc/passwd",
    ]
    for target in attempts:
        response = httpx.get(f"{server}/gradio_api/file={target}")
        assert response.status_code in (400, 403, 404), target
        assert (
            b"private" not in response.content
            and b"SQLite" not in response.content
            and b"root:" not in response.content
        )


def test_studio_auth_puts_the_ui_behind_a_login(tmp_path, demo_model_dir):
    from app import create_app
    from conftest import serve
    from studio.config import Settings
    from studio.core import Studio

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, auth=(("ann", "s3cret"),)))
    url, stop = serve(create_app(studio))
    try:
        assert "Demo model" not in httpx.get(f"{url}/config").text  # the app's config needs a login
        with httpx.Client(base_url=url) as client:
            assert client.post("/login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert client.post("/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            assert "Demo model" in client.get("/config").text
    finally:
        stop()
        studio.close()
