"""Fuzzing with hypothesis: the request parsers and decoders that read what strangers send raise
nothing but the studio's own errors, and the API answers every body with less than 500.

- prompt fields and A1111 parameters text (the prompt grammar itself is fuzzed in
  test_prompts.py), templates;
- Rails-style form keys (studio/formdata.py), and multipart bodies, well-formed and mangled,
  POSTed to the whole app (`create_app`);
- images: random bytes and mutated real JPEG/PNG/WEBP photos through the upload decoder and the
  studio's image inputs; safetensors bytes through the LoRA upload check.

Every test is derandomized (the same examples on every run) with a bounded example count."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from photos import astronaut, cat, encode, exif_rotated_jpeg, scaled

from studio.errors import StudioError
from studio.formdata import nest, split_key
from studio.inspection import decode_photo, validate_uploads
from studio.prompts import (
    PromptError,
    PromptRequest,
    format_parameters,
    parse_parameters,
    placeholders,
    render_template,
)


def fuzz(examples: int = 100) -> settings:
    """Hypothesis settings for these tests: the same examples every run, `examples` of them."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- prompt fields, parameters text, templates ---------------------------------------------------

FIELD_NAMES = [
    "text",
    "negative_prompt",
    "num_images",
    "seed",
    "steps",
    "cfg_scale",
    "w",
    "h",
    "scheduler",
    "input_image",
    "denoising_strength",
    "controlnet",
    "controlnet_conditioning_scale",
    "controlnet_txt2img",
    "super_resolution",
    "face_correct",
    "face_swap",
    "callback",
    "unknown",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["8", " 64 ", "1e3", "nan", "inf", "-0", "true", "off", "euler", "pose", "<lora:x:1> a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
field_values = json_values | st.binary(max_size=16)  # a form's file parts arrive as bytes


@fuzz()
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=8))
def test_prompt_fields_raise_only_prompt_errors(fields):
    try:
        PromptRequest.from_dict(fields).validate()
    except PromptError:
        pass


REAL_PARAMETERS = format_parameters(
    'a "quoted", portrait\nsecond line',
    "blurry, text",
    steps=30,
    scheduler="dpm++2m_karras",
    cfg_scale=7.5,
    seed=42,
    width=512,
    height=768,
    model="Realistic Vision, 5.1",
    extra={"Lora hashes": "toy: 1234", "ControlNet": '"pose"'},
)


@fuzz(300)
@given(st.data())
@example(None)
def test_parameters_text_raises_only_prompt_errors(data):
    if data is None:
        text = REAL_PARAMETERS
    elif data.draw(st.booleans()):
        text = data.draw(st.text(max_size=200))
    else:  # a real text with a few characters replaced, dropped or repeated
        text = REAL_PARAMETERS
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(st.integers(0, len(text)))
            piece = data.draw(st.sampled_from(["", ",", ":", '"', "\n", "x", "Size: 9x", "Steps: ", "\\"]))
            cut = data.draw(st.integers(0, 3))
            text = text[:at] + piece + text[at + cut :]
    try:
        parse_parameters(text)
    except PromptError:
        pass


@fuzz()
@given(st.text(alphabet=st.sampled_from("{} abcTOKEN_\n"), max_size=40), st.booleans())
def test_templates_raise_only_prompt_errors(text, strict):
    values = {"token": "ohwx", "name": "woman", "eye_color": "blue eyes", "empty": ""}
    try:
        render_template(text, values, strict=strict)
    except PromptError:
        pass
    assert all(isinstance(name, str) for name in placeholders(text))


# -- form keys ----------------------------------------------------------------------------------

form_keys = (
    st.text(alphabet=st.sampled_from("tune[]images_0 x"), max_size=24)
    | st.from_regex(r"[a-z]{1,5}(\[[a-z_]{0,6}\]){0,4}", fullmatch=True)
    | st.text(max_size=12)
)


@fuzz(400)
@given(st.lists(st.tuples(form_keys, st.text(max_size=4)), max_size=10))
def test_form_keys_nest_or_raise_invalid_input(items):
    try:
        nested = nest(items)
    except StudioError as error:
        assert error.status == 422 and error.field is not None
        return
    for key, _ in items:  # every key's head is a top-level name
        assert split_key(key)[0] in nested


# -- multipart bodies through the whole app -----------------------------------------------------

KEY = "fuzz-key"
# Each route with the fields it needs to get past its first checks, so most bodies reach the
# deeper ones (photos, prompt fields, classes) before the fuzz adds, drops or mangles parts.
ROUTES = {
    "/tunes": [("tune[title]", "fuzz"), ("tune[name]", "woman"), ("tune[branch]", "fast")],
    "/tunes/1/prompts": [("prompt[text]", "a portrait"), ("prompt[num_images]", "1"), ("prompt[w]", "64")],
    "/images/inspect": [("name", "man")],
    "/p/corporate-headshots/tunes": [("tune[title]", "fuzz pack"), ("tune[name]", "woman")],
}
KNOWN_FIELDS = [
    "tune[title]",
    "tune[name]",
    "tune[branch]",
    "tune[token]",
    "tune[base_tune_id]",
    "tune[model_type]",
    "tune[callback]",
    "tune[image_urls][]",
    "tune[images][]",
    "tune[prompts_attributes][][text]",
    "tune[prompts_attributes][][num_images]",
    "tune[characteristics][eye_color]",
    "prompt[text]",
    "prompt[num_images]",
    "prompt[w]",
    "prompt[input_image]",
    "prompt[controlnet]",
    "prompt[callback]",
    "name",
    "file",
    "image",
    "image_url",
]
FIELD_VALUES = ["", "x", "fast", "woman", "man", "lora", "faceid", "1", "-1", "64", "9" * 30, "ohwx woman", "http://x/"]


@pytest.fixture(scope="module")
def client(tmp_path_factory, demo_model_dir):
    """The whole app for a studio with one API key, without a job worker (nothing runs)."""
    from fastapi.testclient import TestClient

    from app import create_app
    from studio.config import Settings
    from studio.core import Studio

    home = tmp_path_factory.mktemp("fuzz") / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, api_keys=(KEY,), demo_size=64, max_upload_mb=1, queue_limit=5))
    with TestClient(create_app(studio), raise_server_exceptions=True) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client
    studio.close()


def _tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


part_names = st.sampled_from(KNOWN_FIELDS) | form_keys | st.sampled_from(['a"b', "x\r\ny", "tune[images][]\x00"])
part_values = st.sampled_from(FIELD_VALUES) | st.text(max_size=30)
file_bodies = st.binary(max_size=300) | st.just(_tiny_png()) | st.just(b"\x89PNG\r\n\x1a\n")


@st.composite
def multipart_bodies(draw, route: str) -> tuple[str, bytes]:
    """(content type, body): a multipart body of text and file parts, often starting with the
    route's required fields, sometimes mangled."""
    boundary = draw(st.sampled_from(["fuzzboundary", "a", "----x" * 3]))
    chunks = []
    if draw(st.integers(0, 3)):
        for name, value in ROUTES[route]:
            head = f'Content-Disposition: form-data; name="{name}"'
            chunks.append(f"--{boundary}\r\n{head}\r\n\r\n{value}\r\n".encode())
    for _ in range(draw(st.integers(0, 6))):
        name = draw(part_names)
        if draw(st.booleans()):
            filename = draw(st.sampled_from(["a.png", "", "../../etc/passwd", 'q"uote.jpg', "x" * 300]))
            kind = draw(st.sampled_from(["image/png", "application/octet-stream", "", "text/plain"]))
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {kind}'
            payload = draw(file_bodies)
        else:
            head = f'Content-Disposition: form-data; name="{name}"'
            payload = draw(part_values).encode("utf-8", "surrogatepass")
        chunks.append(f"--{boundary}\r\n{head}\r\n\r\n".encode("utf-8", "surrogatepass") + payload + b"\r\n")
    body = b"".join(chunks) + (f"--{boundary}--\r\n".encode() if draw(st.booleans()) else b"")
    if draw(st.booleans()):  # mangle: cut, splice junk in, or drop bytes
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=20)) + body[at + draw(st.integers(0, 10)) :]
    content_type = draw(
        st.sampled_from(
            [  # mostly the right one, so most bodies are read
                *[f"multipart/form-data; boundary={boundary}"] * 6,
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "application/x-www-form-urlencoded",
                "application/json",
                "text/plain",
                "",
            ]
        )
    )
    return content_type, body


@fuzz(300)
@given(st.sampled_from(sorted(ROUTES)).flatmap(lambda route: st.tuples(st.just(route), multipart_bodies(route))))
@example(("/tunes", ("application/json", b"[" * 100_000)))
@example(("/tunes", ("application/json", b'{"tune": ' * 50_000)))
@example(("/tunes/1/prompts", ("application/json", b'{"prompt": {"text": "a", "num_images": 1e999}}')))
@example(("/tunes/1/prompts", ("application/x-www-form-urlencoded", b"prompt[text]=a&prompt[text][]=b")))
@example(
    (
        "/tunes",
        ("application/x-www-form-urlencoded", b"tune[title]=a&tune[name]=man&tune[characteristics]=" + b"[" * 50_000),
    )
)
@example(
    (
        "/tunes",
        (
            "application/x-www-form-urlencoded",
            b"tune[title]=a&tune[name]=man&tune[prompts_attributes]=" + b"[" * 50_000,
        ),
    )
)
@example(
    ("/tunes", ("application/x-www-form-urlencoded", b"tune[title]=a&tune[name]=man&tune[prompts]=" + b"[" * 50_000))
)
def test_api_never_answers_a_body_with_a_server_error(client, request):
    route, (content_type, body) = request
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(route, content=body, headers=headers)
    assert response.status_code < 500, (route, content_type, body[:200], response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json() or "detail" in response.json()


# -- images -------------------------------------------------------------------------------------


def _photo_files() -> list[bytes]:
    """Real photos (>= 256 px, so decoding goes all the way) in the three formats, one with EXIF."""
    face = scaled(astronaut(), 300)
    return [
        encode(face, "JPEG"),
        encode(scaled(cat(), 300), "PNG"),
        encode(face, "WEBP", quality=80),
        exif_rotated_jpeg(face),
        encode(face.convert("RGBA"), "PNG"),
        encode(face.convert("P"), "PNG"),
    ]


PHOTOS = _photo_files()


@st.composite
def mutated_photos(draw) -> bytes:
    """A real photo with a few bytes flipped, a slice cut out or repeated, or its end cut off.
    Positions favour the first 2 KB, where headers, EXIF and chunk lengths live."""
    data = bytearray(draw(st.sampled_from(PHOTOS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        reach = len(data) if draw(st.booleans()) else min(len(data), 2048)
        at = draw(st.integers(0, max(reach - 1, 0)))
        action = draw(st.sampled_from(["flip", "set", "cut", "repeat", "truncate"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@fuzz(300)
@given(st.binary(max_size=1024) | mutated_photos())
@example(b"")
@example(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
@example(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
@example(b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00" + b"\x00" * 64)
def test_photo_decoding_raises_only_invalid_input(data):
    try:
        photo = decode_photo(data, "upload.jpg", max_bytes=2**20)
    except StudioError as error:
        assert error.field == "file" and "upload.jpg" in error.message
    else:
        assert photo.image.mode == "RGB" and min(photo.image.size) >= 256
    photos, rejections = validate_uploads([("a.jpg", data)], max_photos=5)
    assert len(photos) + len(rejections) == 1


@pytest.fixture(scope="module")
def bare_studio(tmp_path_factory):
    from studio.config import Settings
    from studio.core import Studio

    studio = Studio.open(Settings(home=tmp_path_factory.mktemp("fuzz-images") / "home", max_lora_mb=1))
    yield studio
    studio.close()


names = iter(f"fuzz{n}" for n in range(10**6))


@fuzz(150)
@given(st.binary(max_size=512) | mutated_photos())
def test_studio_image_inputs_raise_only_studio_errors(bare_studio, data):
    """A style image goes through the studio's own decoder (as prompts' input images do)."""
    try:
        saved = bare_studio.add_adapter("style", next(names), data)
    except StudioError:
        return
    assert saved["metadata"]["width"] >= 16


def _lora_bytes(*, scalar: bool = False) -> bytes:
    """A small real safetensors LoRA (kohya key names, SD 1.5 cross-attention widths); with
    `scalar`, one whose cross-attention factor is a 0-d tensor (a shape with no width)."""
    import torch
    from safetensors.torch import save

    if scalar:
        return save(
            {"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.ones(())}
        )
    rng = torch.Generator().manual_seed(0)
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.randn(
            4, 768, generator=rng
        ),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.randn(
            320, 4, generator=rng
        ),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(4.0),
    }
    return save(tensors, metadata={"ss_network_module": "networks.lora"})


LORA = _lora_bytes()
HEADER_SIZE = int.from_bytes(LORA[:8], "little")


@st.composite
def mutated_loras(draw) -> bytes:
    """The LoRA with its JSON header edited (values swapped for other JSON) or its bytes cut."""
    if draw(st.booleans()):
        header = json.loads(LORA[8 : 8 + HEADER_SIZE])
        key = draw(st.sampled_from(sorted(header)))
        if draw(st.booleans()) and isinstance(header[key], dict):
            field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
            header[key][field] = draw(json_values)
        else:
            header[key] = draw(json_values)
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + LORA[8 + HEADER_SIZE :]
    data = LORA[: draw(st.integers(0, len(LORA)))]
    return data + draw(st.binary(max_size=16))


@fuzz(200)
@given(st.binary(max_size=64) | mutated_loras())
@example(LORA)
@example(_lora_bytes(scalar=True))
@example((30).to_bytes(8, "little") + b'{"a": ' + b"[" * 30)
@example((200_008).to_bytes(8, "little") + b'{"a":' + b"[" * 200_000 + b"}")
def test_lora_uploads_raise_only_studio_errors(bare_studio, data):
    try:
        saved = bare_studio.add_adapter("lora", next(names), data)
    except StudioError as error:
        assert error.field in ("file", "family")
        return
    assert saved["family"] in (None, "sd15", "sdxl")
