"""Astria's pack flow over HTTP: `GET /packs` -> `POST /p/:id/tunes` -> `GET /tunes/:id/prompts`
-> `POST /prompts/:id/likes`, on a starter pack and the demo model (mock mode)."""

import httpx
import pytest
from api_helpers import WOMEN, live_studio, photo_files, wait_for


@pytest.mark.slow
def test_pack_flow_tune_prompts_and_likes(tmp_path, demo_model_dir, site):
    with live_studio(tmp_path / "home", demo_model_dir) as (url, _studio):
        listed = httpx.get(f"{url}/packs").json()
        assert {"corporate-headshots", "pet-portraits"} <= {p["slug"] for p in listed}
        pack = next(p for p in listed if p["slug"] == "corporate-headshots")
        assert (pack["token"], pack["likes_count"], pack["rating"]) == ("ohwx", 0, "new")
        detail = httpx.get(f"{url}/p/{pack['id']}").json()
        assert detail == httpx.get(f"{url}/p/corporate-headshots").json()
        women = detail["prompts_per_class"]["woman"]
        assert len(women) == 4 and detail["costs"]["woman"] == {"cost": 0, "num_images": 4}
        assert all("{{" in p["text"] for p in women)

        form = {
            "tune[title]": "Jane Doe - pack",
            "tune[name]": "woman",
            "tune[branch]": "fast",
            "tune[callback]": f"{site.url}/webhooks/astria?user_id=1",
            "tune[characteristics][eye_color]": "green eyes",
            "tune[prompt_attributes][callback]": f"{site.url}/webhooks/astria_prompts?user_id=1",
        }
        response = httpx.post(f"{url}/p/{pack['id']}/tunes", data=form, files=photo_files(WOMEN), timeout=60)
        assert response.status_code == 201, response.text
        tune = response.json()
        # The request's eye colour wins over what the photos show; they add the rest.
        assert (tune["name"], tune["token"], tune["characteristics"]["eye_color"]) == ("woman", "ohwx", "green eyes")

        def all_done():
            prompts = httpx.get(f"{url}/tunes/{tune['id']}/prompts").json()
            assert not [p["message"] for p in prompts if p["status"] in ("FAILED", "CANCELED")]
            return prompts if prompts and all(p["status"] == "SUCCESS" for p in prompts) else None

        prompts = wait_for(all_done, what="the pack's prompts")
        assert sorted(p["orig_prompt_id"] for p in prompts) == sorted(p["id"] for p in women)
        assert all(len(p["images"]) == 1 and "ohwx woman" in p["text"] and "{{" not in p["text"] for p in prompts)
        assert any("green eyes" in p["text"] for p in prompts)
        callbacks = wait_for(lambda: len(site.callbacks("/webhooks/astria_prompts")) == 4, what="4 prompt callbacks")
        assert callbacks and site.callbacks("/webhooks/astria")[0][1]["tune"]["status"] == "SUCCESS"

        liked = prompts[0]
        for _ in range(2):  # liking twice counts once
            response = httpx.post(f"{url}/prompts/{liked['id']}/likes")
            assert response.status_code == 201 and response.json()["likes_count"] == 1
        again = httpx.get(f"{url}/tunes/{tune['id']}/prompts/{liked['id']}").json()
        assert (again["likes_count"], again["liked"]) == (1, True)
        ranked = httpx.get(f"{url}/packs").json()
        assert ranked[0]["slug"] == "corporate-headshots" and ranked[0]["likes_count"] == 1 and ranked[0]["score"] > 0
        assert httpx.get(f"{url}/p/corporate-headshots").json()["images_shown"] == 4
        response = httpx.delete(f"{url}/prompts/{liked['id']}/likes")
        assert response.status_code == 200 and response.json() == {
            "prompt_id": liked["id"],
            "image_idx": None,
            "liked": False,
            "likes_count": 0,
        }
        assert httpx.post(f"{url}/prompts/999999/likes").status_code == 404

        # The same pack on the existing tune, one chosen prompt only: answers the new prompts.
        first = women[0]["id"]
        response = httpx.post(
            f"{url}/p/{pack['id']}/tunes", json={"tune": {"tune_ids": [tune["id"]], "prompt_ids": [first]}}
        )
        assert response.status_code == 201, response.text
        [made] = response.json()
        assert (made["tune_id"], made["orig_prompt_id"]) == (tune["id"], first)
        refused = httpx.post(f"{url}/p/pet-portraits/tunes", json={"tune": {"tune_ids": [tune["id"]]}})
        assert refused.status_code == 422 and refused.json()["field"] == "name"
