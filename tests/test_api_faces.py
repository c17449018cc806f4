"""Multi-person prompts, masks and the face pass through the REST API, as a client sends them:
a `BREAK` prompt with two FaceID tunes details each of two real faces with its own tune; the
mask comes as a file or a URL; a bad mask is a 4xx naming it. The demo model draws no faces, so
the picture is two photos side by side with a mask that repaints a corner only, which keeps the
faces for the detailer to find."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from api_helpers import live_studio, wait_for
from photos import encode
from PIL import Image
from test_detailer import two_people

from studio.prompts import parse_parameters

DEMO = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dir):
    home = tmp_path_factory.mktemp("faces") / "home"
    with live_studio(home, demo_model_dir, face_backend="dlib") as (url, studio):
        yield url, studio


def faceid_tune(studio, seed: int, title: str) -> int:
    """A trained FaceID tune: a random unit embedding of dlib's size."""
    vector = np.random.RandomState(seed).randn(128).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, vector / np.linalg.norm(vector))
    return studio.store.add_tune(
        {
            "title": title,
            "name": "woman",
            "model_type": "faceid",
            "status": "SUCCESS",
            "face_backend": "dlib",
            "embedding_path": studio.files.put(buffer.getvalue(), "embeddings", ".npy"),
        }
    )


def corner_mask(size=(256, 128)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, size[1] - 24, 24, size[1]))
    return mask


def post(url: str, text: str, *, image=None, mask=None, **fields) -> httpx.Response:
    data = {"text": text, "seed": "4", "steps": "3", "w": "256", "h": "128", "num_images": "1"}
    data.update({"denoising_strength": "0.9", "scheduler": "euler", **fields})
    files = {}
    if image is not None:
        files["prompt[input_image]"] = ("in.png", encode(image, "PNG"), "image/png")
    if mask is not None:
        files["prompt[mask_image]"] = (
            "mask.png",
            mask if isinstance(mask, bytes) else encode(mask, "PNG"),
            "image/png",
        )
    form = {f"prompt[{key}]": value for key, value in data.items()}
    return httpx.post(f"{url}/tunes/{DEMO}/prompts", data=form, files=files or None, timeout=60)


def finished(url: str, prompt_id: int) -> dict:
    def done():
        prompt = httpx.get(f"{url}/tunes/{DEMO}/prompts/{prompt_id}").json()
        assert prompt["status"] not in ("FAILED", "CANCELED"), prompt["message"]
        return prompt if prompt["images"] else None

    return wait_for(done, what=f"prompt {prompt_id}")


def picture(image_url: str) -> Image.Image:
    return Image.open(io.BytesIO(httpx.get(image_url).content))


def test_a_two_person_break_prompt_details_each_face_with_its_own_tune(server):
    url, studio = server
    anna, ben = faceid_tune(studio, 1, "anna"), faceid_tune(studio, 2, "ben")
    text = f"two friends on a sofa BREAK <faceid:{anna}:1> woman, smiling BREAK <faceid:{ben}:1> man"
    response = post(url, text, image=two_people(), mask=corner_mask())
    assert response.status_code == 201, response.text
    prompt = finished(url, response.json()["id"])
    image = picture(prompt["images"][0])
    detailing = parse_parameters(image.info["parameters"])["extra"]["Face detailing"]
    first, second = detailing.split(": ", 1)[1].split("; ")
    assert first.startswith("face 1 at") and first.endswith(f"by faceid {anna}")
    assert second.startswith("face 2 at") and second.endswith(f"by faceid {ben}")
    assert int(second.split(" at ")[1].split(":")[0]) >= 128  # Ben's face is the right one
    # The faces were re-drawn; the rest of the picture, outside the mask, is the input's.
    change = np.abs(np.asarray(image.convert("RGB"), float) - np.asarray(two_people(), float)).max(axis=2)
    assert change[30:90, 15:75].mean() > 10 and change[30:90, 165:225].mean() > 10
    assert change[:, 118:138].max() == 0
    assert prompt["warnings"] == []

    # Three people, two faces: the third is a warning on the prompt, not a failure.
    carl = faceid_tune(studio, 3, "carl")
    three = f"{text} BREAK <faceid:{carl}:1> man"
    prompt = finished(url, post(url, three, image=two_people(), mask=corner_mask()).json()["id"])
    assert any("names 3 people but 2 faces" in warning for warning in prompt["warnings"])


def test_a_mask_from_a_url_repaints_the_masked_part_only(server, site):
    url, _studio = server
    site.files["/mask.png"] = encode(corner_mask().convert("1"), "PNG")
    response = post(url, "a photo", image=two_people(), mask_image_url=f"{site.url}/mask.png", inpaint_faces="false")
    assert response.status_code == 201, response.text
    image = picture(finished(url, response.json()["id"])["images"][0])
    change = np.abs(np.asarray(image.convert("RGB"), float) - np.asarray(two_people(), float)).max(axis=2)
    assert change[-24:, :24].mean() > 10 and change[:-24, :].max() == 0 and change[:, 24:].max() == 0
    assert "Face detailing" not in parse_parameters(image.info["parameters"])["extra"]


@pytest.mark.parametrize(
    ("mask", "fields", "with_image", "expected"),
    [
        (corner_mask((128, 128)), {}, True, "mask_image is 128x128 but input_image is 256x128"),
        (b"not an image", {}, True, "mask_image is not a readable"),
        (corner_mask(), {}, False, "mask_image needs the input_image"),
        (corner_mask(), {"controlnet": "pose"}, True, "cannot be combined"),
    ],
)
def test_a_bad_mask_is_a_4xx_naming_it(server, mask, fields, with_image, expected):
    url, _studio = server
    response = post(url, "a photo", image=two_people() if with_image else None, mask=mask, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "mask_image" and expected in response.json()["error"]
