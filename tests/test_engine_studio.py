"""Prompts through the Studio: tokens resolved against tunes and adapters, stored, run on the
demo model, images and outcomes recorded; bad prompts store nothing."""

import io
import time

import numpy as np
import pytest
from lora_files import lora_factors, write_kohya_lora
from PIL import Image, ImageDraw

from studio.core import Studio
from studio.errors import Canceled, Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from studio.prompts import PromptError, PromptRequest, parse_parameters
from studio.runtime import Runtime

DEMO = 1  # the embedded demo model's gallery id
SMALL = {"w": 64, "h": 64, "steps": 3, "num_images": 1, "scheduler": "euler", "seed": 11}


@pytest.fixture(scope="module")
def engine():
    from studio.engine import Engine

    return Engine("cpu")


@pytest.fixture
def gen(studio, engine):
    """A studio sharing one warm engine across tests (injected through its runtime): the engine
    keys a local model by its real path, so each test's linked demo folder is the model already
    loaded."""
    shared = Studio(studio.settings, studio.store, studio.files, Runtime(studio.settings, engine=engine))
    yield shared
    shared.queue.close()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def texture(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype(np.uint8))


def skeleton(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    draw.line([(32, 8), (32, 36), (18, 60)], fill=(255, 0, 0), width=3)
    draw.line([(32, 16), (10, 24)], fill=(0, 255, 0), width=3)
    return image


def lora_tune(studio, engine, *, seed: int = 1, status: str = "SUCCESS", title: str = "toy lora") -> int:
    """A trained LoRA tune on the demo model, its weights fabricated (kohya layout)."""
    pipe = engine.load_model(str(studio.demo_model_dir))
    path = studio.files.scratch_dir() / "lora.safetensors"
    write_kohya_lora(path, lora_factors(pipe, seed=seed))
    return studio.store.add_tune(
        {
            "title": title,
            "name": "woman",
            "token": "ohwx",
            "model_type": "lora",
            "base_tune_id": DEMO,
            "status": status,
            "weights_path": studio.files.put_file(path, "weights"),
        }
    )


def faceid_tune(studio, *, dim: int = 128, seed: int = 0, title: str = "ann faceid") -> int:
    """A FaceID tune: a random unit embedding of the dlib backend's size, stored as .npy."""
    vector = np.random.RandomState(seed).randn(dim).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, vector / np.linalg.norm(vector))
    return studio.store.add_tune(
        {
            "title": title,
            "name": "woman",
            "model_type": "faceid",
            "status": "SUCCESS",
            "face_backend": "dlib" if dim == 128 else "insightface",
            "embedding_path": studio.files.put(buffer.getvalue(), "embeddings", ".npy"),
        }
    )


def run(studio, tune_id: int, fields) -> dict:
    """Create a prompt, let the job worker run it here, and return it as it ends."""
    created = studio.create_prompt(tune_id, fields)
    studio.run_pending()
    return studio.get_prompt(created["id"])


def image_of(studio, prompt: dict, index: int = 0) -> np.ndarray:
    return np.asarray(Image.open(studio.files.path(prompt["images"][index])), dtype=np.float64) / 255


def outputs(studio) -> list:
    return [p for p in (studio.files.root / "outputs").rglob("*.png")]


def test_a_plain_prompt_on_the_demo_model_stores_its_pngs_and_seeds(gen):
    prompt = run(gen, DEMO, {"text": "a portrait of ohwx man", **SMALL, "num_images": 2})
    assert prompt["status"] == "SUCCESS" and prompt["progress"] == 1.0 and prompt["completed_at"]
    assert prompt["seeds"] == [11, 12] and len(prompt["images"]) == 2
    assert all(path.startswith("outputs/") for path in prompt["images"])
    with Image.open(gen.files.path(prompt["images"][1])) as image:
        assert image.size == (64, 64)
        back = parse_parameters(image.info["parameters"])
    assert (back["prompt"], back["seed"], back["steps"], back["scheduler"]) == (
        "a portrait of ohwx man",
        12,
        3,
        "euler",
    )
    assert back["model"] == "Demo model (embedded, tiny)"
    rows = gen.store.prompt_images(prompt["id"])
    assert [(r["idx"], r["width"], r["height"]) for r in rows] == [(0, 64, 64), (1, 64, 64)]
    assert gen.get_prompt(prompt["id"]) == prompt
    assert [p["id"] for p in gen.list_prompts(DEMO)] == [prompt["id"]]


def test_the_issue_prompt_uses_every_asset(gen, engine):
    face = faceid_tune(gen)
    lora = lora_tune(gen, engine)
    gen.add_adapter("style", "cartoon1", png(texture(3)))
    gen.add_adapter("pose", "tennis", png(skeleton()))
    gen.add_adapter("lora", "toy", png_free_lora(gen, engine, seed=4), trigger_words=["toy_face"])
    text = (
        f"<faceid:{face}:0.8> <lora:toy:0.6> <lora:{lora}:0.7> <be-style:cartoon1:0.5> <be-pose:tennis:0.7> "
        "ohwx woman playing tennis, blue jacket"
    )
    full = run(gen, DEMO, {"text": text, **SMALL})
    plain = run(gen, DEMO, {"text": "ohwx woman playing tennis, blue jacket", **SMALL})
    assert full["status"] == "SUCCESS", full["message"]
    with Image.open(gen.files.path(full["images"][0])) as image:
        # The PNG and the API show the canonical token kinds (`<style:…>` for `<be-style:…>`).
        assert parse_parameters(image.info["parameters"])["prompt"] == text.replace("<be-", "<")
    assert full["text"] == text.replace("<be-", "<")
    assert np.abs(image_of(gen, full) - image_of(gen, plain)).mean() > 0.01
    for token in (f"<faceid:{face}:0.8>", "<be-style:cartoon1:0.5>", "<be-pose:tennis:0.7>", f"<lora:{lora}:0.7>"):
        without = run(gen, DEMO, {"text": text.replace(token, ""), **SMALL})
        assert np.abs(image_of(gen, full) - image_of(gen, without)).mean() > 0.002, token


def png_free_lora(studio, engine, *, seed: int) -> bytes:
    """The bytes of a kohya-format LoRA file for the demo model."""
    path = studio.files.scratch_dir() / "upload.safetensors"
    write_kohya_lora(path, lora_factors(engine.load_model(str(studio.demo_model_dir)), seed=seed))
    return path.read_bytes()


def test_a_lora_adapters_trigger_words_are_added_when_missing(gen, engine):
    gen.add_adapter("lora", "toy", png_free_lora(gen, engine, seed=4), trigger_words=["toy_face"])
    # At weight 0 the LoRA itself does nothing, so only the added trigger word can matter.
    bare = run(gen, DEMO, {"text": "<lora:toy:0> a woman", **SMALL})
    written = run(gen, DEMO, {"text": "<lora:toy:0> toy_face a woman", **SMALL})
    other = run(gen, DEMO, {"text": "a woman", **SMALL})
    np.testing.assert_array_equal(image_of(gen, bare), image_of(gen, written))
    assert np.abs(image_of(gen, bare) - image_of(gen, other)).mean() > 0.001


def test_a_prompt_posted_to_a_lora_or_faceid_tune_uses_that_tune(gen, engine):
    lora = lora_tune(gen, engine)
    face = faceid_tune(gen)
    base = image_of(gen, run(gen, DEMO, {"text": "ohwx woman", **SMALL}))
    on_lora = image_of(gen, run(gen, lora, {"text": "ohwx woman", **SMALL}))
    explicit = image_of(gen, run(gen, DEMO, {"text": f"<lora:{lora}:1> ohwx woman", **SMALL}))
    on_face = image_of(gen, run(gen, face, {"text": "ohwx woman", **SMALL}))
    assert np.abs(on_lora - base).mean() > 0.01 and np.abs(on_face - base).mean() > 0.01
    np.testing.assert_array_equal(on_lora, explicit)


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"text": "<foo:1> a man"}, PromptError, "Unknown token '<foo:1>'"),
        ({"text": "<lora:nothing:1> a man"}, PromptError, "unknown LoRA 'nothing'"),
        ({"text": "<lora:toy:x> a man"}, PromptError, "weight 'x' is not a number"),
        ({"text": "<style:none:1> a man"}, PromptError, "unknown style 'none'"),
        ({"text": "<faceid:999:1> a man"}, PromptError, "there is no tune 999"),
        ({"text": "a man", "w": 100}, PromptError, "w=100 is not a multiple of 8"),
        ({"text": "a man", "steps": 999}, PromptError, "steps=999 is out of range"),
        ({"text": "a man", "input_image": b"not an image"}, InvalidInput, "input_image is not a readable"),
    ],
)
def test_a_bad_prompt_is_a_clear_error_and_stores_nothing(gen, fields, error, words):
    with pytest.raises(error, match=words):
        run(gen, DEMO, {**SMALL, **fields})
    assert gen.list_prompts() == [] and outputs(gen) == []


def test_a_faceid_tune_used_as_a_lora_and_the_reverse_are_refused(gen, engine):
    face, lora = faceid_tune(gen), lora_tune(gen, engine)
    with pytest.raises(PromptError, match=rf"lora {face} is a faceid tune; use <faceid:{face}:0.5>"):
        run(gen, DEMO, {"text": f"<lora:{face}:0.5> a man", **SMALL})
    with pytest.raises(PromptError, match=rf"faceid {lora} is a lora tune; use <lora:{lora}:1>"):
        run(gen, DEMO, {"text": f"<faceid:{lora}:1> a man", **SMALL})
    with pytest.raises(PromptError, match="base model"):
        run(gen, DEMO, {"text": f"<lora:{DEMO}:1> a man", **SMALL})
    with pytest.raises(PromptError, match="one face token"):
        run(gen, DEMO, {"text": f"<faceid:{face}:1> <faceid:{face}:0.5> a man", **SMALL})
    assert gen.list_prompts() == []


def test_a_face_embedding_the_adapter_cannot_take_is_refused_before_storing(gen):
    face = faceid_tune(gen, dim=512)
    with pytest.raises(PromptError, match="512 values .* expects 128"):
        run(gen, DEMO, {"text": f"<faceid:{face}:1> a man", **SMALL})
    assert gen.list_prompts() == []


def test_gallery_models_that_cannot_run_here_fail_fast_and_store_nothing(gen):
    started = time.monotonic()
    with pytest.raises(Unavailable, match="not downloaded"):
        gen.create_prompt(690204, {"text": "a man", **SMALL})
    with pytest.raises(Unavailable, match="FLUX.1 \\[dev\\].*not downloaded"):  # runs here, once downloaded
        gen.create_prompt(1504944, {"text": "a man", **SMALL})
    with pytest.raises(NotFound):
        gen.create_prompt(424242, {"text": "a man", **SMALL})
    assert time.monotonic() - started < 5
    assert gen.list_prompts() == []


def test_a_prompt_on_an_untrained_tune_waits_then_runs_and_can_be_canceled(gen, engine):
    tune = lora_tune(gen, engine, status="TRAINING")
    waiting = run(gen, tune, {"text": "ohwx woman", **SMALL})
    assert waiting["status"] == "QUEUING" and waiting["images"] == []
    gen.store.update_tune(tune, status="SUCCESS")
    with pytest.raises(Canceled):
        gen.run_prompt(waiting["id"], should_stop=lambda: True)
    assert gen.get_prompt(waiting["id"])["status"] == "CANCELED"
    steps = []
    done = gen.run_prompt(waiting["id"], on_step=lambda i, total: steps.append((i, total)))
    assert done["status"] == "SUCCESS" and done["message"] is None and steps[-1] == (3, 3)
    assert gen.run_prompt(waiting["id"]) == done  # finished prompts are not run again


def test_a_run_that_fails_records_why(gen, engine):
    tune = lora_tune(gen, engine, seed=8, title="lost lora")
    gen.files.delete(gen.store.get_tune(tune)["weights_path"])
    prompt = run(gen, DEMO, {"text": f"<lora:{tune}:1> a man", **SMALL})
    assert prompt["status"] == "FAILED" and "upload it again" in prompt["message"]
    assert prompt["images"] == [] and outputs(gen) == []


def test_a_referenced_tune_that_is_not_trained_is_a_conflict(gen, engine):
    tune = lora_tune(gen, engine, status="TRAINING")
    with pytest.raises(Conflict, match="TRAINING"):
        run(gen, DEMO, {"text": f"<lora:{tune}:1> a man", **SMALL})


def test_input_image_runs_img2img_and_controlnet(gen):
    source = png(texture(5))
    img2img = run(gen, DEMO, PromptRequest(text="a man", input_image=source, denoising_strength=0.5, **SMALL))
    pose = run(
        gen,
        DEMO,
        {"text": "a man", "input_image": png(skeleton()), "controlnet": "pose", "controlnet_txt2img": "true", **SMALL},
    )
    assert img2img["status"] == pose["status"] == "SUCCESS"
    assert img2img["params"]["input_image_path"].startswith("photos/")
    with Image.open(gen.files.path(pose["images"][0])) as image:
        assert "ControlNet:" in image.info["parameters"]


def test_unavailable_post_processing_still_gives_the_image_with_a_warning(gen):
    prompt = run(gen, DEMO, {"text": "a man", "super_resolution": True, "face_correct": True, **SMALL})
    assert prompt["status"] == "SUCCESS" and len(prompt["images"]) == 1
    assert any(w.startswith("Super resolution was skipped") for w in prompt["warnings"])
    assert any(w.startswith("Face correction was skipped") for w in prompt["warnings"])


def test_adapters_are_validated(gen, engine):
    lora = png_free_lora(gen, engine, seed=2)
    for name in ("two words", "12", "", "x" * 65, "a/b"):
        with pytest.raises(InvalidInput) as info:
            gen.add_adapter("style", name, png(texture(1)))
        assert info.value.field == "name"
    with pytest.raises(InvalidInput) as info:
        gen.add_adapter("hat", "x", png(texture(1)))
    assert info.value.field == "kind"
    with pytest.raises(InvalidInput, match="pickle files are refused"):
        gen.add_adapter("lora", "old", b"\x80\x04\x95pickle" * 10)
    with pytest.raises(InvalidInput, match="no LoRA weights"):
        gen.add_adapter(
            "lora", "full", (gen.demo_model_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
        )
    with pytest.raises(InvalidInput, match="not a readable"):
        gen.add_adapter("pose", "pdf", b"%PDF-1.4 nothing")
    saved = gen.add_adapter("lora", "toy", lora, weight=0.8, trigger_words=["toy_face", " "])
    assert saved["family"] is None and saved["weight"] == 0.8 and saved["metadata"]["trigger_words"] == ["toy_face"]
    assert gen.files.read(saved["path"]) == lora
    with pytest.raises(Conflict):
        gen.add_adapter("lora", "toy", lora)
    assert [a["name"] for a in gen.list_adapters("lora")] == ["toy"]
    gen.delete_adapter("lora", "toy")
    assert gen.list_adapters() == [] and not gen.files.path(saved["path"]).exists()


def test_a_lora_over_the_size_limit_is_refused(tmp_path):
    from studio.config import Settings
    from studio.core import Studio

    small = Studio.open(Settings(home=tmp_path / "small", max_lora_mb=1))
    try:
        with pytest.raises(TooLarge, match="over 1 MB"):
            small.add_adapter("lora", "big", b"\0" * (2 * 2**20))
    finally:
        small.close()


def test_a_face_adapter_carries_the_face_backends_embedding(gen):
    from photos import astronaut

    face = gen.add_adapter("face", "eileen", png(astronaut().resize((256, 256))))
    assert face["metadata"]["embedding_dim"] == 128 and face["metadata"]["face_backend"] == "dlib"
    vector = np.load(gen.files.path(face["metadata"]["embedding_path"]))
    assert vector.shape == (128,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
    with_face = run(gen, DEMO, {"text": "<be-face:eileen:1> a woman", **SMALL})
    plain = run(gen, DEMO, {"text": "a woman", **SMALL})
    assert np.abs(image_of(gen, with_face) - image_of(gen, plain)).mean() > 0.01
    with pytest.raises(InvalidInput, match="No face"):
        gen.add_adapter("face", "blank", png(Image.new("RGB", (256, 256), (128, 128, 128))))


def test_a_token_without_a_weight_takes_the_saved_adapters_default(gen):
    gen.add_adapter("style", "quiet", png(texture(3)), weight=0.0)
    plain = image_of(gen, run(gen, DEMO, {"text": "a man", **SMALL}))
    default = image_of(gen, run(gen, DEMO, {"text": "<style:quiet> a man", **SMALL}))
    loud = image_of(gen, run(gen, DEMO, {"text": "<style:quiet:1> a man", **SMALL}))
    np.testing.assert_allclose(default, plain, atol=2 / 255)
    assert np.abs(loud - plain).mean() > 0.01
