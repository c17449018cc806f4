"""Deployment: Hugging Face Space defaults (persistent /data, 0.0.0.0 with keys required), the
share link's refusal without a login, and ZeroGPU (duration formula, generation through
spaces.GPU, LoRA training refused). The share tunnel itself needs internet and is not tested."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_helpers import live_studio
from photos import encode, friend, mirrored

from conftest import ROOT
from storage.status import SUCCESS
from studio import zerogpu
from studio.config import ConfigError, Settings
from studio.core import Studio
from studio.engine import GenerateRequest
from studio.errors import InvalidInput
from studio.tune_requests import TuneRequest

FAKES = Path(__file__).resolve().parent / "fakes"
# A Space without logins is refused (see the refusal tests); these settings tests log in.
SPACE = {"SPACE_ID": "ann/avatar-studio", "SPACE_HOST": "ann-avatar-studio.hf.space", "STUDIO_AUTH": "ann:pw"}


# -- Space settings ------------------------------------------------------------------------------


def test_a_space_keeps_its_data_in_persistent_storage_and_listens_on_all_interfaces(tmp_path):
    settings = Settings.from_env(SPACE, space_storage=tmp_path)
    assert settings.home == tmp_path / "studio"
    assert settings.host == "0.0.0.0" and not settings.is_loopback
    assert settings.on_space and settings.public_url == "https://ann-avatar-studio.hf.space"


@pytest.mark.parametrize("storage", ["missing", "a file"])
def test_a_space_without_persistent_storage_uses_the_local_folder(tmp_path, storage):
    path = tmp_path / "data"
    if storage == "a file":
        path.write_text("not a folder")
    settings = Settings.from_env(SPACE, space_storage=path)
    assert settings.home == Path("data") and settings.host == "0.0.0.0"


def test_explicit_variables_win_on_a_space_and_nothing_changes_elsewhere(tmp_path):
    settings = Settings.from_env(
        {**SPACE, "STUDIO_HOME": "/srv/x", "STUDIO_HOST": "127.0.0.1", "STUDIO_PUBLIC_URL": "https://a.example/"},
        space_storage=tmp_path,
    )
    assert (settings.home, settings.host, settings.public_url) == (Path("/srv/x"), "127.0.0.1", "https://a.example")
    local = Settings.from_env({}, space_storage=tmp_path)  # /data exists, but this is no Space
    assert (local.home, local.host, local.on_space, local.public_url) == (Path("data"), "127.0.0.1", False, None)


@pytest.mark.parametrize(
    "env, words",
    [
        ({"STUDIO_SHARE": "1"}, ["STUDIO_SHARE", "STUDIO_AUTH"]),
        ({**SPACE, "STUDIO_SHARE": "1", "STUDIO_AUTH": "ann:pw"}, ["STUDIO_SHARE", "Space"]),
        ({"STUDIO_TUNE_EXPIRY_DAYS": "-1"}, ["STUDIO_TUNE_EXPIRY_DAYS"]),
        ({"STUDIO_TUNE_EXPIRY_DAYS": "month"}, ["STUDIO_TUNE_EXPIRY_DAYS"]),
    ],
)
def test_unsafe_or_invalid_deployments_are_refused(env, words):
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert all(word in error.value.message for word in words)


def test_sharing_with_a_login_is_accepted_and_is_not_loopback():
    settings = Settings.from_env({"STUDIO_SHARE": "1", "STUDIO_AUTH": "ann:pw", "STUDIO_TUNE_EXPIRY_DAYS": "30"})
    assert settings.share and settings.auth == (("ann", "pw"),) and not settings.is_loopback
    assert settings.tune_expiry_days == 30


def test_the_studio_refuses_to_start_sharing_without_a_login(tmp_path):
    env = {**os.environ, "STUDIO_SHARE": "1", "STUDIO_HOME": str(tmp_path / "home")}
    env.pop("STUDIO_AUTH", None)
    run = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "cannot start" in run.stderr and "STUDIO_AUTH" in run.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


@pytest.mark.parametrize("settings", [{"host": "0.0.0.0"}, {"share": True, "auth": (("ann", "pw"),)}])
def test_keyless_api_is_refused_when_the_server_is_reachable_from_outside(tmp_path, demo_model_dir, settings):
    """A Space's proxy and a share tunnel forward the public's requests from loopback addresses:
    the keyless loopback exception must not apply to them."""
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, **settings) as (url, studio):
        assert httpx.get(url + "/gallery/tunes").status_code == 401
        key = studio.create_api_key("ann")
        assert httpx.get(url + "/gallery/tunes", headers={"Authorization": f"Bearer {key}"}).status_code == 200


# -- ZeroGPU ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, images, family, size, seconds",
    [
        (30, 1, "sd15", (512, 512), 24),  # 20 + ceil(30 × 1 × 0.12)
        (30, 4, "sd15", (512, 512), 35),  # 20 + ceil(14.4)
        (30, 1, "sd15", (768, 768), 29),  # 2.25 times the pixels: 20 + ceil(8.1)
        (30, 4, "sdxl", (1024, 1024), 62),  # 20 + ceil(30 × 4 × 0.35)
        (25, 2, "sdxl", (0, 0), 38),  # 0: the native size
        (150, 8, "sdxl", (1024, 1024), 300),  # capped
        (1, 1, "sd15", (64, 64), 21),
    ],
)
def test_zero_gpu_duration_grows_with_steps_images_and_pixels(steps, images, family, size, seconds):
    width, height = size
    assert zerogpu.generate_duration(steps, images, family=family, width=width, height=height) == seconds


def test_request_duration_reads_a_generate_request():
    request = GenerateRequest(model="m", family="sdxl", num_inference_steps=30, num_images=4, width=1024, height=1024)
    assert zerogpu.request_duration(request) == 62


def test_off_zero_gpu_the_engine_generate_is_used_as_it_is(studio):
    assert not zerogpu.active(False)
    assert zerogpu.gpu_generate(studio.engine, enabled=False) == studio.engine.generate
    assert Settings.from_env({"SPACES_ZERO_GPU": "true"}).zero_gpu
    assert not Settings.from_env({}).zero_gpu and not Settings.from_env({"SPACES_ZERO_GPU": "0"}).zero_gpu


@pytest.fixture
def fake_spaces(monkeypatch):
    """The `spaces` stand-in of tests/fakes, importable for one test."""
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    import spaces

    spaces.calls.clear()
    yield spaces
    sys.modules.pop("spaces", None)


@pytest.fixture
def zero_gpu_studio(tmp_path, demo_model_dir, fake_spaces):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, zero_gpu=True))
    yield studio
    studio.close()


def test_on_zero_gpu_generation_runs_in_spaces_gpu_with_its_duration(zero_gpu_studio, fake_spaces):
    studio = zero_gpu_studio
    assert studio.zero_gpu
    prompt = studio.create_prompt(1, {"text": "a cat", "num_images": 2, "steps": 3, "w": 64, "h": 64, "seed": 5})
    assert studio.run_pending() == 1
    done = studio.get_prompt(prompt["id"])
    assert done["status"] == SUCCESS and len(done["images"]) == 2 and done["progress"] == 1.0
    # The request and its images crossed the (pickled) process boundary.
    expected = zerogpu.generate_duration(3, 2, family="sd15", width=64, height=64)
    assert fake_spaces.calls == [("_generate_on_gpu", expected)]


def test_on_zero_gpu_lora_training_is_refused_but_faceid_works(zero_gpu_studio):
    studio = zero_gpu_studio
    photos = [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]
    with pytest.raises(InvalidInput) as error:
        studio.create_tune(TuneRequest(title="Rachel LoRA", name="woman", branch="fast"), photos=photos)
    assert error.value.field == "model_type" and "ZeroGPU" in error.value.message
    assert studio.store.list_tunes() == []  # refused before anything was stored
    tune = studio.create_tune(TuneRequest(title="Rachel", name="woman", model_type="faceid"), photos=photos)
    assert tune["status"] == SUCCESS
    assert "LoRA training is off" in studio.status()["training"]

    from studio.ui.status import _describe

    assert "LoRA training is off" in _describe(studio)
