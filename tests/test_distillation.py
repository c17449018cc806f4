"""LCM and TCD with their distillation LoRAs: on a real SD model the LoRA (by hub id, from the
hub cache) loads beside the prompt's own LoRAs and the PNG names it; without it and with the hub
off the prompt is refused naming it; on the embedded demo the scheduler runs alone and says so.
The LoRA files are tiny, with the key layout of the real LCM-LoRA (kohya-style `lora_unet_…`)."""

import io

import numpy as np
import pytest
from lora_files import lora_factors, write_kohya_lora
from PIL import Image

from studio import families
from studio.config import Settings
from studio.core import Studio
from studio.errors import ModelNotAvailable
from studio.prompts import parse_parameters

LCM_SD15 = "latent-consistency/lcm-lora-sdv1-5"
SMALL = {"num_images": 1, "seed": 5, "steps": 2, "w": 64, "h": 64}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache of this test's own (the hub stays switched off)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_lora(cache, repo: str, pipe, *, strength: float) -> None:
    """Put a LoRA for `pipe`'s UNet where the hub cache keeps `repo`'s pytorch_lora_weights.safetensors."""
    revision = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    factors = lora_factors(pipe, seed=7, strength=strength, text_encoder=False)
    write_kohya_lora(snapshot / "pytorch_lora_weights.safetensors", factors)


@pytest.fixture
def real_sd15(tmp_path, demo_model_dir):
    """A studio whose default base model is a local SD 1.5 folder (not an embedded demo), with a
    LoRA tune on it."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    local = tmp_path / "my-sd15"
    local.symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, base_model=str(local)))
    pipe = studio.engine.load_model(str(local))
    weights = studio.files.scratch_dir() / "lora.safetensors"
    write_kohya_lora(weights, lora_factors(pipe, seed=1))
    tune_id = studio.store.add_tune(
        {
            "title": "mine",
            "name": "woman",
            "token": "ohwx",
            "model_type": "lora",
            "family": "sd15",
            "status": "SUCCESS",
            "weights_path": studio.files.put_file(weights, "weights"),
        }
    )
    yield studio, tune_id, pipe
    studio.close()


def _run(studio, tune_id, **fields):
    created = studio.create_prompt(tune_id, {"text": "ohwx woman", **SMALL, **fields})
    studio.run_pending()
    prompt = studio.get_prompt(created["id"])
    assert prompt["status"] == "SUCCESS", prompt["message"]
    [row] = studio.store.prompt_images(created["id"])
    image = Image.open(io.BytesIO(studio.files.read(row["path"])))
    return prompt, np.asarray(image.convert("RGB"), np.float32) / 255, image.info["parameters"]


def test_lcm_loads_its_distillation_lora_beside_the_prompts_loras(real_sd15, hub_cache):
    studio, tune_id, pipe = real_sd15
    cache_lora(hub_cache, LCM_SD15, pipe, strength=0.0)  # zero deltas: the image without it
    _, without, _ = _run(studio, tune_id, scheduler="lcm")
    loaded = studio.engine.loaded_loras
    assert f"hf://{LCM_SD15}/pytorch_lora_weights.safetensors" in loaded and len(loaded) == 2  # and the tune's
    studio.engine.unload()
    cache_lora(hub_cache, LCM_SD15, pipe, strength=0.5)
    prompt, with_lora, parameters = _run(studio, tune_id, scheduler="lcm")
    assert np.abs(with_lora - without).max() > 1 / 255
    assert parse_parameters(parameters)["extra"]["Distillation LoRA"] == LCM_SD15
    assert not any("distillation" in w for w in prompt["warnings"])


def test_without_the_distillation_lora_and_the_hub_off_the_prompt_is_refused(real_sd15, hub_cache):
    studio, tune_id, _ = real_sd15
    with pytest.raises(ModelNotAvailable, match="h1t/TCD-SD15") as refused:
        studio.create_prompt(tune_id, {"text": "ohwx woman", **SMALL, "scheduler": "tcd"})
    assert refused.value.field == "scheduler"
    assert studio.store.list_prompts(tune_id=tune_id) == []


def test_on_the_embedded_demo_lcm_runs_the_scheduler_alone_and_says_so(studio):
    prompt, _, parameters = _run(studio, 1, scheduler="lcm")
    assert any("LCM ran without its distillation LoRA" in w for w in prompt["warnings"])
    assert "Distillation LoRA" not in parameters


def test_each_sd_family_names_its_distillation_loras_by_hub_id():
    named = {
        (family, scheduler): families.hub_repo(families.distillation_lora(family, scheduler))
        for family in ("sd15", "sdxl")
        for scheduler in ("lcm", "tcd")
    }
    assert named == {
        ("sd15", "lcm"): LCM_SD15,
        ("sdxl", "lcm"): "latent-consistency/lcm-lora-sdxl",
        ("sd15", "tcd"): "h1t/TCD-SD15",
        ("sdxl", "tcd"): "h1t/TCD-SDXL-LoRA",
    }
    assert families.distillation_lora("sd15", "euler") is None and families.distillation_lora("flux1", "lcm") is None
