"""The engine on the embedded demo model: every asset kind, determinism, LoRA formats and cache,
validation, progress, cancel, out-of-memory and the PNG parameters. All offline, CPU, 64 px."""

import dataclasses
import io
import shutil

import numpy as np
import pytest
from ldm_checkpoint import write_ldm_checkpoint
from lora_files import lora_factors, write_diffusers_lora, write_kohya_lora
from PIL import Image, ImageDraw

from studio.demo_model import read_manifest
from studio.errors import Canceled, InvalidInput, NotFound, OutOfMemory, Unavailable
from studio.prompts import parse_parameters

SIZE = 64


@pytest.fixture(scope="module")
def engine():
    from studio.engine import Engine

    return Engine("cpu")


@pytest.fixture(scope="module")
def assets(demo_model_dir, tmp_path_factory, engine):
    """Paths of the demo model's adapters, a style image, a pose skeleton and two LoRA files."""
    manifest = read_manifest(demo_model_dir)
    pipe = engine.load_model(str(demo_model_dir))
    folder = tmp_path_factory.mktemp("loras")
    rng = np.random.RandomState(0)
    return {
        "faceid": str(demo_model_dir / manifest["faceid"]["128"]),
        "style": str(demo_model_dir / manifest["style"]),
        "controlnet": str(demo_model_dir / manifest["controlnet"]["pose"]),
        "style_image": Image.fromarray((rng.rand(SIZE, SIZE, 3) * 255).astype(np.uint8)),
        "pose_image": skeleton(),
        "face": unit(rng.randn(128)),
        "lora_a": str(write_kohya_lora(folder / "a.safetensors", lora_factors(pipe, seed=1))),
        "lora_b": str(write_diffusers_lora(folder / "b" / "b.safetensors", lora_factors(pipe, seed=2))),
    }


def skeleton() -> Image.Image:
    """An OpenPose-style stick figure: coloured limbs on black, a ready conditioning map."""
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for (a, b), colour in zip(
        [((32, 10), (32, 34)), ((32, 16), (16, 28)), ((32, 16), (50, 6)), ((32, 34), (22, 58)), ((32, 34), (42, 58))],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)],
    ):
        draw.line([a, b], fill=colour, width=3)
    return image


def unit(vector) -> tuple[float, ...]:
    vector = np.asarray(vector, dtype=np.float64)
    return tuple(float(v) for v in vector / np.linalg.norm(vector))


def make(demo_model_dir, **fields):
    from studio.engine import GenerateRequest

    defaults = {
        "model": str(demo_model_dir),
        "prompt": "ohwx woman playing tennis, blue jacket",
        "num_inference_steps": 3,
        "width": SIZE,
        "height": SIZE,
        "seed": 7,
        "scheduler": "euler",
    }
    return GenerateRequest(**{**defaults, **fields})


def pixels(results, index: int = 0) -> np.ndarray:
    return np.asarray(results[index].image, dtype=np.float64) / 255.0


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def asset_fields(assets, kind: str, weight: float) -> dict:
    if kind == "lora":
        return {"loras": (("a", assets["lora_a"], weight),)}
    if kind == "faceid":
        return {"faceid_embedding": assets["face"], "faceid_adapter": assets["faceid"], "faceid_scale": weight}
    if kind == "style":
        return {"style_image": assets["style_image"], "style_adapter": assets["style"], "style_scale": weight}
    return {
        "control_image": assets["pose_image"],
        "controlnet": assets["controlnet"],
        "controlnet_conditioning_scale": weight,
    }


def test_same_seed_reproduces_the_images_and_each_image_has_its_own_seed(engine, demo_model_dir):
    first = engine.generate(make(demo_model_dir, num_images=2, seed=41))
    again = engine.generate(make(demo_model_dir, num_images=2, seed=41))
    assert [r.seed for r in first] == [41, 42]
    assert first[0].image.size == (SIZE, SIZE)
    np.testing.assert_array_equal(pixels(first, 0), pixels(again, 0))
    np.testing.assert_array_equal(pixels(first, 1), pixels(again, 1))
    assert diff(pixels(first, 0), pixels(first, 1)) > 0.01
    alone = engine.generate(make(demo_model_dir, seed=42))
    assert diff(pixels(alone), pixels(first, 1)) < 0.01  # image 2 of a batch re-runs from its seed


@pytest.mark.parametrize("kind", ["lora", "faceid", "style", "pose"])
def test_each_assets_weight_changes_the_output_more_as_it_grows(engine, demo_model_dir, assets, kind):
    base = pixels(engine.generate(make(demo_model_dir)))
    changes = [
        diff(pixels(engine.generate(make(demo_model_dir, **asset_fields(assets, kind, w)))), base)
        for w in (0.0, 0.5, 1.0)
    ]
    assert changes[0] < 1e-3, changes
    assert changes[0] < changes[1] < changes[2], changes
    assert changes[2] > 0.01, changes


def test_every_asset_together_and_back_to_the_base(engine, demo_model_dir, assets):
    base = pixels(engine.generate(make(demo_model_dir)))
    everything = {}
    for kind in ("lora", "faceid", "style", "pose"):
        everything.update(asset_fields(assets, kind, 0.8))
    together = pixels(engine.generate(make(demo_model_dir, **everything)))
    for kind in ("lora", "faceid", "style", "pose"):
        alone = pixels(engine.generate(make(demo_model_dir, **asset_fields(assets, kind, 0.8))))
        assert diff(together, alone) > 0.005, kind
    # Nothing of the previous request lingers: LoRAs off, IP-Adapters unloaded.
    np.testing.assert_allclose(pixels(engine.generate(make(demo_model_dir))), base, atol=2 / 255)


def test_faceid_and_style_with_user_loras_keep_the_loras_on(engine, demo_model_dir, assets):
    """Loading a FaceID adapter switches diffusers' active LoRAs to its own; the engine sets
    them all again, so the user's LoRA still counts."""
    face_only = make(demo_model_dir, **asset_fields(assets, "faceid", 1.0))
    with_lora = dataclasses.replace(face_only, loras=(("a", assets["lora_a"], 1.0),))
    assert diff(pixels(engine.generate(face_only)), pixels(engine.generate(with_lora))) > 0.01


def test_a_different_face_gives_a_different_image(engine, demo_model_dir, assets):
    one = make(demo_model_dir, **asset_fields(assets, "faceid", 1.0))
    other = dataclasses.replace(one, faceid_embedding=unit(np.random.RandomState(9).randn(128)))
    assert diff(pixels(engine.generate(one)), pixels(engine.generate(other))) > 0.01


def test_kohya_and_diffusers_lora_files_hold_the_same_lora(engine, demo_model_dir, tmp_path):
    factors = lora_factors(engine.load_model(str(demo_model_dir)), seed=5)
    kohya = write_kohya_lora(tmp_path / "kohya.safetensors", factors)
    diffusers_file = write_diffusers_lora(tmp_path / "diffusers" / "pytorch_lora_weights.safetensors", factors)
    base = pixels(engine.generate(make(demo_model_dir)))
    via_kohya = pixels(engine.generate(make(demo_model_dir, loras=(("k", str(kohya), 1.0),))))
    via_diffusers = pixels(engine.generate(make(demo_model_dir, loras=(("d", str(diffusers_file), 1.0),))))
    assert diff(via_kohya, base) > 0.01
    np.testing.assert_allclose(via_kohya, via_diffusers, atol=2 / 255)


def test_switching_between_loaded_loras_reads_nothing_from_disk(engine, demo_model_dir, assets, tmp_path):
    paths = {name: str(shutil.copy(assets[name], tmp_path / f"{name}.safetensors")) for name in ("lora_a", "lora_b")}
    first = {n: pixels(engine.generate(make(demo_model_dir, loras=((n, p, 1.0),)))) for n, p in paths.items()}
    for path in paths.values():  # the files are gone: only the loaded adapters can answer
        (tmp_path / path).unlink()
    for _ in range(2):
        for name, path in paths.items():
            np.testing.assert_array_equal(
                pixels(engine.generate(make(demo_model_dir, loras=((name, path, 1.0),)))), first[name]
            )
    both = pixels(engine.generate(make(demo_model_dir, loras=tuple((n, p, 0.7) for n, p in paths.items()))))
    assert diff(both, first["lora_a"]) > 0.005 and diff(both, first["lora_b"]) > 0.005
    assert set(paths.values()) <= set(engine.loaded_loras)


def test_a_missing_or_pickled_lora_is_a_clear_error(engine, demo_model_dir, tmp_path):
    with pytest.raises(NotFound, match="has no file"):
        engine.generate(make(demo_model_dir, loras=(("gone", str(tmp_path / "gone.safetensors"), 1.0),)))
    pickled = tmp_path / "old.ckpt"
    pickled.write_bytes(b"\x80\x04junk")
    with pytest.raises(InvalidInput, match="pickle"):
        engine.generate(make(demo_model_dir, loras=(("old", str(pickled), 1.0),)))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(InvalidInput, match="safetensors"):
        engine.generate(make(demo_model_dir, loras=(("broken", str(broken), 1.0),)))


def test_a_face_embedding_of_the_wrong_size_names_both_sizes(engine, demo_model_dir, assets):
    fields = asset_fields(assets, "faceid", 1.0) | {"faceid_embedding": unit(np.ones(512))}
    with pytest.raises(InvalidInput, match=r"512 values .* expects 128") as info:
        engine.generate(make(demo_model_dir, **fields))
    assert info.value.field == "faceid_adapter"


def test_a_512_d_faceid_adapter_takes_insightface_sized_faces(engine, demo_model_dir, tmp_path):
    from safetensors.torch import save_file

    from studio.demo_model import faceid_adapter_weights

    path = tmp_path / "faceid_512.safetensors"
    save_file(faceid_adapter_weights(engine.load_model(str(demo_model_dir)).unet, 512), str(path))
    base = pixels(engine.generate(make(demo_model_dir)))
    face = unit(np.random.RandomState(3).randn(512))
    request = make(demo_model_dir, faceid_embedding=face, faceid_adapter=str(path), faceid_scale=1.0)
    assert diff(pixels(engine.generate(request)), base) > 0.01
    with pytest.raises(InvalidInput, match=r"128 values .* expects 512"):
        engine.generate(dataclasses.replace(request, faceid_embedding=unit(np.ones(128))))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 100}, "width"),
        ({"height": 8}, "height"),
        ({"num_inference_steps": 999}, "num_inference_steps"),
        ({"num_images": 9}, "num_images"),
        ({"scheduler": "ddim"}, "scheduler"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"seed": 2**32}, "seed"),
        ({"family": "flux"}, "family"),
        ({"faceid_adapter": "x.safetensors"}, "faceid_adapter"),
        ({"init_image": Image.new("RGB", (8, 8)), "strength": 0.1}, "strength"),
        ({"loras": (("x", "x.safetensors", float("inf")),)}, "loras"),
    ],
)
def test_bad_requests_are_refused_up_front_naming_the_field(engine, demo_model_dir, fields, field):
    with pytest.raises(InvalidInput) as info:
        engine.generate(make(demo_model_dir, **fields))
    assert info.value.field == field


@pytest.mark.parametrize("scheduler", ["euler", "euler_a", "dpm++2m_karras", "dpm++sde_karras", "dpm++2m", "dpm++sde"])
def test_every_scheduler_runs_and_is_reproducible(engine, demo_model_dir, scheduler):
    request = make(demo_model_dir, scheduler=scheduler, num_inference_steps=4)
    first, again = engine.generate(request), engine.generate(request)
    np.testing.assert_array_equal(pixels(first), pixels(again))
    assert parse_parameters(first[0].parameters)["scheduler"] == scheduler


@pytest.mark.parametrize("scheduler", ["lcm", "tcd"])
def test_few_step_schedulers_run_without_guidance(engine, demo_model_dir, scheduler):
    results = engine.generate(make(demo_model_dir, scheduler=scheduler, guidance_scale=1.0, num_inference_steps=4))
    assert parse_parameters(results[0].parameters)["scheduler"] == scheduler


def test_png_parameters_parse_back_to_the_request(engine, demo_model_dir):
    request = make(
        demo_model_dir,
        prompt="ohwx man, portrait",
        parameters_prompt="<lora:3:0.5> ohwx man, portrait",
        negative_prompt="blurry, dark",
        num_inference_steps=4,
        guidance_scale=6.5,
        seed=1234,
        width=64,
        height=72,
        scheduler="dpm++2m_karras",
        model_name="Demo model",
    )
    (result,) = engine.generate(request)
    with Image.open(io.BytesIO(result.png)) as png:
        text = png.info["parameters"]
        assert png.size == (64, 72)
    assert text == result.parameters
    back = parse_parameters(text)
    assert back["prompt"] == "<lora:3:0.5> ohwx man, portrait" and back["negative_prompt"] == "blurry, dark"
    assert (back["steps"], back["scheduler"], back["cfg_scale"], back["seed"]) == (4, "dpm++2m_karras", 6.5, 1234)
    assert (back["width"], back["height"], back["model"]) == (64, 72, "Demo model")


def test_img2img_follows_the_input_image_more_at_low_strength(engine, demo_model_dir, assets):
    """The random demo VAE cannot give the image back, so compare two input images: at low
    strength the outputs differ as their inputs do; at strength 1 the input is mostly noise."""
    other = assets["pose_image"]

    def spread(strength):
        outputs = [
            pixels(engine.generate(make(demo_model_dir, init_image=image, strength=strength, num_inference_steps=10)))
            for image in (assets["style_image"], other)
        ]
        return diff(*outputs)

    assert spread(0.3) > 2 * spread(1.0)


def test_controlnet_on_img2img(engine, demo_model_dir, assets):
    request = make(demo_model_dir, init_image=assets["style_image"], strength=0.6, **asset_fields(assets, "pose", 1.0))
    (result,) = engine.generate(request)
    assert result.image.size == (SIZE, SIZE) and "ControlNet:" in result.parameters


def test_control_images_are_used_ready_or_turned_into_edges(engine, assets):
    from studio.engine import canny_edges, looks_like_control_map

    assert looks_like_control_map(assets["pose_image"])
    assert not looks_like_control_map(assets["style_image"])
    ready, warning = engine.prepare_control_image(assets["pose_image"], "auto", (SIZE, SIZE))
    assert warning is None and np.array_equal(np.asarray(ready), np.asarray(assets["pose_image"]))
    photo = Image.new("RGB", (SIZE, SIZE), (200, 200, 200))
    ImageDraw.Draw(photo).rectangle([16, 16, 48, 48], fill=(20, 40, 60))
    edges, warning = engine.prepare_control_image(photo, "auto", (SIZE, SIZE))
    assert warning is not None and "Canny" in warning  # no OpenPose detector installed here
    assert np.array_equal(np.asarray(edges), np.asarray(canny_edges(photo)))
    assert set(np.unique(np.asarray(edges))) == {0, 255}
    with pytest.raises(Unavailable, match="OpenPose"):
        engine.prepare_control_image(photo, "openpose", (SIZE, SIZE))


def test_progress_is_reported_every_step(engine, demo_model_dir):
    steps = []
    engine.generate(make(demo_model_dir, num_inference_steps=5), on_step=lambda i, total: steps.append((i, total)))
    assert steps == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_should_stop_cancels_between_steps(engine, demo_model_dir):
    steps = []
    with pytest.raises(Canceled, match="after step 2"):
        engine.generate(
            make(demo_model_dir, num_inference_steps=6),
            on_step=lambda i, total: steps.append(i),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    with pytest.raises(Canceled, match="before it started"):
        engine.generate(make(demo_model_dir), should_stop=lambda: True)


def test_out_of_memory_frees_the_cache_and_says_what_to_lower(engine, demo_model_dir):
    import torch

    def exhausted(step, total):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match="lower num_images") as info:
        engine.generate(make(demo_model_dir, num_images=2), on_step=exhausted)
    assert info.value.status == 503
    assert engine.generate(make(demo_model_dir))  # the engine still works afterwards


def test_pickle_checkpoints_and_unknown_models_are_refused(engine, tmp_path):
    from studio.engine import GenerateRequest

    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"\x80\x04pickle")
    with pytest.raises(InvalidInput, match="pickle"):
        engine.load_model(str(pickled))
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\xff" * 64)
    with pytest.raises(InvalidInput, match="safetensors"):
        engine.load_model(str(fake))
    with pytest.raises(NotFound):
        engine.load_model(str(tmp_path / "missing.safetensors"))
    with pytest.raises(InvalidInput, match="model_index.json"):
        engine.load_model(str(tmp_path))
    with pytest.raises(Unavailable, match="HF_HUB_OFFLINE"):
        engine.generate(GenerateRequest(model="nobody/no-such-model", prompt="x", width=64, height=64))


def test_a_single_file_checkpoint_loads_and_replaces_the_warm_model(engine, demo_model_dir, tmp_path):
    checkpoint = write_ldm_checkpoint(engine.load_model(str(demo_model_dir)), tmp_path / "tiny-sd15.safetensors")
    from_folder = pixels(engine.generate(make(demo_model_dir)))
    single = make(demo_model_dir, model=str(checkpoint), single_file_config=str(demo_model_dir))
    np.testing.assert_allclose(pixels(engine.generate(single)), from_folder, atol=1 / 255)
    assert engine.loaded_model == (str(checkpoint.resolve()), "sd15")
    # Without a config, diffusers wants the family's reference configs from the hub: offline,
    # that is a clear Unavailable, and the bad request leaves no half-loaded model behind.
    with pytest.raises(Unavailable, match="tiny-sd15.safetensors"):
        engine.generate(dataclasses.replace(single, single_file_config=None))
    np.testing.assert_array_equal(pixels(engine.generate(make(demo_model_dir))), from_folder)


def test_the_demo_model_ships_an_adapter_for_every_token(demo_model_dir):
    from safetensors import safe_open

    from studio.demo_model import VERSION

    manifest = read_manifest(demo_model_dir)
    assert manifest["version"] == VERSION and set(manifest["faceid"]) == {"128"}
    with safe_open(str(demo_model_dir / manifest["faceid"]["128"]), "pt") as faceid:
        keys = set(faceid.keys())
        assert faceid.get_slice("image_proj.proj.0.weight").get_shape()[1] == 128
    from diffusers import UNet2DConditionModel

    processors = list(UNet2DConditionModel.from_pretrained(demo_model_dir / "unet").attn_processors)
    cross = [name for name in processors if name.endswith("attn2.processor")]
    assert {f"ip_adapter.{i}.to_q_lora.down.weight" for i in range(len(processors))} <= keys
    assert {f"ip_adapter.{2 * i + 1}.to_k_ip.weight" for i in range(len(cross))} <= keys
    with safe_open(str(demo_model_dir / manifest["style"]), "pt") as style:
        assert style.get_slice("image_proj.proj.weight").get_shape() == [128, 32]  # 4 tokens x 32, CLIP 32
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_pretrained(demo_model_dir / manifest["controlnet"]["pose"])
    assert all(float(block.weight.detach().abs().sum()) > 0 for block in controlnet.controlnet_down_blocks)


def test_the_least_recently_used_lora_is_unloaded_past_the_limit(demo_model_dir, assets):
    from studio.engine import Engine

    small = Engine("cpu", max_loras=1)
    first = pixels(small.generate(make(demo_model_dir, loras=(("a", assets["lora_a"], 1.0),))))
    small.generate(make(demo_model_dir, loras=(("b", assets["lora_b"], 1.0),)))
    assert small.loaded_loras == [assets["lora_b"]]
    again = pixels(small.generate(make(demo_model_dir, loras=(("a", assets["lora_a"], 1.0),))))
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert small.loaded_loras == [assets["lora_a"]]
