"""LoRA training on the tiny FLUX.1 [dev] and FLUX.2 [klein] demos: the flow-matching objective,
checkpoints with samples, resume, stop, diffusers and kohya files that load back, Astria's Flux
presets and the training memory estimate."""

import math
import shutil

import numpy as np
import pytest

from studio.errors import InvalidInput
from studio.families import FAMILIES, TRAINING, estimate_training_memory
from studio.training import (
    RESUME_NAME,
    TrainingStopped,
    export_kohya,
    lora_target_modules,
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
    learning_rate=1e-3,
    rank=4,
    seed=7,
    checkpointing_steps=3,
    sample_steps=2,
)
FAMS = ("flux1", "flux2")


def _photos(count=4, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).resize((96, 80), Image.Resampling.BICUBIC)
        for _ in range(count)
    ]


@pytest.fixture(scope="session")
def flux_trained(flux_demo_dirs, tmp_path_factory):
    """One training per family, with its progress and checkpoints."""
    runs = {}
    for family in FAMS:
        steps, checkpoints = [], []
        result = train_lora(
            flux_demo_dirs[family],
            family,
            _photos(),
            SETTINGS,
            tmp_path_factory.mktemp(f"lora-{family}"),
            title="Jane flux",
            trigger="ohwx",
            on_step=lambda step, total, steps=steps: steps.append((step, total)),
            on_checkpoint=checkpoints.append,
        )
        runs[family] = (result, steps, checkpoints)
    return runs


@pytest.fixture(scope="session")
def flux_pipes(flux_demo_dirs):
    from diffusers import Flux2KleinPipeline, FluxPipeline

    pipes = {
        "flux1": FluxPipeline.from_pretrained(flux_demo_dirs["flux1"], local_files_only=True),
        "flux2": Flux2KleinPipeline.from_pretrained(flux_demo_dirs["flux2"], local_files_only=True),
    }
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def _render(pipe, adapters=None, weights=None):
    import torch

    if adapters is not None:
        pipe.set_adapters(adapters, adapter_weights=weights)
    return pipe(
        prompt="ohwx man",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).images[0]


@pytest.mark.parametrize("family", FAMS)
def test_flux_training_reports_every_step_and_writes_checkpoints_with_samples(flux_trained, family):
    from PIL import Image

    result, steps, checkpoints = flux_trained[family]
    assert steps == [(i, 6) for i in range(1, 7)]
    assert [c.step for c in checkpoints] == [3, 6] and result.checkpoints == tuple(checkpoints)
    for checkpoint in checkpoints:
        assert checkpoint.weights.is_file() and math.isfinite(checkpoint.loss)
        assert Image.open(checkpoint.sample).size == (64, 64)
    assert checkpoints[0].resume == checkpoints[0].weights.parent / RESUME_NAME and checkpoints[0].resume.is_file()
    assert checkpoints[-1].resume is None


@pytest.mark.parametrize("family", FAMS)
def test_flux_lora_loads_in_its_pipeline_and_changes_the_output(flux_trained, flux_pipes, family):
    result, pipe = flux_trained[family][0], flux_pipes[family]
    pipe.unload_lora_weights()
    base = _render(pipe)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="trained")
    try:
        with_lora = _render(pipe, ["trained"], [1.0])
        weight_zero = _render(pipe, ["trained"], [0.0])
    finally:
        pipe.unload_lora_weights()
    assert np.abs(with_lora - base).max() > 1e-3
    assert np.abs(weight_zero - base).max() < 1e-5


@pytest.mark.parametrize(
    ("family", "architecture", "base_version", "module"),
    [
        ("flux1", "flux-1-dev/lora", "flux1", "networks.lora_flux"),
        ("flux2", "flux-2-klein/lora", "flux2_klein", "networks.lora_flux2"),
    ],
)
def test_flux_weights_carry_modelspec_and_kohya_metadata(flux_trained, family, architecture, base_version, module):
    result = flux_trained[family][0]
    for path in (result.weights, result.kohya):
        meta = read_metadata(path)
        assert meta["modelspec.architecture"] == architecture
        assert (meta["ss_base_model_version"], meta["ss_network_module"]) == (base_version, module)
        assert (meta["modelspec.title"], meta["modelspec.trigger_phrase"]) == ("Jane flux", "ohwx")
        assert meta["ss_weighting_scheme"] == "logit_normal" and meta["ss_network_dim"] == "4"
    assert (
        read_metadata(result.weights)["modelspec.hash_sha256"] != read_metadata(result.kohya)["modelspec.hash_sha256"]
    )


@pytest.mark.parametrize("family", FAMS)
def test_a_stopped_flux_training_resumes_to_the_same_weights_bit_for_bit(
    flux_trained, flux_demo_dirs, family, tmp_path
):
    steps = []
    with pytest.raises(TrainingStopped, match="step 4 of 6"):
        train_lora(
            flux_demo_dirs[family],
            family,
            _photos(),
            SETTINGS,
            tmp_path / "stopped",
            title="Jane flux",
            trigger="ohwx",
            on_step=lambda step, total: steps.append(step),
            should_stop=lambda: steps[-1] == 4,
        )
    assert steps == [1, 2, 3, 4] and not (tmp_path / "stopped" / "pytorch_lora_weights.safetensors").exists()
    resumed_steps = []
    result = train_lora(
        flux_demo_dirs[family],
        family,
        _photos(),
        SETTINGS,
        tmp_path / "resumed",
        title="Jane flux",
        trigger="ohwx",
        on_step=lambda step, total: resumed_steps.append(step),
        resume_from=tmp_path / "stopped" / "checkpoint-3",
    )
    uninterrupted = flux_trained[family][0]
    assert resumed_steps == [4, 5, 6] and [c.step for c in result.checkpoints] == [6]
    hash_of = lambda path: read_metadata(path)["modelspec.hash_sha256"]  # noqa: E731
    assert hash_of(result.weights) == hash_of(uninterrupted.weights)
    assert result.loss == uninterrupted.loss


def _spy_transformer(monkeypatch):
    """Record what the transformer gets at every training step (not the samples: no_grad)."""
    import torch

    import studio.training as training

    calls = []
    real = training.load_pipeline

    def load(*args, **kwargs):
        pipe = real(*args, **kwargs)

        def hook(module, args, kwargs):
            if torch.is_grad_enabled():
                calls.append({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) or v is None})

        pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
        return pipe

    monkeypatch.setattr(training, "load_pipeline", load)
    return calls


@pytest.mark.parametrize("family", FAMS)
def test_flux_objective_draws_logit_normal_timesteps_and_feeds_guidance_for_dev(
    flux_demo_dirs, family, tmp_path, monkeypatch
):
    """Replaying the run's noise generator gives exactly the timesteps the transformer got:
    sigmoid of a standard normal draw after each step's image order, latent sample and noise."""
    import torch

    calls = _spy_transformer(monkeypatch)
    settings = TrainSettings(**{**SETTINGS.to_json(), "max_train_steps": 5, "checkpointing_steps": 0})
    train_lora(flux_demo_dirs[family], family, _photos(3), settings, tmp_path, title="t", trigger="ohwx")
    assert len(calls) == 5
    generator, order = torch.Generator().manual_seed(settings.seed), []
    latent = (1, 4, 8, 8)  # the demo VAE: 4 channels at 1/8 of 64 px
    noise = latent if family == "flux1" else (1, 16, 4, 4)  # FLUX.2 noises the patchified latents
    for call in calls:
        if not order:
            order = torch.randperm(3, generator=generator).tolist()
        order.pop(0)
        torch.randn(latent, generator=generator)
        torch.randn(noise, generator=generator)
        u = torch.sigmoid(torch.normal(0.0, 1.0, (1,), generator=generator))
        expected = 1000 - (u * 1000).long()  # the schedule's timesteps run 1000 .. 1
        assert torch.equal(call["timestep"] * 1000, expected.float())
        assert call["hidden_states"].shape == (1, 16, 16)  # 4x4 tokens of 2x2 patches of 4 channels
        assert call["encoder_hidden_states"].shape[1] == 512  # the cached prompt, 512 tokens
    guidance = calls[0]["guidance"]
    if family == "flux1":  # [dev]'s guidance embedding gets the family's default guidance
        assert guidance is not None and guidance.tolist() == [FAMILIES["flux1"].default_guidance_scale]
    else:
        assert guidance is None


def test_flux2_refuses_text_encoder_training_naming_the_field(flux_demo_dirs, tmp_path):
    settings = TrainSettings(**{**SETTINGS.to_json(), "train_text_encoder": True})
    with pytest.raises(InvalidInput) as error:
        train_lora(flux_demo_dirs["flux2"], "flux2", _photos(), settings, tmp_path, title="t", trigger="ohwx")
    assert error.value.field == "train_text_encoder"
    with pytest.raises(InvalidInput) as error:
        train_lora(
            flux_demo_dirs["flux1"],
            "flux1",
            _photos(),
            TrainSettings(**{**SETTINGS.to_json(), "size": (72, 72)}),
            tmp_path,
            title="t",
            trigger="ohwx",
        )
    assert error.value.field == "resolution" and "multiples of 16" in error.value.message


def test_flux1_trains_clip_with_the_transformer_and_exports_te1_keys(flux_demo_dirs, flux_pipes, tmp_path):
    from safetensors import safe_open

    settings = TrainSettings(**{**SETTINGS.to_json(), "train_text_encoder": True, "checkpointing_steps": 0})
    result = train_lora(flux_demo_dirs["flux1"], "flux1", _photos(3), settings, tmp_path, title="te", trigger="ohwx")
    with safe_open(str(result.weights), framework="pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("text_encoder.") and "layers.0.self_attn.q_proj.lora_A" in k for k in keys)
    assert not any(k.startswith("text_encoder_2.") for k in keys)  # T5 stays frozen
    with safe_open(str(result.kohya), framework="pt") as handle:
        kohya = list(handle.keys())
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in kohya
    pipe = flux_pipes["flux1"]
    pipe.unload_lora_weights()
    base = _render(pipe)
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="te")
    try:
        assert np.abs(_render(pipe, ["te"], [1.0]) - base).max() > 1e-3
    finally:
        pipe.unload_lora_weights()


# -- kohya export ----------------------------------------------------------------------------


def test_flux1_kohya_export_fuses_qkv_and_linear1_block_diagonally(flux_trained):
    from safetensors.torch import load_file

    result = flux_trained["flux1"][0]
    source, kohya = load_file(result.weights), load_file(result.kohya)
    assert all(k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for k in kohya)
    qkv = "lora_unet_double_blocks_0_img_attn_qkv"
    down, up = kohya[f"{qkv}.lora_down.weight"], kohya[f"{qkv}.lora_up.weight"]
    assert down.shape == (12, 32) and up.shape == (96, 12) and float(kohya[f"{qkv}.alpha"]) == 12.0
    parts = [f"transformer.transformer_blocks.0.attn.to_{p}" for p in "qkv"]
    fused = up @ down
    for index, part in enumerate(parts):  # each part's update, and nothing across parts
        expected = source[f"{part}.lora_B.weight"] @ source[f"{part}.lora_A.weight"]
        assert float((fused[32 * index : 32 * (index + 1)] - expected).abs().max()) < 1e-6
    linear1 = "lora_unet_single_blocks_1_linear1"
    assert kohya[f"{linear1}.lora_down.weight"].shape == (16, 32)
    assert kohya[f"{linear1}.lora_up.weight"].shape == (32 * 3 + 128, 16)  # q, k, v and the MLP input
    assert "lora_unet_single_blocks_1_linear2.lora_up.weight" in kohya
    assert "lora_unet_double_blocks_0_txt_mlp_2.lora_down.weight" in kohya


def test_flux1_kohya_double_blocks_load_back_through_diffusers_to_the_same_image(flux_trained, flux_pipes, tmp_path):
    """diffusers' kohya Flux converter splits the single blocks' linear1 at FLUX.1's real widths
    (3072, 12288), so on the tiny model the double-block part is compared end to end; the
    test below checks linear1 at real widths."""
    from safetensors.torch import load_file, save_file

    result = flux_trained["flux1"][0]
    meta = read_metadata(result.weights)
    double = {k: v for k, v in load_file(result.weights).items() if ".transformer_blocks." in k}
    save_file(double, str(tmp_path / "double.safetensors"), metadata={"format": "pt", **meta})
    kohya = export_kohya(tmp_path / "double.safetensors", tmp_path / "double_kohya.safetensors", family="flux1")
    pipe = flux_pipes["flux1"]
    pipe.unload_lora_weights()
    base = _render(pipe)
    pipe.load_lora_weights(str(tmp_path), weight_name="double.safetensors", adapter_name="d")
    pipe.load_lora_weights(str(tmp_path), weight_name=kohya.name, adapter_name="k")
    try:
        diffusers_image = _render(pipe, ["d"], [1.0])
        kohya_image = _render(pipe, ["k"], [1.0])
    finally:
        pipe.unload_lora_weights()
    assert np.abs(diffusers_image - base).max() > 1e-4
    assert np.abs(diffusers_image - kohya_image).max() < 1e-5


def test_flux1_kohya_export_at_real_widths_converts_back_to_the_same_updates(tmp_path):
    """A LoRA shaped like a real FLUX.1 [dev] one (width 3072, MLP 12288; one double and one
    single block) written for kohya and read back by diffusers' own converter gives every
    module the same update B @ A."""
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers
    from safetensors.torch import save_file

    width, mlp, rank = 3072, 12288, 4
    shapes = {}
    for part in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"):
        shapes[f"transformer_blocks.0.attn.{part}"] = (width, width)
    for stream in ("ff", "ff_context"):
        shapes[f"transformer_blocks.0.{stream}.net.0.proj"] = (width, mlp)
        shapes[f"transformer_blocks.0.{stream}.net.2"] = (mlp, width)
    for part in ("to_q", "to_k", "to_v"):
        shapes[f"single_transformer_blocks.0.attn.{part}"] = (width, width)
    shapes["single_transformer_blocks.0.proj_mlp"] = (width, mlp)
    shapes["single_transformer_blocks.0.proj_out"] = (width + mlp, width)
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for module, (fan_in, fan_out) in shapes.items():
        tensors[f"transformer.{module}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator)
        tensors[f"transformer.{module}.lora_B.weight"] = torch.randn(fan_out, rank, generator=generator)
    save_file(tensors, str(tmp_path / "real.safetensors"))
    kohya = export_kohya(tmp_path / "real.safetensors", tmp_path / "kohya.safetensors", family="flux1")
    from safetensors.torch import load_file

    back = _convert_kohya_flux_lora_to_diffusers(load_file(kohya))
    assert {k.replace("lora_A", "X").replace("lora_B", "X") for k in back} == {
        k.replace("lora_A", "X").replace("lora_B", "X") for k in tensors
    }
    for module in shapes:
        a, b = f"transformer.{module}.lora_A.weight", f"transformer.{module}.lora_B.weight"
        assert back[a].shape == (rank, shapes[module][0])  # split back to each part's own rank
        assert torch.allclose(back[b] @ back[a], tensors[b] @ tensors[a], atol=1e-3, rtol=1e-5)


def test_flux2_kohya_export_loads_back_through_diffusers_to_the_same_image(flux_trained, flux_pipes):
    from safetensors import safe_open

    result = flux_trained["flux2"][0]
    with safe_open(str(result.kohya), framework="pt") as handle:
        keys = list(handle.keys())
    assert "lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight" in keys
    assert "lora_unet_single_blocks_1_linear1.lora_down.weight" in keys
    pipe = flux_pipes["flux2"]
    pipe.load_lora_weights(str(result.weights.parent), weight_name=result.weights.name, adapter_name="d")
    pipe.load_lora_weights(str(result.kohya.parent), weight_name=result.kohya.name, adapter_name="k")
    try:
        diffusers_image = _render(pipe, ["d"], [1.0])
        kohya_image = _render(pipe, ["k"], [1.0])
    finally:
        pipe.unload_lora_weights()
    assert np.abs(diffusers_image - kohya_image).max() < 1e-5


def test_export_kohya_refuses_a_fused_layer_with_parts_missing(flux_trained, tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(flux_trained["flux1"][0].weights).items() if ".attn.to_k." not in k}
    save_file(tensors, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="img_attn_qkv needs LoRAs on all of"):
        export_kohya(tmp_path / "partial.safetensors", tmp_path / "k.safetensors", family="flux1")


def test_lora_targets_are_the_blocks_linear_layers(flux_pipes, demo_model_dir):
    from diffusers import UNet2DConditionModel

    flux1 = lora_target_modules(flux_pipes["flux1"].transformer, FAMILIES["flux1"].lora_targets)
    assert "proj_out" not in flux1 and "single_transformer_blocks.0.proj_out" in flux1  # not the final layer
    assert "transformer_blocks.0.ff_context.net.2" in flux1 and "transformer_blocks.0.norm1.linear" not in flux1
    flux2 = lora_target_modules(flux_pipes["flux2"].transformer, FAMILIES["flux2"].lora_targets)
    assert "single_transformer_blocks.0.attn.to_out" in flux2
    assert "transformer_blocks.0.attn.to_out" not in flux2  # a ModuleList; its Linear is to_out.0
    unet = UNet2DConditionModel.from_pretrained(demo_model_dir, subfolder="unet")
    assert lora_target_modules(unet, FAMILIES["sd15"].lora_targets) == list(FAMILIES["sd15"].lora_targets)


# -- presets and plans -----------------------------------------------------------------------


def _request(**changes):
    return TuneRequest(**{"title": "t", "name": "man", **changes})


def test_flux_lora_portrait_trains_27_steps_per_photo_and_at_least_300():
    request = _request(preset="flux-lora-portrait", seed=1)
    few = plan_training(request, num_images=5, native_resolution=1024, family="flux1")
    many = plan_training(request, num_images=20, native_resolution=1024, family="flux1")
    assert (few.max_train_steps, many.max_train_steps) == (300, 540)
    assert few.size == (1024, 1024) and few.rank == 16
    own = plan_training(_request(preset="flux-lora-portrait", max_train_steps=120), num_images=5,
                        native_resolution=1024, family="flux1")  # fmt: skip
    assert own.max_train_steps == 120  # the request's own steps win
    assert PRESETS["flux-lora-portrait"]["face_crop"] is True


def test_flux_lora_fast_and_focus_presets():
    fast = plan_training(_request(preset="flux-lora-fast"), num_images=4, native_resolution=1024, family="flux2")
    focus = plan_training(_request(preset="flux-lora-focus"), num_images=30, native_resolution=1024, family="flux1")
    assert (fast.max_train_steps, fast.size, fast.rank) == (300, (512, 512), 8)
    assert (focus.max_train_steps, focus.size) == (810, (1024, 1024))
    assert PRESETS["flux-lora-focus"]["face_crop"] is False


@pytest.mark.parametrize(
    ("family", "changes", "field"),
    [
        ("sd15", {"preset": "flux-lora-portrait"}, "preset"),
        ("sdxl", {"preset": "flux-lora-fast"}, "preset"),
        ("flux1", {"resolution": 520}, "resolution"),
        ("flux2", {"train_text_encoder": True}, "train_text_encoder"),
    ],
)
def test_plans_a_family_cannot_train_are_refused_naming_the_field(family, changes, field):
    with pytest.raises(InvalidInput) as error:
        plan_training(_request(**changes), num_images=4, native_resolution=1024, family=family)
    assert error.value.field == field


def test_flux_presets_and_novita_settings_come_through_api_fields():
    request = tune_request_from_fields(
        {"title": "t", "name": "woman", "preset": "flux-lora-portrait", "base_tune_id": "1504944"}
    )
    assert (request.preset, request.base_tune_id) == ("flux-lora-portrait", 1504944)
    check_request(request)
    novita = tune_request_from_fields(
        {"title": "t", "name": "man", "expert_setting": {"lora_r": 32, "learning_rate": 5e-5, "steps": 400}}
    )
    settings = plan_training(novita, num_images=3, native_resolution=1024, family="flux1")
    assert (settings.rank, settings.learning_rate, settings.max_train_steps) == (32, 5e-5, 400)


# -- memory estimate -------------------------------------------------------------------------


def test_memory_estimate_for_flux1_dev_at_1024_rank_16():
    estimate = estimate_training_memory(
        "flux1",
        resolution=1024,
        rank=16,
        batch_size=1,
        gradient_checkpointing=True,
        mixed_precision="bf16",
        train_text_encoder=False,
    )
    parts = estimate["breakdown"]
    assert estimate["phase"] == "training" and abs(sum(parts.values()) - estimate["gb"]) < 0.1
    assert 23.5 < parts["transformer"] < 24.0  # 11.9 B parameters in bf16
    assert parts["text_encoders"] == 0.0  # T5 and CLIP are dropped once the prompt is encoded
    assert abs(parts["lora_and_optimizer"] - 16 * 4_085_760 * 16 / 1e9) < 0.01
    assert 26 < estimate["gb"] < 32
    assert estimate["caching_gb"] < estimate["training_gb"]
    no_checkpointing = estimate_training_memory(
        "flux1", resolution=1024, rank=16, gradient_checkpointing=False, mixed_precision="bf16"
    )
    assert no_checkpointing["breakdown"]["activations"] > 5 * parts["activations"]
    assert no_checkpointing["gb"] > 50


def test_memory_estimate_grows_with_size_rank_batch_and_precision():
    def gb(family="flux1", **changes):
        args = {"resolution": 1024, "rank": 16, "batch_size": 1, "mixed_precision": "bf16", **changes}
        return estimate_training_memory(family, **args)["gb"]

    assert gb(resolution=512) < gb() < gb(resolution=1536)
    assert gb(rank=4) < gb() < gb(rank=64) and gb(batch_size=1) < gb(batch_size=2)
    assert gb(mixed_precision="no") > 1.9 * gb() - 5
    assert gb("flux2") < gb() and gb("sd15", resolution=512) < gb("sdxl") < gb("flux2")
    assert gb(train_text_encoder=True) > gb()
    with pytest.raises(ValueError, match="trains no text encoder"):
        estimate_training_memory("flux2", resolution=1024, rank=16, train_text_encoder=True)
    assert set(TRAINING) == set(FAMILIES)


def test_damaged_flux_checkpoint_copy_is_refused_before_loading(flux_trained, tmp_path):
    from studio.training import ResumeStateError

    folder = tmp_path / "checkpoint-3"
    shutil.copytree(flux_trained["flux1"][2][0].weights.parent, folder)
    (folder / RESUME_NAME).unlink()
    with pytest.raises(ResumeStateError, match="cannot be read"):
        train_lora(tmp_path / "no-model", "flux1", _photos(), SETTINGS, tmp_path / "o", title="t", trigger="ohwx",
                   resume_from=folder)  # fmt: skip


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("file", ["weights", "kohya"])
def test_a_trained_flux_lora_loads_in_the_engine_in_both_formats(flux_demo_dirs, flux_trained, family, file):
    """What training writes is what the engine reads: the diffusers file and the kohya copy
    (with its fused blocks at the demo's own widths) both load and change the image alike."""
    from studio.engine import Engine, GenerateRequest

    result = flux_trained[family][0]

    def render(engine, weights, weight):
        request = GenerateRequest(
            model=str(flux_demo_dirs[family]),
            family=family,
            prompt="a close photo of ohwx man",
            seed=3,
            num_inference_steps=2,
            width=64,
            height=64,
            guidance_scale=FAMILIES[family].default_guidance_scale,
            scheduler="euler",
            loras=(("jane", str(weights), weight),),
        )
        return np.asarray(engine.generate(request)[0].image, dtype=np.int16)

    engine = Engine("cpu")
    base, tuned = render(engine, getattr(result, file), 0.0), render(engine, getattr(result, file), 1.0)
    # Six steps on random photos move the tiny model a little, but visibly in 8-bit pixels.
    assert np.abs(tuned - base).max() >= 2
    if file == "kohya":
        same = render(Engine("cpu"), result.weights, 1.0)  # the diffusers file, in a fresh engine
        assert np.abs(tuned - same).max() <= 2
