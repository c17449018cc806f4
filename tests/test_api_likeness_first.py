"""The REST API's likeness-first fields: captions and the face-focused loss on tune create and
the captions routes, `best_of` on prompts."""

import httpx
from api_helpers import live_studio
from photos import encode, friend


def test_tune_captions_and_face_loss_through_the_api(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        files = [
            ("tune[images][]", ("a.jpg", encode(friend("rachel")))),
            ("tune[images][]", ("b.jpg", encode(friend("monica")))),
        ]
        data = {
            "tune[title]": "Rachel",
            "tune[name]": "woman",
            "tune[branch]": "fast",
            "tune[face_loss_weight]": "3",
            "tune[captions]": '["ohwx woman, laughing", null]',
        }
        response = httpx.post(f"{url}/tunes", data=data, files=files, timeout=120)
        assert response.status_code == 201, response.text
        tune = response.json()
        assert (tune["face_loss_weight"], tune["background_loss_weight"]) == (3.0, 0.5)
        assert tune["args"]["training"]["face_loss_weight"] == 3.0
        first, second = tune["captions"]
        assert first["caption"] == "ohwx woman, laughing" and second["caption"].startswith("ohwx woman, ")

        listed = httpx.get(f"{url}/tunes/{tune['id']}/captions", timeout=30).json()
        assert [c["caption"] for c in listed] == [first["caption"], second["caption"]]
        edited = httpx.patch(
            f"{url}/tunes/{tune['id']}/captions", json={"captions": {str(second["photo_id"]): "ohwx woman, red scarf"}}
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()[1]["caption"] == "ohwx woman, red scarf"
        refused = httpx.patch(f"{url}/tunes/{tune['id']}/captions", json={"captions": {"999": "ohwx woman"}})
        assert refused.status_code == 422 and refused.json()["field"] == "captions"

        bad = httpx.post(f"{url}/tunes/{tune['id']}/prompts", json={"prompt": {"text": "a photo", "best_of": 9}})
        assert bad.status_code == 422 and bad.json()["field"] == "best_of"
        made = httpx.post(
            f"{url}/tunes/{tune['id']}/prompts", json={"prompt": {"text": "a photo", "best_of": 2, "num_images": 1}}
        )
        assert made.status_code == 201, made.text
        assert studio.store.get_prompt(made.json()["id"])["params"]["best_of"] == 2
