"""Astria routes and fields filled in after the first API pass: deleting prompts (both paths),
a tune's `orig_images` and `ckpt_url` (private: served only with the API key), and a pack run on
existing tunes posting its `prompts_callback` once every prompt is done."""

import io
import json
import struct

import httpx
import pytest
from api_helpers import live_studio, photo_files, wait_for
from PIL import Image

from studio.config import Settings
from studio.core import Studio
from studio.services.api_keys import env_key_user

KEY = "gaps-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _tune(url: str, title: str, people: tuple[str, ...], **fields) -> dict:
    form = {"tune[title]": title, "tune[name]": "woman", "tune[branch]": "fast", **fields}
    response = httpx.post(f"{url}/tunes", data=form, files=photo_files(people), headers=AUTH, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def _prompt(url: str, tune_id: int = 1) -> dict:
    body = {"prompt": {"text": "a red bicycle", "num_images": 1, "steps": 2}}
    response = httpx.post(f"{url}/tunes/{tune_id}/prompts", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def test_orig_images_are_the_tunes_photos_served_only_with_the_key(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        tune = _tune(url, "Rachel", ("rachel", "phoebe"))
        other = _tune(url, "Monica", ("monica",))
        assert len(tune["orig_images"]) == 2 and len(other["orig_images"]) == 1
        assert all(u.startswith(f"{url}/tunes/{tune['id']}/photos/") for u in tune["orig_images"])
        assert httpx.get(f"{url}/tunes/{tune['id']}", headers=AUTH).json()["orig_images"] == tune["orig_images"]

        for link, row in zip(tune["orig_images"], studio.store.tune_photos(tune["id"])):
            response = httpx.get(link, headers=AUTH)
            assert response.status_code == 200 and response.headers["cache-control"] == "private"
            assert response.content == studio.files.read(row["path"])
            assert Image.open(io.BytesIO(response.content)).size == (row["width"], row["height"])
            assert httpx.get(link).status_code == 401
            assert httpx.get(link, headers={"Authorization": "Bearer wrong"}).status_code == 401
            # Not in the public image area either, under its content-hash name.
            assert httpx.get(f"{url}/images/{row['path'].rsplit('/', 1)[1]}").status_code == 404

        # Another tune's photo cannot be reached through this tune's path, nor a base model's.
        other_photo = other["orig_images"][0].rsplit("/", 1)[1]
        assert httpx.get(f"{url}/tunes/{tune['id']}/photos/{other_photo}", headers=AUTH).status_code == 404
        assert httpx.get(f"{url}/tunes/1/photos/{other_photo}", headers=AUTH).status_code == 404

        # Not trained yet: no LoRA to download.
        assert (tune["ckpt_url"], tune["ckpt_urls"]) == (None, [])
        response = httpx.get(f"{url}/tunes/{tune['id']}/lora.safetensors", headers=AUTH)
        assert response.status_code == 409 and response.json()["field"] == "tune_id"


def test_delete_prompt_by_both_paths(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        queued, scoped, finished = _prompt(url), _prompt(url), _prompt(url)
        assert httpx.post(f"{url}/prompts/{queued['id']}/likes", headers=AUTH).status_code == 201
        assert (
            httpx.get(f"{url}/prompts/{queued['id']}", headers=AUTH).json()
            == httpx.get(f"{url}/tunes/1/prompts/{queued['id']}", headers=AUTH).json()
        )

        # A queued prompt: its job is canceled, then it goes with its likes and job.
        response = httpx.delete(f"{url}/prompts/{queued['id']}", headers=AUTH)
        assert response.status_code == 200 and response.json() == {"message": "Prompt successfully deleted"}
        assert httpx.get(f"{url}/prompts/{queued['id']}", headers=AUTH).status_code == 404
        assert studio.store.get_prompt(queued["id"]) is None
        assert studio.store.latest_job("generate", queued["id"]) is None
        assert studio.store.count_likes(queued["id"]) == 0
        assert all(row["counter"] == row["likes_count"] for row in studio.store.recount_prompt_likes())
        assert httpx.delete(f"{url}/prompts/{queued['id']}", headers=AUTH).status_code == 404
        assert httpx.delete(f"{url}/prompts/{scoped['id']}").status_code == 401

        # The tune-scoped path checks that the prompt is the tune's.
        wrong = httpx.delete(f"{url}/tunes/690204/prompts/{scoped['id']}", headers=AUTH)
        assert wrong.status_code == 404 and wrong.json()["field"] == "prompt_id"
        assert studio.store.get_prompt(scoped["id"]) is not None
        assert httpx.delete(f"{url}/tunes/1/prompts/{scoped['id']}", headers=AUTH).status_code == 200
        assert httpx.get(f"{url}/tunes/1/prompts/{scoped['id']}", headers=AUTH).status_code == 404

        # A finished prompt: its image leaves the disk and the public image area.
        studio.run_pending()
        done = httpx.get(f"{url}/prompts/{finished['id']}", headers=AUTH).json()
        [image] = done["images"]
        assert done["status"] == "SUCCESS" and httpx.get(image).status_code == 200
        [row] = studio.store.prompt_images(finished["id"])
        assert httpx.delete(f"{url}/tunes/1/prompts/{finished['id']}", headers=AUTH).status_code == 200
        assert httpx.get(image).status_code == 404 and not studio.files.path(row["path"]).exists()
        assert httpx.get(f"{url}/tunes/1/prompts", headers=AUTH).json() == []


def test_run_pack_posts_prompts_callback_once_all_its_prompts_are_done(tmp_path, demo_model_dir, site):
    """Tunes still waiting to train: their pack prompts wait too, so canceling them one by one
    shows the callback waits for the last one, and then carries every prompt of the run."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, allow_private_urls=True))
    try:
        pack = studio.get_pack("pet-portraits")
        cat, dog = pack["prompts_per_class"]["cat"], pack["prompts_per_class"]["dog"]
        tom = studio.store.add_tune({"title": "Tom", "name": "cat", "token": "sks", "model_type": "lora"})
        rex = studio.store.add_tune({"title": "Rex", "name": "dog", "token": "ohwx", "model_type": "lora"})
        made = studio.run_pack(
            pack["id"],
            [tom, rex],
            prompt_ids=[cat[0]["id"], dog[0]["id"]],
            prompts_callback=f"{site.url}/all?run=7",
        )
        assert [p["status"] for p in made] == ["QUEUING", "QUEUING"]
        # Had the first cancel sent it, the one callback would show the second prompt QUEUING.
        for prompt in made:
            studio.cancel_prompt(prompt["id"])
        assert studio.store.db["prompt_runs"].count == 1
        studio.delete_tune(tom)
        assert studio.store.db["prompt_runs"].count == 1  # rex's prompt is still in the run
        studio.delete_tune(rex)
        assert studio.store.db["prompt_runs"].count == 0  # its last prompt gone, the run goes too
    finally:
        studio.close()  # sends the callbacks already queued
    [(path, body)] = site.callbacks("/all")
    assert path == "/all?run=7"
    assert [(p["id"], p["tune_id"], p["status"]) for p in body] == [
        (made[0]["id"], tom, "CANCELED"),
        (made[1]["id"], rex, "CANCELED"),
    ]


def test_run_pack_refuses_a_bad_prompts_callback_before_making_prompts(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        owner = env_key_user(KEY)  # the key's own tune: others' tunes are not found at all
        tune = studio.store.add_tune(
            {"title": "Tom", "name": "cat", "token": "sks", "model_type": "lora", "owner": owner}
        )
        body = {"tune": {"tune_ids": [tune], "prompts_callback": "ftp://example.com/x"}}
        response = httpx.post(f"{url}/p/pet-portraits/tunes", json=body, headers=AUTH)
        assert response.status_code == 422 and response.json()["field"] == "prompts_callback"
        assert httpx.get(f"{url}/tunes/{tune}/prompts", headers=AUTH).json() == []


@pytest.mark.slow
def test_pack_run_over_http_then_ckpt_url_downloads_the_lora(tmp_path, demo_model_dir, site):
    """End to end on the demo model: a fast LoRA tune trains while a pack run waits on it; the
    run's prompts callback arrives once with every prompt done, and the trained tune's ckpt_url
    downloads a safetensors LoRA (with the key only)."""
    with live_studio(tmp_path / "home", demo_model_dir, api_keys=(KEY,)) as (url, studio):
        tune = _tune(url, "Rachel", ("rachel",))
        woman = httpx.get(f"{url}/p/corporate-headshots", headers=AUTH).json()["prompts_per_class"]["woman"]
        body = {
            "tune": {
                "tune_ids": [tune["id"]],
                "prompt_ids": [woman[0]["id"], woman[1]["id"]],
                "prompts_callback": f"{site.url}/hooks/all?user=3",
                "prompt_attributes": {"callback": f"{site.url}/hooks/one"},
            }
        }
        response = httpx.post(f"{url}/p/corporate-headshots/tunes", json=body, headers=AUTH, timeout=60)
        assert response.status_code == 201, response.text
        made = response.json()
        assert [p["orig_prompt_id"] for p in made] == [woman[0]["id"], woman[1]["id"]]

        [(path, posted)] = wait_for(lambda: site.callbacks("/hooks/all"), what="the prompts callback")
        assert path == "/hooks/all?user=3"
        assert sorted(p["id"] for p in posted) == sorted(p["id"] for p in made)
        assert all(p["status"] == "SUCCESS" and len(p["images"]) == 1 for p in posted)
        assert all(image.startswith(f"{url}/images/") for p in posted for image in p["images"])
        wait_for(lambda: len(site.callbacks("/hooks/one")) == 2, what="both prompt callbacks")

        trained = httpx.get(f"{url}/tunes/{tune['id']}", headers=AUTH).json()
        assert trained["status"] == "SUCCESS"
        assert trained["ckpt_url"] == f"{url}/tunes/{tune['id']}/lora.safetensors"
        assert trained["ckpt_urls"] == [trained["ckpt_url"]]
        assert httpx.get(trained["ckpt_url"]).status_code == 401
        response = httpx.get(trained["ckpt_url"], headers=AUTH)
        assert response.status_code == 200
        assert response.content == studio.lora_file(tune["id"]).read_bytes()
        (size,) = struct.unpack("<Q", response.content[:8])
        header = json.loads(response.content[8 : 8 + size])
        assert any(name.startswith("lora_unet_") for name in header)  # kohya layout
    assert len(site.callbacks("/hooks/all")) == 1  # once, even after every follow-up ran
