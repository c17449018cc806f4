"""LoRA training with peft on the demo model, its files and metadata, and tune requests."""

import shutil

import numpy as np
import pytest

from studio.errors import InvalidInput
from studio.likeness import reference_embedding
from studio.training import (
    KOHYA_NAME,
    RESUME_NAME,
    WEIGHTS_NAME,
    ResumeStateError,
    TrainingStopped,
    export_kohya,
    read_metadata,
    train_lora,
)
from studio.tune_requests import (
    PRESETS,
    TrainSettings,
    TuneRequest,
    check_request,
    plan_training,
    tune_request_from_fields,
)

SETTINGS = TrainSettings(
    instance_prompt="a close photo of ohwx man",
    max_train_steps=6,
    size=(64, 64),
    learning_rate=2e-4,
    rank=4,
    seed=11,
    checkpointing_steps=3,
    sample_steps=3,
)


def _photos(count=5, seed=0):
    """Smooth random colour fields (photo-like statistics, unlike white noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(count):
        small = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
        photos.append(Image.fromarray(small).resize((96, 80), Image.Resampling.BICUBIC))
    return photos


@pytest.fixture(scope="session")
def trained(demo_model_dir, tmp_path_factory):
    steps = []
    checkpoints = []
    out = tmp_path_factory.mktemp("lora")
    result = train_lora(
        demo_model_dir,
        "sd15",
        _photos(),
        SETTINGS,
        out,
        title="Jane test",
        trigger="ohwx",
        on_step=lambda step, total: steps.append((step, total)),
        on_checkpoint=checkpoints.append,
    )
    return result, steps, checkpoints


@pytest.fixture(scope="session")
def pipe(demo_model_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(demo_model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _render(pipe, adapters=None, weights=None):
    import torch

    if adapters is not None:
        pipe.set_adapters(adapters, adapter_weights=weights)
    image = pipe(
        "ohwx man",
        num_inference_steps=3,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).images[0]
    return image


def test_training_reports_every_step_and_writes_checkpoints(trained):
    result, steps, checkpoints = trained
    assert steps == [(i, 6) for i in range(1, 7)]
    assert [c.step for c in checkpoints] == [3, 6]
    assert result.checkpoints == tuple(checkpoints)
    assert result.weights == checkpoints[-1].weights and result.weights.exists()
    from PIL import Image

    for checkpoint in checkpoints:
        assert checkpoint.weights.exists() and np.isfinite(checkpoint.loss)
        assert Image.open(checkpoint.sample).size == (64, 64)
    assert checkpoints[0].resume == checkpoints[0].weights.parent / RESUME_NAME and checkpoints[0].resume.is_file()
    assert checkpoints[-1].resume is None  # nothing resumes after the last step


def test_lora_changes_the_output_and_weight_zero_gives_the_base(trained, pipe):
    result = trained[0]
    pipe.unload_lora_weights()
    base = _render(pipe)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="trained")
    try:
        with_lora = _render(pipe, ["trained"], [1.0])
        weight_zero = _render(pipe, ["trained"], [0.0])
    finally:
        pipe.unload_lora_weights()
    assert np.abs(with_lora - base).max() > 1e-4
    assert np.abs(weight_zero - base).max() < 1e-5


def test_kohya_copy_loads_through_diffusers_and_gives_the_same_image(trained, pipe):
    result = trained[0]
    from safetensors import safe_open

    with safe_open(str(result.kohya), framework="pt") as handle:
        keys = list(handle.keys())
    assert all(k.startswith("lora_unet_") for k in keys)
    assert any(k.endswith(".lora_down.weight") for k in keys) and any(k.endswith(".alpha") for k in keys)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="d")
    pipe.load_lora_weights(str(result.kohya.parent), weight_name=result.kohya.name, adapter_name="k")
    try:
        diffusers_image = _render(pipe, ["d"], [1.0])
        kohya_image = _render(pipe, ["k"], [1.0])
    finally:
        pipe.unload_lora_weights()
    assert np.abs(diffusers_image - kohya_image).max() < 1e-5


def test_weights_carry_modelspec_and_kohya_metadata(trained):
    result = trained[0]
    meta = read_metadata(result.weights)
    assert meta["modelspec.title"] == "Jane test"
    assert meta["modelspec.trigger_phrase"] == "ohwx"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.resolution"] == "64x64"
    assert meta["modelspec.hash_sha256"].startswith("0x") and len(meta["modelspec.hash_sha256"]) == 66
    assert (meta["ss_network_dim"], meta["ss_seed"], meta["ss_steps"]) == ("4", "11", "6")
    assert meta["ss_base_model_version"] == "sd_v1"
    kohya = read_metadata(result.kohya)
    assert kohya["modelspec.title"] == "Jane test"
    assert kohya["modelspec.hash_sha256"] != meta["modelspec.hash_sha256"]  # other tensors, other hash


def test_the_same_seed_and_settings_give_the_same_weights(trained, demo_model_dir, tmp_path):
    from safetensors.torch import load_file

    again = train_lora(demo_model_dir, "sd15", _photos(), SETTINGS, tmp_path / "a", title="Jane test", trigger="ohwx")
    first, second = load_file(trained[0].weights), load_file(again.weights)
    assert first.keys() == second.keys()
    assert max(float((first[k] - second[k]).abs().max()) for k in first) < 1e-7
    assert (
        read_metadata(again.weights)["modelspec.hash_sha256"]
        == read_metadata(trained[0].weights)["modelspec.hash_sha256"]
    )
    other_seed = train_lora(
        demo_model_dir,
        "sd15",
        _photos(),
        TrainSettings(**{**SETTINGS.to_json(), "seed": 12, "checkpointing_steps": 0, "sample_steps": 0}),
        tmp_path / "b",
        title="Jane test",
        trigger="ohwx",
    )
    third = load_file(other_seed.weights)
    assert max(float((first[k] - third[k]).abs().max()) for k in first) > 1e-4


def test_should_stop_ends_training_after_the_current_step(demo_model_dir, tmp_path):
    steps = []
    with pytest.raises(TrainingStopped, match="step 2 of"):
        train_lora(
            demo_model_dir,
            "sd15",
            _photos(2),
            TrainSettings(**{**SETTINGS.to_json(), "max_train_steps": 50}),
            tmp_path,
            title="t",
            trigger="ohwx",
            on_step=lambda step, total: steps.append(step),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    assert not (tmp_path / "pytorch_lora_weights.safetensors").exists()


def test_text_encoder_training_exports_kohya_text_encoder_keys(demo_model_dir, tmp_path, pipe):
    settings = TrainSettings(**{**SETTINGS.to_json(), "train_text_encoder": True, "checkpointing_steps": 0})
    result = train_lora(demo_model_dir, "sd15", _photos(3), settings, tmp_path, title="te", trigger="ohwx")
    from safetensors import safe_open

    with safe_open(str(result.weights), framework="pt") as handle:
        assert any(k.startswith("text_encoder.") for k in handle.keys())  # noqa: SIM118
    with safe_open(str(result.kohya), framework="pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj.") for k in keys)
    pipe.unload_lora_weights()
    base = _render(pipe)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="te")
    try:
        assert np.abs(_render(pipe, ["te"], [1.0]) - base).max() > 1e-4
    finally:
        pipe.unload_lora_weights()


def test_export_kohya_refuses_files_that_are_not_diffusers_loras(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"model.weight": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a diffusers LoRA"):
        export_kohya(tmp_path / "x.safetensors", tmp_path / KOHYA_NAME, family="sd15")


@pytest.mark.slow
def test_sdxl_lora_trains_and_changes_the_output(tmp_path, sdxl_demo_dir):
    """The SDXL path (two text encoders, pooled embeddings, time ids) on the embedded SDXL demo."""
    from diffusers import StableDiffusionXLPipeline

    settings = TrainSettings(**{**SETTINGS.to_json(), "checkpointing_steps": 0, "train_text_encoder": True})
    result = train_lora(sdxl_demo_dir, "sdxl", _photos(3), settings, tmp_path / "out", title="x", trigger="ohwx")
    assert read_metadata(result.weights)["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    from safetensors import safe_open

    with safe_open(str(result.kohya), framework="pt") as handle:
        prefixes = {k.split("_")[1] for k in handle.keys()}  # noqa: SIM118
    assert prefixes == {"unet", "te1", "te2"}
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_demo_dir)
    pipe.set_progress_bar_config(disable=True)
    base = _render(pipe)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="x")
    assert np.abs(_render(pipe, ["x"], [1.0]) - base).max() > 1e-4


# -- requests and plans ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": " "}, "title"),
        ({"name": ""}, "name"),
        ({"token": "two words"}, "token"),
        ({"model_type": "pti"}, "model_type"),
        ({"branch": "flux1"}, "branch"),
        ({"preset": "cinematic"}, "preset"),
        ({"learning_rate": 3e-4}, "learning_rate"),
        ({"lr_scheduler": "step"}, "lr_scheduler"),
        ({"max_train_steps": 0}, "max_train_steps"),
        ({"steps_per_image": 5000}, "steps_per_image"),
        ({"rank": 0}, "rank"),
        ({"resolution": 100}, "resolution"),
        ({"resize": (512, 30)}, "resize"),
        ({"train_batch_size": 64}, "train_batch_size"),
        ({"seed": -1}, "seed"),
        ({"face_crop_ratio": 0.5}, "face_crop_ratio"),
        ({"characteristics": ["blue"]}, "characteristics"),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidInput) as error:
        check_request(TuneRequest(**{"title": "t", "name": "man", **changes}))
    assert error.value.field == field


def test_every_accepted_learning_rate_and_scheduler_passes():
    for lr in (1e-4, 1e-5, 1e-6, 2e-4, 5e-5):
        for scheduler in ("constant", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup"):
            check_request(TuneRequest(title="t", name="man", learning_rate=lr, lr_scheduler=scheduler))


def test_plan_uses_steps_per_image_and_the_models_native_size():
    plan = plan_training(TuneRequest(title="t", name="woman", seed=3), num_images=7, native_resolution=512)
    assert plan.max_train_steps == 700
    assert plan.size == (512, 512)
    assert plan.instance_prompt == "a close photo of ohwx woman"
    assert plan.checkpointing_steps == 175
    assert (plan.seed, plan.learning_rate, plan.lr_scheduler) == (3, 1e-4, "constant")


def test_presets_fill_in_and_the_request_wins():
    style = plan_training(TuneRequest(title="t", name="style", preset="style"), num_images=4, native_resolution=512)
    assert (style.max_train_steps, style.rank, style.lr_scheduler) == (600, 32, "cosine")
    assert style.instance_prompt == "an image in ohwx style"
    own = plan_training(
        TuneRequest(title="t", name="man", preset="portrait", max_train_steps=50, rank=4, resize=(512, 768)),
        num_images=10,
        native_resolution=512,
    )
    assert (own.max_train_steps, own.rank, own.size) == (50, 4, (512, 768))
    assert PRESETS["portrait"]["face_crop"] is True


def test_fast_branch_keeps_training_minimal_whatever_the_request():
    plan = plan_training(
        TuneRequest(title="t", name="man", branch="fast", max_train_steps=2000, resolution=1024),
        num_images=5,
        native_resolution=512,
    )
    assert (plan.max_train_steps, plan.size, plan.sample_steps) == (8, (64, 64), 4)


def test_plan_refuses_impossible_combinations():
    with pytest.raises(InvalidInput) as error:
        plan_training(TuneRequest(title="t", name="man", max_train_steps=10, lr_warmup_steps=10), num_images=1,
                      native_resolution=512)  # fmt: skip
    assert error.value.field == "lr_warmup_steps"
    with pytest.raises(InvalidInput) as error:
        plan_training(TuneRequest(title="t", name="man", instance_prompt="a photo of a man"), num_images=1,
                      native_resolution=512)  # fmt: skip
    assert error.value.field == "instance_prompt"


def test_steps_are_capped_when_there_are_many_photos():
    plan = plan_training(TuneRequest(title="t", name="man", steps_per_image=200), num_images=50, native_resolution=512)
    assert plan.max_train_steps == 3000


def test_request_from_astria_and_novita_fields():
    request = tune_request_from_fields(
        {
            "title": "Jane",
            "name": "woman",
            "steps": "300",
            "training_face_correct": "true",
            "characteristics": '{"eye_color": "blue eyes"}',
            "prompts_attributes": [{"text": "ohwx woman, {{eye_color}}", "num_images": "2", "callback": "https://x/y"}],
            "components": [
                {"name": "face_crop_region", "args": [{"name": "ratio", "value": "1.4"}]},
                {"name": "resize", "args": [{"name": "width", "value": 512}, {"name": "height", "value": 640}]},
            ],
            "expert_setting": {"learning_rate": 5e-5, "lr_scheduler": "cosine", "lora_r": 16, "batch_size": 2},
            "auto_extend": "false",
        }
    )
    assert (request.max_train_steps, request.face_restore, request.face_crop, request.face_crop_ratio) == (
        300,
        True,
        True,
        1.4,
    )
    assert request.resize == (512, 640)
    assert (request.learning_rate, request.lr_scheduler, request.rank, request.train_batch_size) == (
        5e-5,
        "cosine",
        16,
        2,
    )
    assert request.characteristics == {"eye_color": "blue eyes"}
    [prompt] = request.prompts
    assert (prompt.text, prompt.callback, prompt.params) == (
        "ohwx woman, {{eye_color}}",
        "https://x/y",
        {"num_images": "2"},
    )
    check_request(request)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "man"}, "title"),
        ({"title": "t", "name": "man", "steps": "many"}, "max_train_steps"),
        ({"title": "t", "name": "man", "face_crop": "maybe"}, "face_crop"),
        ({"title": "t", "name": "man", "components": [{"name": "sharpen"}]}, "components"),
    ],
)
def test_unreadable_fields_are_refused_naming_them(fields, field):
    with pytest.raises(InvalidInput) as error:
        tune_request_from_fields(fields)
    assert error.value.field == field


def test_reference_embedding_is_the_unit_mean_of_unit_embeddings():
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.5, 0.0])
    reference = reference_embedding([a, b])
    assert reference.dtype == np.float32
    np.testing.assert_allclose(reference, [2**-0.5, 2**-0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError):
        reference_embedding([])


# -- resuming from a checkpoint --------------------------------------------------------------


def _hash(weights):
    return read_metadata(weights)["modelspec.hash_sha256"]


def test_a_stopped_training_resumes_from_its_checkpoint_to_the_same_weights(trained, demo_model_dir, tmp_path):
    """Stopped at step 4, after the checkpoint at step 3, then resumed from that checkpoint:
    steps 4 to 6 run again and the weights equal those of the uninterrupted run."""
    steps = []
    with pytest.raises(TrainingStopped, match="step 4 of 6"):
        train_lora(
            demo_model_dir,
            "sd15",
            _photos(),
            SETTINGS,
            tmp_path / "stopped",
            title="Jane test",
            trigger="ohwx",
            on_step=lambda step, total: steps.append(step),
            should_stop=lambda: steps[-1] == 4,
        )
    resumed_steps = []
    result = train_lora(
        demo_model_dir,
        "sd15",
        _photos(),
        SETTINGS,
        tmp_path / "resumed",
        title="Jane test",
        trigger="ohwx",
        on_step=lambda step, total: resumed_steps.append((step, total)),
        resume_from=tmp_path / "stopped" / "checkpoint-3",
    )
    assert resumed_steps == [(4, 6), (5, 6), (6, 6)]
    assert [c.step for c in result.checkpoints] == [6]
    uninterrupted = trained[0]
    assert _hash(result.weights) == _hash(uninterrupted.weights)  # the same tensors, bit for bit
    assert result.loss == uninterrupted.loss  # the recent losses were saved with the checkpoint


def test_text_encoder_adapters_and_a_warm_up_schedule_resume_too(demo_model_dir, tmp_path):
    changes = {
        "train_text_encoder": True,
        "max_train_steps": 4,
        "checkpointing_steps": 2,
        "sample_steps": 0,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 1,
    }
    settings = TrainSettings(**{**SETTINGS.to_json(), **changes})
    full = train_lora(demo_model_dir, "sd15", _photos(3), settings, tmp_path / "full", title="te", trigger="ohwx")
    resumed = train_lora(
        demo_model_dir,
        "sd15",
        _photos(3),
        settings,
        tmp_path / "resumed",
        title="te",
        trigger="ohwx",
        resume_from=tmp_path / "full" / "checkpoint-2",
    )
    assert [c.step for c in resumed.checkpoints] == [4]
    assert _hash(resumed.weights) == _hash(full.weights)


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / RESUME_NAME).unlink(), "cannot be read"),
        (
            lambda folder: (folder / RESUME_NAME).write_bytes((folder / RESUME_NAME).read_bytes()[:-64]),
            "cannot be read",
        ),
        (lambda folder: _flip_last_byte(folder / RESUME_NAME), "resume state .* is damaged"),
        (lambda folder: _flip_last_byte(folder / WEIGHTS_NAME), "LoRA weights .* are damaged"),
    ],
    ids=["resume-state-missing", "resume-state-truncated", "resume-state-flipped", "weights-flipped"],
)
def test_a_damaged_checkpoint_is_refused_before_the_base_model_loads(trained, tmp_path, damage, message):
    folder = tmp_path / "checkpoint-3"
    shutil.copytree(trained[2][0].weights.parent, folder)
    damage(folder)
    with pytest.raises(ResumeStateError, match=message):  # not OSError: the model path is never read
        train_lora(
            tmp_path / "no-model",
            "sd15",
            _photos(),
            SETTINGS,
            tmp_path / "out",
            title="t",
            trigger="ohwx",
            resume_from=folder,
        )


@pytest.mark.parametrize("changes", [{"seed": 12}, {"max_train_steps": 8}, {"rank": 8}])
def test_a_checkpoint_of_other_settings_is_refused(trained, tmp_path, changes):
    settings = TrainSettings(**{**SETTINGS.to_json(), **changes})
    with pytest.raises(ResumeStateError, match="other settings"):
        train_lora(
            tmp_path / "no-model",
            "sd15",
            _photos(),
            settings,
            tmp_path / "out",
            title="t",
            trigger="ohwx",
            resume_from=trained[2][0].weights.parent,
        )
