"""Flux in the studio around the engine: the gallery with the embedded FLUX.1 and FLUX.2 [klein]
demos built at first start and the real Flux models by hub id, each family's defaults in the
prompt resolver, clear 422s for what does not apply to Flux (FaceID and style tokens, SD
schedulers, sizes off Flux's 16-pixel grid, a missing ControlNet), the family in the tune JSON,
the memory settings passed to the engine, and ZeroGPU durations for Flux."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from api_helpers import live_studio
from photos import encode, friend

from conftest import link_flux_demos
from studio import zerogpu
from studio.config import ConfigError, Settings
from studio.core import Studio
from studio.families import FAMILIES
from studio.prompts import PromptRequest
from studio.runtime import Runtime
from studio.tune_requests import TuneRequest

SD_DEMO, FLUX1_DEMO, FLUX2_DEMO, FLUX1_DEV, SCHNELL, KLEIN = 1, 6, 7, 1504944, 8, 9


@pytest.fixture
def server(tmp_path, demo_model_dir, flux_demo_dirs):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, flux_demos=flux_demo_dirs) as (url, studio):
        yield url, studio


@pytest.fixture
def flux_studio(tmp_path, demo_model_dir, flux_demo_dirs):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    link_flux_demos(home, flux_demo_dirs)
    studio = Studio.open(Settings(home=home, demo_size=64))
    yield studio
    studio.close()


def _prompt(url: str, tune_id: int, text: str, **fields) -> httpx.Response:
    return httpx.post(f"{url}/tunes/{tune_id}/prompts", json={"prompt": {"text": text, **fields}}, timeout=60)


# -- the gallery -----------------------------------------------------------------------------


def test_the_gallery_lists_the_flux_demos_as_embedded_and_the_real_flux_models_by_hub_id(server):
    url, _studio = server
    gallery = {m["id"]: m for m in httpx.get(f"{url}/gallery/tunes").json()}
    for model_id, family in ((FLUX1_DEMO, "flux1"), (FLUX2_DEMO, "flux2")):
        assert gallery[model_id]["embedded"] is True and gallery[model_id]["available"] is True
        assert gallery[model_id]["family"] == family and gallery[model_id]["source"] == f"embedded:{family}"
    # Astria's 1504944 is FLUX.1 [dev] itself now, not a mock-only entry; with the hub off and
    # nothing downloaded the real models are listed but not available.
    assert (gallery[FLUX1_DEV]["family"], gallery[FLUX1_DEV]["source"]) == ("flux1", "black-forest-labs/FLUX.1-dev")
    assert (gallery[SCHNELL]["family"], gallery[SCHNELL]["source"]) == ("flux1", "black-forest-labs/FLUX.1-schnell")
    assert (gallery[KLEIN]["family"], gallery[KLEIN]["source"]) == ("flux2", "black-forest-labs/FLUX.2-klein-base-4B")
    assert not any(gallery[i]["embedded"] or gallery[i]["available"] for i in (FLUX1_DEV, SCHNELL, KLEIN))
    # A gallery model read as a tune says its family too.
    assert httpx.get(f"{url}/tunes/{FLUX1_DEMO}").json()["family"] == "flux1"


def test_a_first_start_builds_every_embedded_demo_and_they_load_offline(tmp_path):
    from diffusers import Flux2KleinPipeline, FluxPipeline, StableDiffusionXLPipeline

    studio = Studio.open(Settings(home=tmp_path / "home"))
    try:
        studio.prepare()
        models = tmp_path / "home" / "models"
        assert {p.name for p in models.iterdir() if p.is_dir()} >= {"demo", "demo-sdxl", "demo-flux1", "demo-flux2"}
        for folder, family in (("demo-sdxl", "sdxl"), ("demo-flux1", "flux1"), ("demo-flux2", "flux2")):
            assert json.loads((models / folder / "demo_model.json").read_text())["family"] == family
        assert type(FluxPipeline.from_pretrained(models / "demo-flux1", local_files_only=True)) is FluxPipeline
        klein = Flux2KleinPipeline.from_pretrained(models / "demo-flux2", local_files_only=True)
        assert type(klein) is Flux2KleinPipeline
        sdxl = StableDiffusionXLPipeline.from_pretrained(models / "demo-sdxl", local_files_only=True)
        assert type(sdxl) is StableDiffusionXLPipeline
        assert studio.models.native_resolution(studio.base_model(10)) == 256
        flux1 = studio.base_model(FLUX1_DEMO)
        assert studio.model_path(flux1) == str(models / "demo-flux1")
        assert studio.models.native_resolution(flux1) == 256  # the demo's VAE sample size
    finally:
        studio.close()


# -- family defaults -------------------------------------------------------------------------


def _request(studio, tune_id: int, **fields):
    return studio.resolver.generate_request(
        studio.resolver.prompt_tune(tune_id),
        PromptRequest.from_dict({"text": "a portrait of ohwx woman", **fields}).validate(),
        seed=1,
        input_image=None,
    )


def test_each_family_gets_its_own_defaults(flux_studio):
    sd = _request(flux_studio, SD_DEMO)
    assert (sd.family, sd.scheduler, sd.num_inference_steps, sd.guidance_scale) == ("sd15", "euler_a", 30, 7.0)
    flux1 = _request(flux_studio, FLUX1_DEMO)
    assert (flux1.family, flux1.scheduler, flux1.num_inference_steps, flux1.guidance_scale) == (
        "flux1",
        "euler",
        28,
        3.5,
    )
    assert (flux1.width, flux1.height) == (64, 64) and flux1.model.endswith("demo-flux1")
    flux2 = _request(flux_studio, FLUX2_DEMO)
    assert (flux2.family, flux2.scheduler, flux2.num_inference_steps, flux2.guidance_scale) == (
        "flux2",
        "euler",
        28,
        4.0,
    )
    # A gallery entry's own defaults come before its family's: FLUX.1 [schnell] runs 4 steps
    # without guidance (its source pointed at the demo folder so it is available offline).
    schnell = {**flux_studio.base_model(SCHNELL), "source": str(flux_studio.models.embedded_dir("embedded:flux1"))}
    flux_studio.store.upsert_base_model(schnell)
    fast = _request(flux_studio, SCHNELL)
    assert (fast.num_inference_steps, fast.guidance_scale, fast.width) == (4, 0.0, 1024)  # a real model: native size
    explicit = _request(flux_studio, FLUX1_DEMO, steps=3, cfg_scale=2.0, w=128, h=96)
    assert (explicit.num_inference_steps, explicit.guidance_scale, explicit.width, explicit.height) == (3, 2.0, 128, 96)


def test_an_odd_demo_size_is_rounded_to_the_flux_grid(tmp_path, demo_model_dir, flux_demo_dirs):
    home = tmp_path / "home"
    link_flux_demos(home, flux_demo_dirs)
    studio = Studio.open(Settings(home=home, demo_size=72))
    try:
        request = _request(studio, FLUX1_DEMO)
        assert (request.width, request.height) == (64, 64)
    finally:
        studio.close()


# -- what does not apply to Flux is a 422 that says so ---------------------------------------


@pytest.mark.parametrize("demo", [FLUX1_DEMO, FLUX2_DEMO])
def test_an_sd_scheduler_on_flux_is_a_422_naming_scheduler(server, demo):
    url, studio = server
    response = _prompt(url, demo, "a portrait", scheduler="dpm++2m_karras", steps=2, w=64, h=64)
    assert response.status_code == 422 and response.json()["field"] == "scheduler"
    assert "dpm++2m_karras" in response.json()["error"] and "euler" in response.json()["error"]
    assert studio.list_prompts() == []
    # The same scheduler on the SD demo is fine: the check is the family's, not a blanket one.
    assert _prompt(url, SD_DEMO, "a portrait", scheduler="dpm++2m_karras", steps=2, w=64, h=64).status_code == 201


@pytest.mark.parametrize(
    "token",
    ["<faceid:{faceid}:1>", "<be-face:ann:0.8>", "<be-style:cartoon:0.5>"],
)
@pytest.mark.parametrize("demo", [FLUX1_DEMO, FLUX2_DEMO])
def test_faceid_face_and_style_tokens_on_flux_are_422s_naming_the_token_and_what_works(server, token, demo):
    url, studio = server
    faceid = studio.store.add_tune(
        {"title": "ann", "name": "woman", "model_type": "faceid", "status": "SUCCESS", "family": "sd15"}
    )
    studio.add_adapter("style", "cartoon", encode(friend("ross")), weight=0.5)
    token = token.format(faceid=faceid)
    response = _prompt(url, demo, f"portrait of a woman {token}", steps=2, w=64, h=64)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "text" and token in body["error"] and "diffusers has no" in body["error"]
    assert ("LoRA" in body["error"]) and "SD 1.5 / SDXL" in body["error"]
    assert studio.list_prompts() == []


def test_a_faceid_tune_on_a_flux_base_is_refused_naming_model_type(server):
    url, studio = server
    files = [("tune[images][]", (f"{n}.jpg", encode(friend(n)), "image/jpeg")) for n in ("rachel", "monica")]
    data = {"tune[title]": "ann on flux", "tune[name]": "woman", "tune[model_type]": "faceid"}
    response = httpx.post(f"{url}/tunes", data={**data, "tune[base_tune_id]": str(FLUX1_DEMO)}, files=files)
    assert response.status_code == 422 and response.json()["field"] == "model_type"
    assert "FLUX.1" in response.json()["error"] and "model_type=lora" in response.json()["error"]
    assert studio.list_tunes() == []


def test_sizes_off_the_flux_grid_and_missing_controlnets_are_422s(server):
    url, studio = server
    response = _prompt(url, FLUX1_DEMO, "a portrait", steps=2, w=72, h=64)
    assert (
        response.status_code == 422 and response.json()["field"] == "w" and "multiple of 16" in response.json()["error"]
    )
    assert _prompt(url, SD_DEMO, "a portrait", steps=2, w=72, h=64).status_code == 201  # SD's grid is 8
    image = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(image, "PNG")
    files = {"prompt[input_image]": ("edges.png", image.getvalue(), "image/png")}
    fields = {"prompt[text]": "a portrait", "prompt[controlnet]": "pose", "prompt[steps]": "2"}
    response = httpx.post(f"{url}/tunes/{FLUX2_DEMO}/prompts", data=fields, files=files)
    assert response.status_code == 422 and response.json()["field"] == "controlnet"
    assert "not available" in response.json()["error"]
    assert len(studio.list_prompts()) == 1


def test_a_lora_tune_on_a_flux_demo_says_its_family(server):
    url, studio = server
    files = [("tune[images][]", (f"{n}.jpg", encode(friend(n)), "image/jpeg")) for n in ("rachel", "monica")]
    data = {
        "tune[title]": "ann flux lora",
        "tune[name]": "woman",
        "tune[model_type]": "lora",
        "tune[base_tune_id]": str(FLUX2_DEMO),
    }
    response = httpx.post(f"{url}/tunes", data=data, files=files)
    assert response.status_code == 201, response.text
    tune = response.json()
    assert tune["family"] == "flux2" and tune["base_tune_id"] == FLUX2_DEMO and tune["status"] == "QUEUING"
    assert httpx.get(f"{url}/tunes/{tune['id']}").json()["family"] == "flux2"
    assert [t["family"] for t in httpx.get(f"{url}/tunes").json()] == ["flux2"]


# -- memory options and ZeroGPU --------------------------------------------------------------


def test_memory_settings_are_read_from_the_environment():
    settings = Settings.from_env({"STUDIO_CPU_OFFLOAD": "1", "STUDIO_QUANTIZE": "NF4"})
    assert (settings.cpu_offload, settings.quantize) == (True, "nf4")
    assert (Settings.from_env({}).cpu_offload, Settings.from_env({}).quantize) == (False, None)
    assert Settings.from_env({"STUDIO_QUANTIZE": "none"}).quantize is None
    with pytest.raises(ConfigError, match="STUDIO_QUANTIZE"):
        Settings.from_env({"STUDIO_QUANTIZE": "fp4"})
    with pytest.raises(ConfigError, match="STUDIO_CPU_OFFLOAD"):
        Settings.from_env({"STUDIO_CPU_OFFLOAD": "maybe"})


def test_the_engine_is_made_with_the_memory_options_the_settings_ask_for(tmp_path, monkeypatch):
    import studio.engine

    made = []

    class Recorder:
        def __init__(self, device, **options):
            made.append((device, options))

        def memory_options(self):
            return {"cpu_offload": "on (CUDA)", "quantize": None}

    monkeypatch.setattr(studio.engine, "Engine", Recorder)
    runtime = Runtime(Settings(home=tmp_path, cpu_offload=True, quantize="int8"))
    assert "model CPU offload" in runtime.memory_description() and "int8" in runtime.memory_description()
    assert isinstance(runtime.engine, Recorder)
    [(device, options)] = made
    assert device == "auto" and options["cpu_offload"] is True and options["quantize"] == "int8"
    assert runtime.memory_description() == "cpu offload: on (CUDA)"  # what the engine says is active
    assert isinstance(Runtime(Settings(home=tmp_path)).engine, Recorder)
    assert "cpu_offload" not in made[1][1] and "quantize" not in made[1][1]  # the Engine's defaults


def test_the_status_names_the_memory_options(tmp_path):
    studio = Studio.open(Settings(home=tmp_path / "a"))
    try:
        assert studio.status()["memory_options"].startswith("none")
    finally:
        studio.close()
    studio = Studio.open(Settings(home=tmp_path / "b", cpu_offload=True, quantize="nf4"))
    try:
        assert "STUDIO_CPU_OFFLOAD=1" in studio.status()["memory_options"]
        assert "nf4" in studio.status()["memory_options"]
    finally:
        studio.close()


@pytest.mark.parametrize(
    "steps, images, family, size, seconds",
    [
        (28, 1, "flux1", (1024, 1024), 71),  # 45 + ceil(28 × 0.9)
        (28, 4, "flux1", (0, 0), 146),  # 45 + ceil(100.8)
        (28, 1, "flux1", (512, 512), 52),  # a quarter of the pixels: 45 + ceil(6.3)
        (50, 1, "flux2", (1024, 1024), 60),  # 30 + ceil(50 × 0.6)
        (4, 1, "flux1", (1024, 1024), 49),  # schnell
        (50, 8, "flux1", (1024, 1024), 300),  # capped
    ],
)
def test_zero_gpu_durations_for_flux(steps, images, family, size, seconds):
    width, height = size
    assert zerogpu.generate_duration(steps, images, family=family, width=width, height=height) == seconds
    assert zerogpu.NATIVE_SIDE[family] == FAMILIES[family].native_size


def test_flux_needs_more_gpu_time_than_sd_for_the_same_work():
    for family in ("flux1", "flux2"):
        assert zerogpu.generate_duration(28, 1, family=family) > zerogpu.generate_duration(28, 1, family="sdxl")


# -- the training memory estimate (studio.families.estimate_training_memory) ----------------


def test_the_training_memory_estimate_is_the_familys_at_the_planned_settings(flux_studio):
    from studio.families import estimate_training_memory

    request = TuneRequest(title="x", name="woman", base_tune_id=FLUX1_DEV, rank=16, resolution=1024)
    estimate = flux_studio.training_memory(request)
    expected = estimate_training_memory(
        "flux1",
        resolution=1024,
        rank=16,
        batch_size=1,
        gradient_checkpointing=True,
        mixed_precision="bf16",
        train_text_encoder=False,
    )
    assert estimate["gb"] == expected["gb"] and estimate["family"] == "flux1" and estimate["family_label"] == "FLUX.1"
    sd = flux_studio.training_memory(TuneRequest(title="x", name="woman", base_tune_id=SD_DEMO, rank=16))
    assert sd["family"] == "sd15" and sd["gb"] < estimate["gb"]
    assert np.isfinite(estimate["gb"]) and estimate["gb"] > 0
