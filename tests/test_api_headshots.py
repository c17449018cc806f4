"""Replays what the open-source headshots starter (astriaai/headshots-starter) sends and expects,
request for request, against the whole app on a free port: `POST /tunes` as JSON with
`image_urls`, `branch: "fast"`, a callback and two `prompts_attributes` of 8 images; then the
tune callback and one callback per prompt, whose image URLs must download."""

import io

import httpx
import pytest
from api_helpers import WOMEN, live_studio, wait_for
from PIL import Image


@pytest.mark.slow
def test_headshots_starter_flow_end_to_end(tmp_path, demo_model_dir, site):
    image_urls = site.add_photos(WOMEN + ("rachel",))  # the starter lets people upload one photo twice
    secret = "s3cret"
    train_webhook = f"{site.url}/astria/train-webhook?user_id=u-42&model_id=7&webhook_secret={secret}"
    prompt_webhook = f"{site.url}/astria/prompt-webhook?user_id=u-42&model_id=7&webhook_secret={secret}"
    body = {
        "tune": {
            "title": "Jane headshots",
            # Realistic Vision 5.1, hard-coded by the starter; branch=fast runs on the demo model.
            "base_tune_id": 690204,
            "name": "woman",
            "branch": "fast",
            "token": "ohwx",
            "image_urls": image_urls,
            "callback": train_webhook,
            "prompts_attributes": [
                {
                    "text": "portrait of ohwx woman wearing a business suit, professional photo, white background, "
                    "Amazing Details, Best Quality, Masterpiece, dramatic lighting highly detailed, analog photo",
                    "callback": prompt_webhook,
                    "num_images": 8,
                },
                {
                    "text": "8k close up linkedin profile picture of ohwx woman, professional jack suite, "
                    "professional headshots, photo-realistic, 4k, high-resolution image, workplace settings",
                    "callback": prompt_webhook,
                    "num_images": 8,
                },
            ],
        }
    }
    with live_studio(tmp_path / "home", demo_model_dir, api_keys=("sd_XXXXXX",)) as (url, _studio):
        headers = {"Authorization": "Bearer sd_XXXXXX", "Content-Type": "application/json"}
        response = httpx.post(f"{url}/tunes", json=body, headers=headers, timeout=60)
        assert response.status_code == 201, response.text  # the starter treats anything else as a failure
        tune = response.json()
        assert (tune["title"], tune["name"], tune["token"], tune["branch"]) == (
            "Jane headshots",
            "woman",
            "ohwx",
            "fast",
        )
        assert (
            tune["model_type"] == "lora" and tune["status"] in ("QUEUING", "TRAINING") and isinstance(tune["id"], int)
        )
        assert tune["trained_at"] is None and tune["created_at"].endswith("Z")

        # The tune callback: {"tune": {...}} at the starter's URL, its query string intact.
        [(path, posted)] = wait_for(lambda: site.callbacks("/astria/train-webhook"), what="the tune callback")
        assert path == f"/astria/train-webhook?user_id=u-42&model_id=7&webhook_secret={secret}"
        assert posted["tune"]["id"] == tune["id"] and posted["tune"]["status"] == "SUCCESS"
        assert posted["tune"]["trained_at"]
        assert posted["tune"] == {
            **httpx.get(f"{url}/tunes/{tune['id']}", headers=headers).json(),
            "updated_at": posted["tune"]["updated_at"],
        }

        # One callback per prompt, each with 8 absolute image URLs that download.
        prompts = wait_for(
            lambda: len(site.callbacks("/astria/prompt-webhook")) == 2 and site.callbacks("/astria/prompt-webhook"),
            what="two prompt callbacks",
        )
        assert {p for p, _ in prompts} == {f"/astria/prompt-webhook?user_id=u-42&model_id=7&webhook_secret={secret}"}
        texts = {a["text"] for a in body["tune"]["prompts_attributes"]}
        assert {b["prompt"]["text"] for _, b in prompts} == texts
        for _, posted in prompts:
            prompt = posted["prompt"]
            assert prompt["tune_id"] == tune["id"] and prompt["status"] == "SUCCESS" and len(prompt["images"]) == 8
            assert len(set(prompt["images"])) == 8
            for image_url in prompt["images"]:
                assert isinstance(image_url, str) and image_url.startswith(f"{url}/images/")
                image = httpx.get(image_url)
                assert image.status_code == 200 and image.headers["content-type"] == "image/png"
                assert Image.open(io.BytesIO(image.content)).size == (64, 64)
            # The same object GET returns.
            fetched = httpx.get(f"{url}/tunes/{tune['id']}/prompts/{prompt['id']}", headers=headers).json()
            assert fetched["images"] == prompt["images"] and fetched["status"] == "SUCCESS"
        listed = httpx.get(f"{url}/tunes/{tune['id']}/prompts", headers=headers).json()
        assert sorted(p["id"] for p in listed) == sorted(b["prompt"]["id"] for _, b in prompts)
