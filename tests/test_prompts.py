"""The prompt grammar, templates, request validation and A1111 parameters text (pure logic)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.errors import InvalidInput
from studio.prompts import (
    KINDS,
    SAMPLER_LABELS,
    ParsedPrompt,
    PromptError,
    PromptRequest,
    Reference,
    add_trigger_words,
    format_parameters,
    parse_parameters,
    parse_prompt,
    placeholders,
    render_template,
    template_values,
    tidy,
)

ISSUE_PROMPT = (
    "<faceid:12:0.8> <lora:toy:0.6> <be-style:cartoon1:0.5> <be-pose:tennis:0.7> ohwx woman playing tennis, blue jacket"
)


def test_the_issue_prompt_parses_to_clean_text_and_four_references():
    parsed = parse_prompt(ISSUE_PROMPT)
    assert parsed.text == "ohwx woman playing tennis, blue jacket"
    assert parsed.references == (
        Reference("faceid", "12", 0.8),
        Reference("lora", "toy", 0.6),
        Reference("style", "cartoon1", 0.5),
        Reference("pose", "tennis", 0.7),
    )
    assert parsed.references[0].tune_id == 12 and parsed.references[1].tune_id is None
    assert parsed.references[2].token == "<be-style:cartoon1:0.5>"


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("be-lora", "lora"),
        ("be-face", "face"),
        ("face", "face"),
        ("style", "style"),
        ("pose", "pose"),
        ("LORA", "lora"),
    ],
)
def test_every_spelling_maps_to_its_kind_and_weight_defaults_to_one(written, kind):
    (ref,) = parse_prompt(f"a <{written}:name1> b").references
    assert (ref.kind, ref.ref, ref.weight, ref.explicit) == (kind, "name1", 1.0, False)
    assert parse_prompt(f"<{written}:name1:1>").references[0].explicit


def test_tokens_in_the_middle_leave_tidy_text():
    parsed = parse_prompt("a photo of <lora:3:1> ohwx man , <style:oil>, in a park")
    assert parsed.text == "a photo of ohwx man, in a park"


def test_angle_brackets_that_are_not_tokens_stay_text():
    assert parse_prompt("I <3 cats, <b>bold</b>").text == "I <3 cats, <b>bold</b>"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<foo:1> man", ["Unknown token", "<foo:1>"]),
        ("<lora:toy:x>", ["<lora:toy:x>", "weight 'x' is not a number"]),
        ("<lora:toy:nan>", ["'nan' is not a number"]),
        ("<lora:toy:3>", ["out of range", "-2 to 2"]),
        ("<style:oil:-0.5>", ["out of range", "0 to 2"]),
        ("<lora::1>", ["has no name"]),
        ("<lora:a:1:2>", ["too many ':'"]),
        ("<lora:toy:1 man", ["not closed"]),
        ("<lora:to y:1>", ["not a tune id or adapter name"]),
    ],
)
def test_errors_name_the_token_and_the_problem(text, words):
    with pytest.raises(PromptError) as info:
        parse_prompt(text)
    assert isinstance(info.value, InvalidInput) and info.value.field == "text" and info.value.status == 422
    for word in words:
        assert word in info.value.message


refs = st.builds(
    Reference,
    kind=st.sampled_from(sorted(set(KINDS.values()))),
    ref=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True),
    weight=st.floats(min_value=0, max_value=2, allow_nan=False).map(lambda w: round(w, 3)),
)
words = st.from_regex(r"[a-z]{1,8}", fullmatch=True)
clean_texts = st.lists(st.lists(words, min_size=1, max_size=4).map(" ".join), max_size=4).map(", ".join)


@settings(max_examples=200, deadline=None)
@given(refs=st.lists(refs, max_size=5), text=clean_texts, aliases=st.booleans())
def test_format_then_parse_is_the_identity(refs, text, aliases):
    parsed = ParsedPrompt(text, tuple(refs))
    written = parsed.format()
    if aliases:  # the Block Entropy spellings read back the same
        for kind in ("style", "pose", "face"):
            written = written.replace(f"<{kind}:", f"<be-{kind}:")
    assert parse_prompt(written) == parsed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(words, refs.map(Reference.format), st.sampled_from([",", " ", "  ", " , "])), max_size=12))
def test_tokens_anywhere_come_out_in_order(pieces):
    written = " ".join(pieces)
    expected = [parse_prompt(p).references[0] for p in pieces if p.startswith("<")]
    assert list(parse_prompt(written).references) == expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.from_regex(r"[<>:a-z0-9.\- ,]{0,40}"))
def test_junk_raises_only_the_parsers_own_error_and_clean_text_is_stable(junk):
    try:
        parsed = parse_prompt(junk)
    except PromptError:
        return
    again = parse_prompt(parsed.text)
    assert again.references == () and again.text == parsed.text


def test_tidy_collapses_spaces_and_empty_commas():
    assert tidy("  a ,  , b,,c  , ") == "a, b,c"


def test_templates_fill_from_the_tune_and_its_characteristics():
    tune = {"token": "sks", "name": "woman", "title": "Ann", "characteristics": {"Eye_Color": "blue", "age": 30}}
    values = template_values(tune)
    text = "{{token}} {{ name }}, {{eye_color}} eyes, {{age}} years"
    assert placeholders(text) == ["token", "name", "eye_color", "age"]
    assert render_template(text, values) == "sks woman, blue eyes, 30 years"
    assert template_values({"name": "man"})["token"] == "ohwx"


def test_a_missing_placeholder_is_an_error_or_dropped():
    with pytest.raises(PromptError, match=r"\{\{hair\}\} has no value"):
        render_template("{{token}} with {{hair}} hair", {"token": "ohwx"})
    assert render_template("{{token}} , {{hair}}, smiling", {"token": "ohwx"}, strict=False) == "ohwx, smiling"


def test_trigger_words_are_added_only_when_missing():
    assert add_trigger_words("a photo of OHWX man", ["ohwx", "toy_face"]) == "toy_face a photo of OHWX man"
    assert add_trigger_words("toy_face woman", ["toy_face"]) == "toy_face woman"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"w": 100}, "w"),
        ({"h": 32}, "h"),
        ({"steps": 999}, "steps"),
        ({"num_images": 9}, "num_images"),
        ({"cfg_scale": 31}, "cfg_scale"),
        ({"seed": -1}, "seed"),
        ({"scheduler": "ddim"}, "scheduler"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"controlnet": "depth", "input_image": b"x"}, "controlnet"),
        ({"controlnet": "pose"}, "input_image"),
        ({"negative_prompt": "<lora:1:1>"}, "negative_prompt"),
        ({"text": "<lora:x:abc>"}, "text"),
    ],
)
def test_request_validation_names_the_field(fields, field):
    with pytest.raises(PromptError) as info:
        PromptRequest(**{"text": "a photo", **fields}).validate()
    assert info.value.field == field


def test_from_dict_converts_form_values_and_ignores_unknown_fields():
    request = PromptRequest.from_dict(
        {"text": "hi", "num_images": "2", "cfg_scale": "6.5", "face_correct": "true", "w": "512", "style": "Cinematic"}
    ).validate()
    assert (request.num_images, request.cfg_scale, request.face_correct, request.w) == (2, 6.5, True, 512)
    with pytest.raises(PromptError) as info:
        PromptRequest.from_dict({"text": "hi", "steps": "many"})
    assert info.value.field == "steps"
    with pytest.raises(PromptError):
        PromptRequest.from_dict({"negative_prompt": "x"})


def test_parameters_text_has_a1111_layout():
    text = format_parameters(
        "ohwx man",
        "blurry",
        steps=20,
        scheduler="dpm++2m_karras",
        cfg_scale=7.0,
        seed=5,
        width=512,
        height=768,
        model="m",
    )
    assert text == (
        "ohwx man\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 5, Size: 512x768, Model: m"
    )


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
    .map(str.strip)
    .filter(lambda t: t and not t.startswith("Negative prompt:") and "\nNegative prompt:" not in t),
    negative=st.text(alphabet="abc ,:<>\"'").map(str.strip),
    steps=st.integers(1, 150),
    scheduler=st.sampled_from(sorted(SAMPLER_LABELS)),
    cfg=st.floats(0, 30, allow_nan=False).map(lambda v: round(v, 2)),
    seed=st.integers(0, 2**32 - 1),
    size=st.tuples(st.integers(8, 256), st.integers(8, 256)).map(lambda s: (s[0] * 8, s[1] * 8)),
    model=st.text(alphabet='abcXYZ019 ,:/._-"').map(str.strip) | st.just('"quoted"'),
)
def test_parameters_parse_back_to_the_same_values(prompt, negative, steps, scheduler, cfg, seed, size, model):
    text = format_parameters(
        prompt,
        negative,
        steps=steps,
        scheduler=scheduler,
        cfg_scale=cfg,
        seed=seed,
        width=size[0],
        height=size[1],
        model=model,
        extra={"Denoising strength": 0.5},
    )
    back = parse_parameters(text)
    assert (back["prompt"], back["negative_prompt"], back["steps"], back["scheduler"]) == (
        prompt,
        negative,
        steps,
        scheduler,
    )
    assert (back["cfg_scale"], back["seed"], (back["width"], back["height"]), back["model"]) == (cfg, seed, size, model)
    assert back["extra"] == {"Denoising strength": "0.5"}


def test_parameters_without_a_settings_line_are_refused():
    with pytest.raises(PromptError):
        parse_parameters("just a prompt")
