"""Instant reference identities and role references through the REST API, as a client would,
offline on the tiny FLUX.2 [klein] demo: a FaceID tune on it is a reference tune, ready at once
with its best face crops kept; `<faceid:ID:1>` passes them to the model (the image depends on
them) and gets likeness scores; an `outfit` reference (a file, or a URL fetched like
`image_urls`) changes the image with the same seed and leaving it out restores it; an unknown
role is a 422 naming it; FLUX.1 refuses FaceID tunes and references naming what works."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from api_helpers import WOMEN, live_studio, photo_files, wait_for
from photos import encode, friend
from PIL import Image

from studio.prompts import parse_parameters

pytestmark = pytest.mark.slow

FLUX1_DEMO, FLUX2_DEMO = 6, 7


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dir, flux_demo_dirs):
    home = tmp_path_factory.mktemp("references") / "home"
    with live_studio(home, demo_model_dir, flux_demos=flux_demo_dirs) as (url, studio):
        yield url, studio


@pytest.fixture(scope="module")
def reference_tune(server) -> dict:
    url, _studio = server
    fields = {
        "tune[title]": "ann, instant",
        "tune[name]": "woman",
        "tune[model_type]": "faceid",
        "tune[base_tune_id]": str(FLUX2_DEMO),
    }
    response = httpx.post(f"{url}/tunes", data=fields, files=photo_files(WOMEN), timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def _outfit() -> bytes:
    rng = np.random.default_rng(7)
    return encode(Image.fromarray((rng.random((96, 96, 3)) * 255).astype("uint8")), "PNG")


def _post(url: str, text: str, references=(), **fields):
    data = {"prompt[text]": text, "prompt[seed]": "3", "prompt[steps]": "2", "prompt[w]": "64", "prompt[h]": "64"}
    data["prompt[num_images]"] = "1"
    data.update({f"prompt[{k}]": v for k, v in fields.items()})
    # Multipart parts in order (a file with no name is a plain field): each role, then its url or file.
    parts = [(key, (None, value)) for key, value in data.items()]
    for role, content in references:
        parts.append(("prompt[references][][role]", (None, role)))
        if isinstance(content, str):
            parts.append(("prompt[references][][url]", (None, content)))
        else:
            parts.append(("prompt[references][][image]", (f"{role}.png", content, "image/png")))
    return httpx.post(f"{url}/tunes/{FLUX2_DEMO}/prompts", files=parts, timeout=60)


def _image(url: str, text: str, references=()) -> tuple[np.ndarray, dict, dict]:
    response = _post(url, text, references)
    assert response.status_code == 201, response.text
    prompt_id = response.json()["id"]

    def done():
        prompt = httpx.get(f"{url}/prompts/{prompt_id}").json()
        assert prompt["status"] not in ("FAILED", "CANCELED"), prompt["message"]
        return prompt if prompt["images"] else None

    prompt = wait_for(done, timeout=300, what="the prompt's image")
    with Image.open(io.BytesIO(httpx.get(prompt["images"][0]).content)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16), parse_parameters(image.info["parameters"]), prompt


def test_a_faceid_tune_on_klein_is_a_reference_tune_ready_at_once(server, reference_tune):
    _url, studio = server
    tune = reference_tune
    assert (tune["status"], tune["model_type"], tune["family"]) == ("SUCCESS", "faceid", "flux2")
    assert tune["trained_at"] and tune["base_tune_id"] == FLUX2_DEMO
    kept = studio.store.get_tune(tune["id"])["args"]["references"]
    # Three different women: the report card's identity check leaves the odd one out.
    photos = {row["id"] for row in studio.store.tune_photos(tune["id"])}
    assert 1 <= len(kept) < len(WOMEN) and {k["photo_id"] for k in kept} <= photos
    assert all(len(k["box"]) == 4 for k in kept)


def test_faceid_passes_the_crops_and_roles_change_the_image_with_the_same_seed(server, reference_tune, site):
    url, studio = server
    kept = len(studio.store.get_tune(reference_tune["id"])["args"]["references"])
    token = f"<faceid:{reference_tune['id']}:1>"
    plain, _, _ = _image(url, "portrait")
    face, parameters, prompt = _image(url, f"{token} portrait")
    assert not np.array_equal(face, plain)  # the crops reached the pipeline
    assert len(prompt["likeness"]) == 1
    # The API's likeness carries the copy-paste flag (the tiny demo draws no face to flag).
    assert (prompt["likeness"][0]["copy_paste"], prompt["likeness"][0]["reference_similarity"]) == (False, None)
    assert parameters["extra"]["Reference roles"] == ", ".join(["face"] * kept)
    assert parameters["extra"]["Reference instructions"].startswith("Show the person from image")
    dressed, parameters, _ = _image(url, f"{token} portrait", [("outfit", _outfit())])
    assert not np.array_equal(dressed, face)
    assert parameters["extra"]["Reference roles"] == ", ".join(["face"] * kept + ["outfit"])
    assert f"wearing the outfit from image {kept + 1}" in parameters["extra"]["Reference instructions"]
    again, _, _ = _image(url, f"{token} portrait")
    assert np.array_equal(again, face)
    site.files["/outfit.png"] = _outfit()
    by_url, _, _ = _image(url, f"{token} portrait", [("outfit", f"{site.url}/outfit.png")])
    assert np.array_equal(by_url, dressed)
    fewer, parameters, _ = _image(url, f"<faceid:{reference_tune['id']}:0.1> portrait")
    assert parameters["extra"]["Reference roles"] == "face" and not np.array_equal(fewer, face)


def test_an_unknown_role_is_a_422_naming_it(server):
    url, studio = server
    before = len(studio.list_prompts())
    response = _post(url, "portrait", [("hat", _outfit())])
    assert response.status_code == 422 and response.json()["field"] == "references"
    assert "'hat'" in response.json()["error"] and "outfit" in response.json()["error"]
    assert len(studio.list_prompts()) == before


def test_flux1_refuses_faceid_tunes_and_references_naming_what_works(server):
    url, _studio = server
    files = [("tune[images][]", (f"{n}.jpg", encode(friend(n)), "image/jpeg")) for n in ("rachel", "monica")]
    data = {"tune[title]": "ann on flux1", "tune[name]": "woman", "tune[model_type]": "faceid"}
    response = httpx.post(f"{url}/tunes", data={**data, "tune[base_tune_id]": str(FLUX1_DEMO)}, files=files)
    assert response.status_code == 422 and response.json()["field"] == "model_type"
    assert "FLUX.2 [klein]" in response.json()["error"]
    parts = [("prompt[text]", (None, "portrait")), ("prompt[references][][role]", (None, "outfit"))]
    parts.append(("prompt[references][][image]", ("o.png", _outfit(), "image/png")))
    response = httpx.post(f"{url}/tunes/{FLUX1_DEMO}/prompts", files=parts)
    assert response.status_code == 422 and response.json()["field"] == "references"
    assert "FLUX.2 [klein]" in response.json()["error"]


def test_a_reference_url_on_a_private_address_is_refused_like_image_urls(
    tmp_path, demo_model_dir, flux_demo_dirs, site
):
    site.files["/outfit.png"] = _outfit()
    home = tmp_path / "home"
    with live_studio(home, demo_model_dir, worker=False, flux_demos=flux_demo_dirs, allow_private_urls=False) as (
        url,
        studio,
    ):
        response = _post(url, "portrait", [("outfit", f"{site.url}/outfit.png")])
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "references" and "127.0.0.1" in response.json()["error"]
        assert studio.list_prompts() == []


def test_a_prompt_posted_to_the_reference_tune_uses_its_crops_without_a_token(server, reference_tune):
    url, studio = server
    kept = len(studio.store.get_tune(reference_tune["id"])["args"]["references"])
    body = {"prompt": {"text": "portrait", "seed": 3, "steps": 2, "w": 64, "h": 64, "num_images": 1}}
    response = httpx.post(f"{url}/tunes/{reference_tune['id']}/prompts", json=body, timeout=60)
    assert response.status_code == 201, response.text
    prompt_id = response.json()["id"]

    def done():
        prompt = httpx.get(f"{url}/prompts/{prompt_id}").json()
        assert prompt["status"] not in ("FAILED", "CANCELED"), prompt["message"]
        return prompt if prompt["images"] else None

    prompt = wait_for(done, timeout=300, what="the prompt's image")
    with Image.open(io.BytesIO(httpx.get(prompt["images"][0]).content)) as image:
        extra = parse_parameters(image.info["parameters"])["extra"]
    assert extra["Reference roles"] == ", ".join(["face"] * kept) and len(prompt["likeness"]) == 1
