"""Flux acceptance through the REST API, as a client would, offline on a fresh home: a LoRA tune
(`POST /tunes`, model_type=lora) on each embedded Flux demo trains to `trained_at`; then on it
`<lora:ID:1>` and `<lora:ID:0>` with one seed give different images, the same seed twice the
same image, and each PNG carries A1111 parameters naming the model."""

from __future__ import annotations

import io

import httpx
import pytest
from api_helpers import WOMEN, live_studio, photo_files, wait_for
from PIL import Image

from studio.prompts import parse_parameters

pytestmark = pytest.mark.slow

DEMOS = {"flux1": (6, "FLUX.1 demo (embedded, tiny)"), "flux2": (7, "FLUX.2 [klein] demo (embedded, tiny)")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dir, flux_demo_dirs):
    home = tmp_path_factory.mktemp("flux-api") / "home"
    with live_studio(home, demo_model_dir, flux_demos=flux_demo_dirs) as (url, studio):
        yield url, studio


def _train(url: str, family: str) -> dict:
    base_id, _title = DEMOS[family]
    fields = {
        "tune[title]": f"ann on {family}",
        "tune[name]": "woman",
        "tune[token]": "ohwx",
        "tune[model_type]": "lora",
        "tune[base_tune_id]": str(base_id),
        # Novita's largest learning rate moves the random tiny klein less per step than FLUX.1.
        "tune[max_train_steps]": {"flux1": "100", "flux2": "300"}[family],
        "tune[resolution]": "64",
        "tune[rank]": "16",
        "tune[learning_rate]": "0.0002",
        "tune[checkpointing_steps]": "0",
    }
    response = httpx.post(f"{url}/tunes", data=fields, files=photo_files(WOMEN), timeout=60)
    assert response.status_code == 201, response.text
    tune = response.json()
    assert tune["family"] == family and tune["base_tune_id"] == base_id and tune["model_type"] == "lora"

    def trained():
        current = httpx.get(f"{url}/tunes/{tune['id']}").json()
        assert current["status"] not in ("FAILED", "CANCELED"), current["message"]
        return current if current["trained_at"] else None

    return wait_for(trained, timeout=600, what=f"the {family} LoRA to train")


def _image(url: str, tune_id: int, text: str, seed: int) -> tuple[bytes, dict]:
    """One 64 px image of `text` on tune `tune_id`: its PNG bytes and A1111 parameters."""
    body = {"prompt": {"text": text, "seed": seed, "steps": 4, "w": 64, "h": 64, "num_images": 1}}
    response = httpx.post(f"{url}/tunes/{tune_id}/prompts", json=body, timeout=60)
    assert response.status_code == 201, response.text
    prompt_id = response.json()["id"]

    def done():
        prompt = httpx.get(f"{url}/tunes/{tune_id}/prompts/{prompt_id}").json()
        assert prompt["status"] not in ("FAILED", "CANCELED"), prompt["message"]
        return prompt if prompt["images"] else None

    prompt = wait_for(done, timeout=300, what="the prompt's image")
    png = httpx.get(prompt["images"][0]).content
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (64, 64)
        parameters = parse_parameters(image.info["parameters"])
    return png, parameters


def _pixels(png: bytes):
    import numpy as np

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_a_flux_lora_trains_through_the_api_and_changes_the_image(server, family, tmp_path):
    url, _studio = server
    tune = _train(url, family)
    assert tune["status"] == "SUCCESS" and tune["ckpt_url"]
    _base_id, model_title = DEMOS[family]
    token = f"<lora:{tune['id']}:1>"
    with_lora, parameters = _image(url, tune["id"], f"portrait of ohwx woman {token}", seed=5)
    again, _ = _image(url, tune["id"], f"portrait of ohwx woman {token}", seed=5)
    without, _ = _image(url, tune["id"], f"portrait of ohwx woman <lora:{tune['id']}:0>", seed=5)
    assert abs(_pixels(with_lora) - _pixels(again)).max() <= 2  # the same seed: the same image
    difference = abs(_pixels(with_lora) - _pixels(without))
    print(family, "LoRA changes pixels by", difference.mean(), "on average,", difference.max(), "at most")
    assert difference.max() > 2  # the LoRA changes it
    assert parameters["model"] == model_title and parameters["seed"] == 5 and parameters["steps"] == 4
    assert token in parameters["prompt"]
    # The LoRA downloads in kohya layout, naming Flux in its metadata.
    from safetensors import safe_open

    download = httpx.get(tune["ckpt_url"], timeout=60)
    assert download.status_code == 200
    path = tmp_path / "lora.safetensors"
    path.write_bytes(download.content)
    with safe_open(str(path), "pt") as lora:
        assert lora.metadata()["modelspec.architecture"].startswith("flux-")
        keys = lora.keys()
    assert any(key.startswith("lora_unet_") for key in keys)
