"""Requests refused at once with a message naming the field: non-string prompt text, img2img
that would run no step, pack titles (worded as the pack's), invisible direction marks in names,
LoRAs of NaNs; black (NaN) outputs fail with a reason; Gradio's errors never show server paths."""

import json

import httpx
import numpy as np
import pytest
from api_helpers import live_studio
from photos import encode, friend
from PIL import Image

from studio.domain import FAILED, SUCCESS
from studio.errors import InvalidInput
from studio.packs import PackRequest
from studio.tune_requests import TuneRequest

DEMO_ID = 1


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [("text", 42, "a number"), ("text", {"a": 1}, "an object"), ("negative_prompt", ["x"], "a list")],
)
def test_prompt_text_must_be_a_string(tmp_path, demo_model_dir, field, value, kind):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        prompt = {"text": "a red bicycle", "num_images": 1, field: value}
        response = httpx.post(f"{url}/tunes/{DEMO_ID}/prompts", json={"prompt": prompt}, timeout=60)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field and kind in response.json()["error"]
        assert studio.store.list_prompts(tune_id=DEMO_ID) == []


def test_img2img_with_less_than_one_step_is_refused_at_once(tmp_path, demo_model_dir):
    start = encode(friend("rachel").resize((64, 64)), "PNG")
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        for fields in ({"steps": "2", "denoising_strength": "0.3"}, {"steps": "5", "denoising_strength": "0.1"}):
            form = {
                "prompt[text]": "a painting",
                "prompt[num_images]": "1",
                **{f"prompt[{k}]": v for k, v in fields.items()},
            }
            files = {"prompt[input_image]": ("start.png", start, "image/png")}
            response = httpx.post(f"{url}/tunes/{DEMO_ID}/prompts", data=form, files=files, timeout=60)
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "denoising_strength"
            assert "steps × denoising_strength" in response.json()["error"]
        assert studio.store.list_prompts(tune_id=DEMO_ID) == []
        # Enough steps: accepted.
        form = {
            "prompt[text]": "a painting",
            "prompt[num_images]": "1",
            "prompt[steps]": "4",
            "prompt[denoising_strength]": "0.5",
        }
        response = httpx.post(f"{url}/tunes/{DEMO_ID}/prompts", data=form, files=files, timeout=60)
        assert response.status_code == 201, response.text


def test_a_pack_title_error_speaks_of_the_pack(studio):
    with pytest.raises(InvalidInput) as error:
        studio.create_pack(PackRequest(title="x" * 300))
    assert error.value.field == "title" and "pack" in error.value.message and "tune" not in error.value.message


BIDI = ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f"]


@pytest.mark.parametrize("mark", BIDI)
def test_direction_marks_are_refused_in_titles_and_names(studio, mark):
    title = f"Jane{mark}gnp.exe"
    with pytest.raises(InvalidInput) as error:
        studio.create_tune(
            TuneRequest(title=title, name="woman", branch="fast"), photos=[("a.jpg", encode(friend("rachel")))]
        )
    assert error.value.field == "title" and f"U+{ord(mark):04X}" in error.value.message
    with pytest.raises(InvalidInput) as error:
        studio.create_pack(PackRequest(title=title))
    assert error.value.field == "title"
    with pytest.raises(InvalidInput) as error:
        studio.create_api_key(f"ops{mark}")
    assert error.value.field == "owner"
    with pytest.raises(InvalidInput) as error:
        studio.add_adapter("style", f"ink{mark}", encode(friend("rachel"), "PNG"))
    assert error.value.field == "name"
    assert studio.store.list_tunes() == []


def test_the_tunes_service_refuses_an_unknown_class(studio):
    with pytest.raises(InvalidInput) as error:
        studio.create_tune(
            TuneRequest(title="t", name="dragon", branch="fast"), photos=[("a.jpg", encode(friend("rachel")))]
        )
    assert error.value.field == "name"
    assert studio.store.db.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 0


def _lora(values: np.ndarray, dtype="F32") -> bytes:
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    down = np.ones((4, 768), np.float32)
    tensors = {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": values.astype(np.float32)}
    header, body = {}, b""
    for name, array in tensors.items():
        raw = array.tobytes()
        if dtype == "BF16":
            raw = (array.view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_lora_of_nans_is_refused_at_upload(studio, dtype, bad):
    up = np.full((320, 4), 0.01, np.float32)
    up[7, 2] = bad
    with pytest.raises(InvalidInput) as error:
        studio.add_adapter("lora", "broken", _lora(up, dtype))
    assert error.value.field == "file" and "NaN or infinite" in error.value.message
    assert "lora_up.weight" in error.value.message
    assert studio.list_adapters("lora") == []
    assert studio.add_adapter("lora", "fine", _lora(np.full((320, 4), 0.01, np.float32), dtype))["name"] == "fine"


def test_black_nan_outputs_fail_the_prompt_with_a_reason(studio, monkeypatch):
    from studio.engine import GeneratedImage

    def black(request, **callbacks):
        image = Image.new("RGB", (64, 64))
        return [GeneratedImage(image, encode(image, "PNG"), 1, "") for _ in range(request.num_images)]

    monkeypatch.setattr(studio.runtime, "generate", black)
    prompt = studio.create_prompt(DEMO_ID, {"text": "a cat", "num_images": 2, "steps": 2, "w": 64, "h": 64})
    studio.run_pending()
    row = studio.store.get_prompt(prompt["id"])
    assert row["status"] == FAILED and "black" in row["message"] and "NaN" in row["message"]
    assert studio.store.prompt_images(prompt["id"]) == []

    def one_black(request, **callbacks):
        images = [Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64), (90, 120, 40))]
        return [GeneratedImage(image, encode(image, "PNG"), 1, "") for image in images]

    monkeypatch.setattr(studio.runtime, "generate", one_black)
    prompt = studio.create_prompt(DEMO_ID, {"text": "a cat", "num_images": 2, "steps": 2, "w": 64, "h": 64})
    studio.run_pending()
    row = studio.store.get_prompt(prompt["id"])
    assert row["status"] == SUCCESS and any("Image 1 came out black" in w for w in row["warnings"])


def test_a_gradio_error_does_not_show_the_homes_layout(studio, live_url):
    """An event naming a file in a blocked folder used to answer with the blocked folders."""
    target = str(studio.home / "db" / "studio.db")
    payload = {"path": target, "orig_name": "x.jpg", "meta": {"_type": "gradio.FileData"}}
    response = httpx.post(f"{live_url}/gradio_api/call/upload_photos", json={"data": [[payload], "woman", None]})
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    stream = httpx.get(f"{live_url}/gradio_api/call/upload_photos/{event_id}", timeout=60).text
    assert "event: error" in stream
    assert str(studio.home) not in stream and "blocked" not in stream and "/db" not in stream
