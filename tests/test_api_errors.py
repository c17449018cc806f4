"""Bad requests get a 4xx whose JSON body names the field, and store nothing: no tune, photo,
prompt or file. Production defaults here (no private URLs), no job worker."""

import io

import httpx
import pytest
from api_helpers import Site, live_studio
from PIL import Image


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dir):
    home = tmp_path_factory.mktemp("errors") / "home"
    with live_studio(home, demo_model_dir, worker=False, allow_private_urls=False, max_upload_mb=1) as served:
        yield served


@pytest.fixture(scope="module")
def site():
    site = Site()
    site.add_photos(("rachel",))
    yield site
    site.close()


def _png(side: int = 300) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 90, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def _stored(studio) -> tuple:
    files = sorted(p.name for p in studio.files.root.rglob("*") if p.is_file() and "tmp" not in p.parts)
    tunes = studio.store.list_tunes(limit=1000)
    return len(tunes), len(studio.store.list_prompts(limit=1000)), len(studio.store.orphan_photos()), files


def _tune(**fields):
    return {"tune": {"title": "Bad", "name": "woman", "branch": "fast", **fields}}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"tune": {"name": "woman", "image_urls": ["https://example.com/a.jpg"]}}, 422, "title"),
        (_tune(name="spaceship"), 422, "name"),
        (_tune(image_urls=["file:///etc/passwd"]), 422, "image_urls"),
        (_tune(image_urls=["http://127.0.0.1:9/a.jpg"]), 422, "image_urls"),
        (_tune(image_urls=["http://[::1]/a.jpg"]), 422, "image_urls"),
        (_tune(image_urls="ftp://example.com/a.jpg"), 422, "image_urls"),
        (_tune(image_urls=[f"https://example.com/{n}.jpg" for n in range(51)]), 413, "images"),
        (_tune(image_urls=[]), 422, "images"),
        (_tune(steps="many"), 422, "max_train_steps"),
        (_tune(branch=None, base_tune_id=690204), 422, "base_tune_id"),  # not downloaded, hub off
        (_tune(branch=None, base_tune_id=1504944), 422, "base_tune_id"),  # Flux: not run here
        (_tune(branch=None, base_tune_id=424242), 404, "base_tune_id"),
        (_tune(callback="ftp://example.com/hook"), 422, "callback"),
        (_tune(prompts_attributes=[{"text": "ohwx woman", "seed": -1}]), 422, "seed"),
        (_tune(prompts_attributes=[{"text": "ohwx woman", "num_images": 9}]), 422, "num_images"),
        (_tune(characteristics=["blue eyes"]), 422, "characteristics"),
    ],
)
def test_bad_tune_requests_name_the_field_and_store_nothing(server, body, status, field):
    url, studio = server
    before = _stored(studio)
    response = httpx.post(f"{url}/tunes", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and error[field] == [error["error"]] and len(error["error"]) > 10
    assert _stored(studio) == before


def test_private_image_url_is_refused_unless_allowed(server, site):
    url, studio = server
    before = _stored(studio)
    response = httpx.post(f"{url}/tunes", json=_tune(image_urls=[f"{site.url}/photos/rachel.jpg"]), timeout=30)
    assert response.status_code == 422 and response.json()["field"] == "image_urls"
    assert "STUDIO_ALLOW_PRIVATE_URLS" in response.json()["error"]
    assert _stored(studio) == before


@pytest.mark.parametrize(
    ("files", "status", "field", "words"),
    [
        ([("tune[images][]", ("notes.txt", b"just some text, not a photo", "text/plain"))], 422, "images", "notes.txt"),
        ([("tune[images][]", (f"{n}.png", _png(), "image/png")) for n in range(51)], 413, "images", "at most 50"),
        ([("tune[images][]", ("big.png", b"\x89PNG" + b"0" * 2**21, "image/png"))], 413, "images", "1 MB"),
    ],
)
def test_bad_uploads_name_the_field_and_store_nothing(server, files, status, field, words):
    url, studio = server
    before = _stored(studio)
    form = {"tune[title]": "Upload", "tune[name]": "woman", "tune[branch]": "fast"}
    response = httpx.post(f"{url}/tunes", data=form, files=files, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and words in response.json()["error"]
    assert _stored(studio) == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": "a man", "seed": -1}, "seed"),
        ({"text": "a man", "seed": 2**40}, "seed"),
        ({"text": "a man", "w": 100}, "w"),
        ({"text": "a man", "scheduler": "warp"}, "scheduler"),
        ({"negative_prompt": "x"}, "text"),
        ({"text": "<faceid:424242:1> a man"}, "text"),
        ({"text": "a man", "callback": "javascript:alert(1)"}, "callback"),
        ({"text": "a man", "input_image_url": "http://localhost/x.png"}, "input_image_url"),
    ],
)
def test_bad_prompts_name_the_field_and_store_nothing(server, fields, field):
    url, studio = server
    before = _stored(studio)
    response = httpx.post(f"{url}/tunes/1/prompts", json={"prompt": fields}, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert _stored(studio) == before


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("GET", "/tunes/424242", 404, "tune_id"),
        ("GET", "/tunes/1/prompts/424242", 404, "prompt_id"),
        ("GET", "/tunes/424242/prompts", 404, "tune_id"),
        ("POST", "/tunes/424242/prompts", 404, "tune_id"),
        ("DELETE", "/tunes/1", 404, "tune_id"),  # a base model is not deletable
        ("DELETE", "/tunes/424242", 404, "tune_id"),
        ("GET", "/p/424242", 404, "pack_id"),
        ("GET", "/p/no-such-pack", 404, "pack_id"),
        ("POST", "/prompts/424242/likes", 404, "prompt_id"),
        ("GET", f"/tunes/{2**64}", 422, "tune_id"),
        ("GET", "/tunes/abc", 422, "tune_id"),
        ("GET", "/tunes?limit=500", 422, "limit"),
        ("GET", "/tunes?before_id=0", 422, "before_id"),
        ("GET", "/tunes?offset=-1", 422, "offset"),
    ],
)
def test_unknown_ids_and_bad_parameters(server, method, path, status, field):
    url, _ = server
    response = httpx.request(method, f"{url}{path}", json={"prompt": {"text": "a man"}} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_a_body_that_is_not_json_or_a_form_is_refused(server):
    url, studio = server
    before = _stored(studio)
    bad_json = httpx.post(f"{url}/tunes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["field"] == "body" and "JSON" in bad_json.json()["error"]
    not_object = httpx.post(f"{url}/tunes", json=["a", "list"])
    assert not_object.status_code == 422 and not_object.json()["field"] == "body"
    form = {"Content-Type": "multipart/form-data; boundary=x"}
    broken = httpx.post(f"{url}/tunes", content=b"--x\r\nFalse--x--\r\n", headers=form)
    assert broken.status_code == 422 and broken.json()["field"] == "body"
    text = httpx.post(f"{url}/tunes", content=b"title=x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 422 and text.json()["field"] == "title"
    assert _stored(studio) == before


def test_images_are_served_only_from_public_areas(server):
    url, studio = server
    png = _png(64)
    private = studio.files.put(png + b"private", "photos", ".png")
    public = studio.files.put(png, "outputs", ".png")
    assert httpx.get(f"{url}/images/{private.rsplit('/', 1)[1]}").status_code == 404
    served = httpx.get(f"{url}/images/{public.rsplit('/', 1)[1]}")
    assert served.status_code == 200 and served.content == png and served.headers["content-type"] == "image/png"
    assert "immutable" in served.headers["cache-control"]
    for name in ("..%2F..%2Fdb%2Fstudio.db", "studio.db", public.rsplit("/", 1)[1].upper()):
        assert httpx.get(f"{url}/images/{name}").status_code == 404
    assert studio.file_url(public, "http://h:1") == f"http://h:1/images/{public.rsplit('/', 1)[1]}"
    with pytest.raises(ValueError):
        studio.file_url(private)


def test_a_full_queue_answers_429_and_keeps_no_prompt(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, queue_limit=1) as (url, studio):
        first = httpx.post(f"{url}/tunes/1/prompts", json={"prompt": {"text": "a cat", "steps": 2}}, timeout=60)
        assert first.status_code == 201
        second = httpx.post(f"{url}/tunes/1/prompts", json={"prompt": {"text": "a dog", "steps": 2}}, timeout=60)
        assert second.status_code == 429 and "try again" in second.json()["error"]
        assert [p["id"] for p in studio.store.list_prompts()] == [first.json()["id"]]
