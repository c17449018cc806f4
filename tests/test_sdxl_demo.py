"""The embedded SDXL demo in the gallery, LoRAs trained on it through the queue, and a local
model's family read from its files (a tiny SDXL folder as STUDIO_BASE_MODEL trains as SDXL)."""

import io

import httpx
import numpy as np
import pytest
from api_helpers import live_studio
from test_tunes import generated_photos  # noqa: F401  (a session fixture: textures from the demo model)

from conftest import link_sdxl_demo
from storage.status import SUCCESS
from studio.config import Settings
from studio.core import Studio
from studio.families import family_of_files
from studio.tune_requests import TuneRequest

SDXL_DEMO = 10  # the embedded SDXL demo's gallery id


def _pixels(studio, prompt_id) -> np.ndarray:
    from PIL import Image

    [image] = studio.store.prompt_images(prompt_id)
    return np.asarray(Image.open(io.BytesIO(studio.files.read(image["path"]))), dtype=np.float32) / 255


def _render(studio, tune_id, text) -> np.ndarray:
    prompt = studio.create_prompt(tune_id, {"text": text, "num_images": 1, "seed": 9, "steps": 3, "w": 64, "h": 64})
    studio.run_pending()
    row = studio.store.get_prompt(prompt["id"])
    assert row["status"] == SUCCESS, row
    return _pixels(studio, prompt["id"])


def _train(studio, photos, **changes) -> dict:
    request = TuneRequest(
        **{"title": "Rex", "name": "dog", "seed": 3, "max_train_steps": 4, "resolution": 64, **changes}
    )
    tune = studio.create_tune(request, photos=photos)
    assert studio.run_pending() == 1
    tune = studio.get_tune(tune["id"])
    assert tune["status"] == SUCCESS, studio.store.latest_job("train", tune["id"])
    return tune


@pytest.fixture
def sdxl_studio(tmp_path, demo_model_dir, sdxl_demo_dir):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    link_sdxl_demo(home, sdxl_demo_dir)
    studio = Studio.open(Settings(home=home))
    yield studio
    studio.close()


def test_the_gallery_lists_the_embedded_sdxl_demo(tmp_path, demo_model_dir, sdxl_demo_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, sdxl_demo=sdxl_demo_dir) as (url, _):
        gallery = {m["id"]: m for m in httpx.get(f"{url}/gallery/tunes").json()}
    demo = gallery[SDXL_DEMO]
    assert (demo["family"], demo["embedded"], demo["available"]) == ("sdxl", True, True)
    assert demo["title"] == "SDXL demo (embedded, tiny)"


@pytest.mark.slow
def test_a_lora_trains_on_the_sdxl_demo_and_changes_its_output(sdxl_studio, generated_photos):  # noqa: F811
    tune = _train(sdxl_studio, generated_photos, base_tune_id=SDXL_DEMO)
    assert sdxl_studio.store.get_tune(tune["id"])["family"] == "sdxl"
    base = _render(sdxl_studio, SDXL_DEMO, "ohwx dog")
    lora = _render(sdxl_studio, SDXL_DEMO, f"<lora:{tune['id']}:1> ohwx dog")
    assert base.shape == (64, 64, 3) and np.abs(lora - base).max() > 1 / 255


@pytest.mark.slow
def test_a_local_sdxl_folder_as_the_default_base_model_trains_as_sdxl(
    tmp_path,
    demo_model_dir,
    sdxl_demo_dir,
    generated_photos,  # noqa: F811
):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, base_model=str(sdxl_demo_dir)))
    try:
        default = studio.models.default_base_model()
        assert (default["family"], default["available"], default["family_label"]) == ("sdxl", True, "SDXL")
        tune = _train(studio, generated_photos)
        assert studio.store.get_tune(tune["id"])["family"] == "sdxl"
        base = _render(studio, tune["id"], f"<lora:{tune['id']}:0> ohwx dog")
        lora = _render(studio, tune["id"], f"<lora:{tune['id']}:1> ohwx dog")
        assert np.abs(lora - base).max() > 1 / 255
    finally:
        studio.close()


@pytest.mark.parametrize(
    ("key", "family"),
    [
        ("conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias", "sdxl"),
        ("model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale", "flux1"),
        ("double_blocks.0.img_attn.norm.key_norm.scale", "flux1"),
        ("model.diffusion_model.single_stream_modulation.lin.weight", "flux2"),
        ("cond_stage_model.transformer.text_model.embeddings.position_ids", "sd15"),
        ("something.else.weight", None),
    ],
)
def test_a_single_file_checkpoint_family_is_read_from_its_keys(tmp_path, key, family):
    import torch
    from safetensors.torch import save_file

    tensors = {key: torch.zeros(1), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}
    if family == "flux2":
        tensors["double_blocks.0.img_attn.norm.key_norm.scale"] = torch.zeros(1)  # FLUX.2 has these too
    save_file(tensors, str(tmp_path / "model.safetensors"))
    assert family_of_files(tmp_path / "model.safetensors") == family


def test_a_folder_family_is_read_from_its_pipeline_class(demo_model_dir, sdxl_demo_dir, tmp_path):
    assert family_of_files(sdxl_demo_dir) == "sdxl"
    assert family_of_files(demo_model_dir) == "sd15"
    assert family_of_files(tmp_path) is None
