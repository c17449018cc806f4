"""Tune routes beyond the flows: base models as tunes, pagination, delete, image URLs built from
STUDIO_PUBLIC_URL, and photo inspection."""

import httpx
from api_helpers import live_studio, photo_files, wait_for
from photos import encode, friend


def _tune(url: str, title: str, **fields) -> dict:
    form = {"tune[title]": title, "tune[name]": "woman", "tune[branch]": "fast", **fields}
    response = httpx.post(f"{url}/tunes", data=form, files=photo_files(("rachel",)), timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def test_gallery_base_models_answer_as_tunes(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, _):
        demo, realistic = httpx.get(f"{url}/tunes/1").json(), httpx.get(f"{url}/tunes/690204").json()
        assert (demo["model_type"], demo["embedded"], demo["available"], demo["status"]) == (
            "checkpoint",
            True,
            True,
            "SUCCESS",
        )
        assert realistic["title"] == "Realistic Vision V5.1" and realistic["family"] == "sd15"
        assert (realistic["embedded"], realistic["available"]) == (False, False)
        assert httpx.get(f"{url}/tunes").json() == []  # base models are not the user's tunes


def test_tunes_page_newest_first_and_delete_removes_everything(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        made = [_tune(url, f"Tune {n}")["id"] for n in range(3)]

        def page(query: str) -> list[int]:
            return [t["id"] for t in httpx.get(f"{url}/tunes?{query}").json()]

        assert page("") == made[::-1]
        assert page("limit=2") == [made[2], made[1]]
        assert page(f"limit=2&before_id={made[1]}") == [made[0]]
        assert page("limit=1&offset=1") == [made[1]]

        prompt = httpx.post(f"{url}/tunes/{made[0]}/prompts", json={"prompt": {"text": "ohwx woman"}}).json()
        assert prompt["status"] == "QUEUING"  # waits for its tune to train
        response = httpx.delete(f"{url}/tunes/{made[0]}")  # its training is queued: canceled, then deleted
        assert response.status_code == 200 and response.json() == {"message": "Tune successfully deleted"}
        assert httpx.get(f"{url}/tunes/{made[0]}").status_code == 404
        assert httpx.get(f"{url}/tunes/{made[0]}/prompts/{prompt['id']}").status_code == 404
        assert studio.store.get_prompt(prompt["id"]) is None and studio.store.latest_job("train", made[0]) is None
        assert page("") == [made[2], made[1]]


def test_image_urls_use_the_public_url_when_set(tmp_path, demo_model_dir, site):
    settings = {"public_url": "https://studio.example.com"}
    with live_studio(tmp_path / "home", demo_model_dir, **settings) as (url, studio):
        callback = f"{site.url}/hook?id=9"
        body = {"prompt": {"text": "a cat", "num_images": 1, "steps": 2, "callback": callback}}
        created = httpx.post(f"{url}/tunes/1/prompts", json=body, timeout=60).json()
        assert created["url"] == f"https://studio.example.com/tunes/1/prompts/{created['id']}"
        [(_, posted)] = wait_for(lambda: site.callbacks("/hook"), what="the prompt callback")
        [image] = posted["prompt"]["images"]
        assert image.startswith("https://studio.example.com/images/") and image.endswith(".png")
        name = image.rsplit("/", 1)[1]
        assert httpx.get(f"{url}/images/{name}").status_code == 200  # the same path on this host
        assert studio.store.get_prompt(created["id"])["base_url"] == url


def test_inspect_a_photo(tmp_path, demo_model_dir, site):
    [photo_url] = site.add_photos(("rachel",))
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        photo = encode(friend("rachel"), "JPEG")
        response = httpx.post(
            f"{url}/images/inspect", data={"name": "woman"}, files={"file": ("me.jpg", photo)}, timeout=60
        )
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["name"] in ("woman", "man") and len(found["faces"]) >= 1
        for key in ("blurry", "selfie", "wearing_sunglasses", "includes_multiple_people", "low_resolution"):
            assert isinstance(found[key], bool), key
        assert isinstance(found["warnings"], list)
        by_url = httpx.post(f"{url}/images/inspect", json={"name": "woman", "file_url": photo_url}, timeout=30)
        assert by_url.status_code == 200 and by_url.json()["faces"] == found["faces"]

        text = httpx.post(
            f"{url}/images/inspect", data={"name": "woman"}, files={"file": ("a.txt", b"hello")}, timeout=60
        )
        assert text.status_code == 422 and text.json()["field"] == "file"
        nameless = httpx.post(f"{url}/images/inspect", files={"file": ("me.jpg", photo)}, timeout=60)
        assert nameless.status_code == 422 and nameless.json()["field"] == "name"
        assert studio.store.orphan_photos() == []  # inspecting stores nothing
