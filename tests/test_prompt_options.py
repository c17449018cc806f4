"""Issue 17's prompt options on the demo model: sizes from aspect_ratio/resolution, A1111 prompt
weights, film looks and grain, lora_scale, base_pack_id, and every field of Astria's
prompt-create reference either honoured or answered with a warning."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import families, look, prompt_fields
from studio.core import Studio
from studio.errors import InvalidInput, NotFound
from studio.prompt_weights import fragments
from studio.prompts import PromptRequest, parse_parameters, split_break
from studio.runtime import Runtime

DEMO = 1
SMALL = {"w": 64, "h": 64, "steps": 2, "num_images": 1, "scheduler": "euler", "seed": 11}
REFERENCE = Path("/work/shared/reference/astria/docs_api_1-prompt_1-create.md")


@pytest.fixture(scope="module")
def engine():
    from studio.engine import Engine

    return Engine("cpu")


@pytest.fixture
def gen(studio, engine):
    shared = Studio(studio.settings, studio.store, studio.files, Runtime(studio.settings, engine=engine))
    yield shared
    shared.queue.close()


def run(studio, fields, tune_id: int = DEMO) -> dict:
    created = studio.create_prompt(tune_id, fields)
    studio.run_pending()
    prompt = studio.get_prompt(created["id"])
    assert prompt["status"] == "SUCCESS", prompt["message"]
    return prompt


def pixels(studio, prompt: dict) -> np.ndarray:
    return np.asarray(Image.open(studio.files.path(prompt["images"][0])), dtype=np.int16)


def parameters(studio, prompt: dict) -> dict:
    return parse_parameters(Image.open(studio.files.path(prompt["images"][0])).text["parameters"])


# -- the reference's fields ---------------------------------------------------------------


def reference_fields() -> list[str]:
    return re.findall(r"^#### `(\w+)`", REFERENCE.read_text(), re.M)


def test_every_reference_field_is_honoured_or_answered_with_a_warning():
    names = reference_fields()
    assert len(names) > 50 and "aspect_ratio" in names and "video_model" in names
    request_fields = set(PromptRequest.__dataclass_fields__) - {"warnings"}
    for name in names:
        honoured = name in request_fields or name in prompt_fields.API_FIELDS
        ignored = name in prompt_fields.IGNORED
        assert honoured != ignored, f"{name}: honoured={honoured}, ignored={ignored}"
    # Each ignored one says why, on the request.
    request = PromptRequest.from_dict({"text": "a man", **{n: "1" for n in names if n not in request_fields}})
    for name in names:
        if name in prompt_fields.IGNORED:
            assert any(w.startswith(f"{name} was ignored: ") for w in request.warnings), name
    assert PromptRequest.from_dict({"text": "a man", "community": False}).warnings == ()


def test_a_prompt_with_every_reference_field_is_made_and_keeps_its_warnings(gen):
    fields = {
        **SMALL,
        "text": "a man",
        "workspace_id": 3,
        "style": "Cinematic",
        "prompt_expansion": True,
        "video_model": "seedance_480p",
        "video_prompt": "he waves",
        "inpaint_faces": True,
        "theme": "winter",
        "aspect_ratio": "2:3",
        "color_grading": "Film Portra",
        "use_lpw": True,
    }
    prompt = run(gen, fields)
    for name in ("workspace_id", "style", "prompt_expansion", "video_model", "video_prompt"):
        assert any(w.startswith(f"{name} was ignored") for w in prompt["warnings"]), name
    assert not any(w.startswith("inpaint_faces") for w in prompt["warnings"])  # honoured
    assert prompt["params"]["theme"] == "winter" and prompt["params"]["color_grading"] == "Film Portra"
    assert prompt["params"]["inpaint_faces"] is True


# -- sizes --------------------------------------------------------------------------------


def test_aspect_ratios_map_to_each_familys_buckets():
    sd15, sdxl, flux = (families.FAMILIES[n] for n in ("sd15", "sdxl", "flux1"))
    assert families.bucket_size(sdxl, "16:9") == (1344, 768)
    assert families.bucket_size(sd15, "2:3") == (416, 624)
    assert families.bucket_size(flux, "21:9", "2K") == (2048, 880)
    assert families.bucket_size(flux, "1:1", "2K") == (2048, 2048)
    for fam in families.FAMILIES.values():
        for ratio, (_w, _h) in families.ASPECT_RATIOS.items():
            width, height = families.bucket_size(fam, ratio)
            assert width % fam.size_multiple == 0 and height % fam.size_multiple == 0
            a, b = (int(x) for x in ratio.split(":"))
            assert abs(width / height - a / b) < 0.06 * a / b, (fam.name, ratio)
    assert families.aspect_ratio("Portrait") == "2:3"


def test_aspect_ratio_sets_the_size_and_explicit_sides_win(gen):
    base = {k: v for k, v in SMALL.items() if k not in ("w", "h")}
    size = gen.settings.demo_size
    tall = run(gen, {**base, "text": "a man", "aspect_ratio": "2:3"})
    assert (tall["params"].get("w"), tall["params"].get("h")) == (None, None)
    image = Image.open(gen.files.path(tall["images"][0]))
    assert image.size == families.bucket_size(families.FAMILIES["sd15"], "2:3", native=size)
    assert image.height > image.width
    wide = run(gen, {**base, "text": "a man", "ar": "landscape", "w": 96})
    assert Image.open(gen.files.path(wide["images"][0])).size == (96, 64)
    with pytest.raises(InvalidInput) as error:
        gen.create_prompt(DEMO, {"text": "a man", "aspect_ratio": "7:5"})
    assert error.value.field == "aspect_ratio" and "16:9" in error.value.message
    with pytest.raises(InvalidInput) as error:
        gen.create_prompt(DEMO, {"text": "a man", "resolution": "2K"})
    assert error.value.field == "resolution" and "SD 1.5" in error.value.message


# -- prompt weights -------------------------------------------------------------------------


def test_a1111_weights_parse_as_a1111_does():
    assert fragments("a (red:1.5) car") == [("a ", 1.0), ("red", 1.5), (" car", 1.0)]
    assert fragments("(word) [thing]") == [("word", pytest.approx(1.1)), (" ", 1.0), ("thing", pytest.approx(1 / 1.1))]
    assert fragments(r"a \(literal\) (word:1.0)") == [("a (literal) word", 1.0)]
    assert fragments("one BREAK two") == [("one", 1.0), ("BREAK", -1.0), ("two", 1.0)]
    assert split_break("ohwx man, BREAK ohwx woman BREAK") == ["ohwx man", "ohwx woman", ""]
    with pytest.raises(InvalidInput):
        PromptRequest(text="a (red:1..2) car").validate()


def test_prompt_weights_change_the_image_and_weight_one_is_the_plain_word(gen):
    fields = {**SMALL, "text": "a portrait of a man with red hair"}
    plain = pixels(gen, run(gen, fields))
    same = run(gen, {**fields, "text": "a portrait of a man with (red:1.0) hair"})
    assert np.array_equal(plain, pixels(gen, same))
    heavy = run(gen, {**fields, "text": "a portrait of a man with (red:1.8) hair"})
    assert np.abs(pixels(gen, heavy) - plain).mean() > 0.5
    # The PNG keeps the text as written; use_lpw=false reads the brackets as text.
    assert parameters(gen, heavy)["prompt"] == "a portrait of a man with (red:1.8) hair"
    literal = run(gen, {**fields, "text": "a portrait of a man with (red:1.8) hair", "use_lpw": False})
    assert not np.array_equal(pixels(gen, literal), pixels(gen, heavy))


def test_the_tail_of_a_long_prompt_changes_the_image(gen):
    # The demo tokenizer spends about a token per letter, so 75 tokens pass quickly.
    head = "a portrait of a man, studio light, " * 4
    one = pixels(gen, run(gen, {**SMALL, "text": head + "red"}))
    other = pixels(gen, run(gen, {**SMALL, "text": head + "green forest at night"}))
    assert np.abs(one - other).mean() > 0.2
    again = pixels(gen, run(gen, {**SMALL, "text": head + "red"}))
    assert np.array_equal(one, again)


# -- look -----------------------------------------------------------------------------------


def test_film_looks_and_grain_are_reproducible_and_recorded(gen):
    fields = {**SMALL, "text": "a man in a park"}
    plain = pixels(gen, run(gen, fields))
    graded = run(gen, {**fields, "color_grading": "velvia"})
    assert np.abs(pixels(gen, graded) - plain).mean() > 1
    assert parameters(gen, graded)["extra"]["Color grading"] == "Film Velvia"
    grain = run(gen, {**fields, "film_grain": True})
    assert np.array_equal(pixels(gen, grain), pixels(gen, run(gen, {**fields, "film_grain": True})))
    assert 2 < np.abs(pixels(gen, grain) - plain).mean() < 12
    other_seed = run(gen, {**fields, "film_grain": True, "seed": 12})
    assert not np.array_equal(
        pixels(gen, other_seed) - pixels(gen, run(gen, {**fields, "seed": 12})), pixels(gen, grain) - plain
    )
    assert parameters(gen, grain)["extra"]["Film grain"] == "6"
    with pytest.raises(InvalidInput) as error:
        gen.create_prompt(DEMO, {"text": "a man", "color_grading": "Kodachrome"})
    assert "Film Portra" in error.value.message


def test_each_film_look_differs():
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (32, 32, 3)).astype(np.uint8))
    graded = {name: np.asarray(look.grade(image, name), dtype=np.int16) for name in look.COLOR_GRADINGS}
    names = list(graded)
    for i, a in enumerate(names):
        assert np.abs(graded[a] - np.asarray(image, dtype=np.int16)).mean() > 2
        for b in names[i + 1 :]:
            assert np.abs(graded[a] - graded[b]).mean() > 2


# -- lora_scale and base_pack_id --------------------------------------------------------------


def test_lora_scale_scales_the_tunes_own_lora(gen, engine):
    from lora_files import lora_factors, write_kohya_lora

    pipe = engine.load_model(str(gen.demo_model_dir))
    path = gen.files.scratch_dir() / "lora.safetensors"
    write_kohya_lora(path, lora_factors(pipe, seed=1))
    tune = gen.store.add_tune(
        {
            "title": "toy",
            "name": "woman",
            "token": "ohwx",
            "model_type": "lora",
            "base_tune_id": DEMO,
            "status": "SUCCESS",
            "weights_path": gen.files.put_file(path, "weights"),
        }
    )
    fields = {**SMALL, "text": "ohwx woman"}
    default = pixels(gen, run(gen, fields, tune))
    explicit_one = pixels(gen, run(gen, {**fields, "lora_scale": 1.0}, tune))
    assert np.array_equal(default, explicit_one)
    zero = pixels(gen, run(gen, {**fields, "lora_scale": 0}, tune))
    base = pixels(gen, run(gen, {**fields, "text": "ohwx woman"}, DEMO))
    assert np.array_equal(zero, base) and np.abs(default - zero).mean() > 0.5
    on_base = gen.create_prompt(DEMO, {**fields, "lora_scale": 0.5})
    assert on_base["warnings"] == [
        "lora_scale was ignored: it scales the LoRA of a LoRA tune, and this prompt's tune has none."
    ]


def test_base_pack_id_is_recorded_and_must_be_a_readable_pack(gen):
    pack = gen.list_packs()[0]
    prompt = run(gen, {**SMALL, "text": "a man", "base_pack_id": pack["id"]})
    assert prompt["params"]["base_pack_id"] == pack["id"]
    with pytest.raises(NotFound) as error:
        gen.create_prompt(DEMO, {"text": "a man", "base_pack_id": 99999})
    assert error.value.field == "base_pack_id"


def test_the_api_answers_unused_fields_and_files_with_warnings(tmp_path, demo_model_dir):
    import io

    import httpx
    from api_helpers import live_studio

    png = io.BytesIO()
    Image.new("L", (64, 64), 255).save(png, format="PNG")
    auth = {"Authorization": "Bearer opts-key"}
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=("opts-key",)) as (url, _studio):
        form = {
            "prompt[text]": "a man",
            "prompt[steps]": "2",
            "prompt[aspect_ratio]": "16:9",
            "prompt[film_grain]": "true",
            "prompt[video_model]": "kling25",
        }
        files = [
            ("prompt[image_references][]", ("a.png", png.getvalue(), "image/png")),
            ("prompt[video_first_frame]", ("f.png", png.getvalue(), "image/png")),
        ]
        response = httpx.post(f"{url}/tunes/1/prompts", data=form, files=files, headers=auth, timeout=60)
        assert response.status_code == 201, response.text
        made = response.json()
        assert made["aspect_ratio"] == "16:9" and made["film_grain"] is True
        ignored = {w.split(" was ignored")[0] for w in made["warnings"]}
        assert ignored == {"video_model", "image_references", "video_first_frame"}
        bad = httpx.post(f"{url}/tunes/1/prompts", json={"prompt": {"text": "a", "aspect_ratio": "1:7"}}, headers=auth)
        assert bad.status_code == 422 and "aspect_ratio" in bad.text


def test_pack_prompts_take_the_options(gen):
    from studio.packs import PackPromptRequest

    request = PackPromptRequest(
        class_name="man", text="{{token}} {{name}} at sea", aspect_ratio="2:3", color_grading="ektar", film_grain=True
    )
    assert request.params == {"aspect_ratio": "2:3", "color_grading": "ektar", "film_grain": True}
    with pytest.raises(InvalidInput) as error:
        _ = PackPromptRequest(class_name="man", text="x", aspect_ratio="2:7").params
    assert error.value.field == "aspect_ratio"


@pytest.mark.slow
def test_sdxl_reads_weights_and_long_prompts_with_both_text_encoders(sdxl_demo_dir):
    import dataclasses

    from studio.engine import Engine, GenerateRequest

    engine = Engine("cpu")
    request = GenerateRequest(
        model=str(sdxl_demo_dir),
        family="sdxl",
        prompt="a man with red hair",
        num_inference_steps=2,
        width=64,
        height=64,
        prompt_weights=True,
        negative_prompt="blurry",
    )

    def image(**changes) -> np.ndarray:
        return np.asarray(engine.generate(dataclasses.replace(request, **changes))[0].image, dtype=np.int16)

    plain = image()
    assert np.array_equal(plain, image(prompt="a man with (red:1.0) hair"))
    assert np.abs(image(prompt="a man with (red:1.8) hair") - plain).mean() > 0.2
    head = "a portrait of a man, studio light, " * 4
    assert np.abs(image(prompt=head + "red") - image(prompt=head + "green forest at night")).mean() > 0.2
    assert image(prompt=head + "(red:1.2)", negative_prompt="").std() > 1  # empty negative: zeros, as SDXL does


def test_resolution_tiers_follow_the_family():
    from studio.services.resolution import _request_size

    flux, sdxl = families.FAMILIES["flux1"], families.FAMILIES["sdxl"]
    base = {"title": "a base"}

    def size(facts, **fields):
        return _request_size(PromptRequest(text="x", **fields), facts, base, facts.native_size)

    assert size(flux, aspect_ratio="3:2", resolution="2k") == (2048, 1360)
    assert size(sdxl, aspect_ratio="16:9") == (1344, 768)
    assert size(sdxl, aspect_ratio="16:9", h=512) == (896, 512)
    assert size(sdxl) == (1024, 1024) and size(sdxl, w=640) == (640, 1024)
    assert size(flux, aspect_ratio="16:9", resolution="2K") == (2048, 1168)
    for facts, tier in ((sdxl, "2K"), (flux, "4K")):
        with pytest.raises(InvalidInput) as error:
            size(facts, resolution=tier)
        assert error.value.field == "resolution"
