"""API auth: keyless on loopback only, bearer keys from the environment or created (hashed)."""

import sqlite3

import httpx
import pytest

from conftest import serve
from studio.config import Settings
from studio.core import Studio


@pytest.fixture
def make_server(tmp_path, demo_model_dir):
    stops = []

    def make(**settings):
        home = tmp_path / f"home{len(stops)}"
        (home / "models").mkdir(parents=True)
        (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
        studio = Studio.open(Settings(home=home, **settings))
        from app import create_app

        url, stop = serve(create_app(studio))
        stops.append((stop, studio))
        return url, studio

    yield make
    for stop, studio in stops:
        stop()
        studio.close()


def test_keyless_api_answers_loopback(make_server):
    url, _ = make_server()
    response = httpx.get(url + "/gallery/tunes")
    assert response.status_code == 200
    demo = [m for m in response.json() if m["embedded"]]
    assert demo and demo[0]["available"] is True


def test_env_key_is_required_once_set(make_server):
    url, _ = make_server(api_keys=("secret-1",))
    assert httpx.get(url + "/gallery/tunes").status_code == 401
    assert httpx.get(url + "/gallery/tunes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url + "/gallery/tunes", headers={"Authorization": "Bearer secret-1"})
    assert ok.status_code == 200


def test_created_keys_are_stored_hashed(make_server):
    url, studio = make_server()
    key = studio.create_api_key("ann")
    assert httpx.get(url + "/gallery/tunes").status_code == 401  # a key exists now
    assert httpx.get(url + "/gallery/tunes", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    dump = "\n".join(sqlite3.connect(studio.home / "db" / "studio.db").iterdump())
    assert key not in dump
    [row] = studio.list_api_keys()
    assert row["owner"] == "key:ann" and row["last_used_at"]


def test_every_route_needs_the_key_but_image_urls_do_not(make_server):
    url, studio = make_server(api_keys=("secret-1",))
    public = studio.files.put(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "outputs", ".png")
    paths = ["/tunes", "/tunes/1", "/tunes/1/prompts", "/prompts", "/packs", "/p/corporate-headshots"]
    for path in paths:
        response = httpx.get(url + path)
        assert response.status_code == 401 and "Bearer" in response.json()["error"], path
    assert httpx.post(url + "/tunes", json={"tune": {"title": "x"}}).status_code == 401
    assert httpx.post(url + "/prompts/1/likes").status_code == 401
    assert httpx.get(url + "/images/" + public.rsplit("/", 1)[1]).status_code == 200


def test_likes_belong_to_the_key_owner(make_server):
    # Admins, so both see the one prompt (each key sees only its own otherwise: test_owners.py).
    url, studio = make_server(admins=("ann", "bob"))
    ann, bob = studio.create_api_key("ann"), studio.create_api_key("bob")
    prompt = studio.create_prompt(1, {"text": "a cat", "steps": 2, "num_images": 1})
    as_ann, as_bob = ({"Authorization": f"Bearer {key}"} for key in (ann, bob))
    assert httpx.post(f"{url}/prompts/{prompt['id']}/likes", headers=as_ann).json()["likes_count"] == 1
    assert httpx.post(f"{url}/prompts/{prompt['id']}/likes", headers=as_bob).json()["likes_count"] == 2
    assert httpx.delete(f"{url}/prompts/{prompt['id']}/likes", headers=as_bob).json()["likes_count"] == 1
    seen_by = {
        who: httpx.get(f"{url}/tunes/1/prompts/{prompt['id']}", headers=headers).json()["liked"]
        for who, headers in (("ann", as_ann), ("bob", as_bob))
    }
    assert seen_by == {"ann": True, "bob": False}
