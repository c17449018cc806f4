"""Characteristics reach API tunes and their pack prompts: the photos of a tune made over HTTP
are inspected as the Photos tab inspects a set (eye colour and hair colour on the offline dlib
backend), the request's own values win, and a placeholder nobody could fill leaves a warning on
the prompt instead of vanishing."""

import httpx
from api_helpers import live_studio
from photos import ASTRONAUT_EYES, astronaut, encode, mirrored, with_iris_hue

from studio.packs import PackPromptRequest, PackRequest, missing_warning


def _astronauts(hue: int | None = None) -> list:
    face = astronaut() if hue is None else with_iris_hue(astronaut(), ASTRONAUT_EYES, hue)
    return [
        ("tune[images][]", (f"{n}.png", encode(image, "PNG"), "image/png"))
        for n, image in enumerate([face, mirrored(face)])
    ]


def test_api_tunes_get_the_characteristics_found_in_their_photos(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, face_backend="dlib") as (url, _studio):
        form = {"tune[title]": "Eileen", "tune[name]": "woman", "tune[branch]": "fast"}
        response = httpx.post(f"{url}/tunes", data=form, files=_astronauts(), timeout=60)
        assert response.status_code == 201, response.text
        found = response.json()["characteristics"]
        assert (found["eye_color"], found["hair_color"]) == ("brown eyes", "brown hair")
        assert "name" not in found and "age" not in found  # dlib tells no age

        form = {**form, "tune[title]": "Eileen blue", "tune[characteristics][hair_color]": "red hair"}
        response = httpx.post(f"{url}/tunes", data=form, files=_astronauts(hue=215), timeout=60)
        found = response.json()["characteristics"]
        assert (found["eye_color"], found["hair_color"]) == ("blue eyes", "red hair")  # the request's win


def test_a_pack_tune_fills_detected_placeholders_and_warns_of_the_rest(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, face_backend="dlib") as (url, studio):
        pack = studio.create_pack(PackRequest(title="Eyes", classes=("woman",)))
        template = "portrait of {{token}} {{name}}, {{eye_color}}, {{age}}, {{facial_hair}}, studio light"
        studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", template, num_images=1))
        form = {"tune[title]": "Eileen", "tune[name]": "woman", "tune[branch]": "fast"}
        response = httpx.post(f"{url}/p/{pack['slug']}/tunes", data=form, files=_astronauts(), timeout=60)
        assert response.status_code == 201, response.text
        [prompt] = httpx.get(f"{url}/tunes/{response.json()['id']}/prompts").json()
        assert prompt["text"] == "portrait of ohwx woman, brown eyes, studio light"
        assert prompt["warnings"] == [missing_warning(["age", "facial_hair"])]
        assert "{{age}}, {{facial_hair}}" in prompt["warnings"][0]
