"""Prompt text: the token grammar, `{{placeholder}}` templating, request validation, and the
A1111 `parameters` text written into every PNG. Pure functions; nothing here loads a model.

Grammar (DESIGN.md §3). Tokens may stand anywhere in a prompt's text; the weight is optional
(default 1.0); REF is a tune id or an adapter name:

    <lora:REF:W>      <be-lora:REF:W>                   a LoRA (trained tune or uploaded file)
    <faceid:REF:W>                                      IP-Adapter-FaceID from a faceid tune
    <face:NAME:W>     <be-face:NAME:W>                  a saved face avatar (FaceID)
    <style:NAME:W>    <be-style:NAME:W>                 a saved style image (IP-Adapter)
    <pose:NAME:W>     <be-pose:NAME:W>                  a saved pose image (ControlNet)

`parse_prompt` returns the clean text (tokens removed, spacing and commas tidied) and the typed
references in the order written. Anything that starts like a token (`<word:`) must be a valid
one: a misspelt kind or a bad weight is an error naming the token, never silently kept as text
(`<3` or `<b>` are plain text). Every error is a `PromptError` (an `InvalidInput` on the field
`text`), whatever the input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from studio.errors import InvalidInput
from studio.families import AR_ALIASES, ASPECT_RATIOS, SIZE_TIERS
from studio.prompt_weights import BREAK

# Canonical kinds and the spellings that mean them.
KINDS = {
    "lora": "lora",
    "be-lora": "lora",
    "faceid": "faceid",
    "face": "face",
    "be-face": "face",
    "style": "style",
    "be-style": "style",
    "pose": "pose",
    "be-pose": "pose",
}
# LoRAs may be subtracted; adapter scales may not.
WEIGHT_RANGES = {"lora": (-2.0, 2.0), "faceid": (0.0, 2.0), "face": (0.0, 2.0), "style": (0.0, 2.0), "pose": (0.0, 2.0)}

_TOKEN_START = re.compile(r"<([A-Za-z][A-Za-z0-9_-]*):")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(InvalidInput):
    """A prompt's text or parameters are wrong; the message names the token or field."""

    def __init__(self, message: str, *, field: str = "text"):
        super().__init__(message, field=field)


@dataclass(frozen=True)
class Reference:
    """One token: `kind` is canonical (lora, faceid, face, style, pose), `ref` the tune id or
    adapter name as written, `weight` the scale. `token` is the text as written, for messages;
    `explicit` is False when the token gave no weight (1.0, or a saved adapter's own default)."""

    kind: str
    ref: str
    weight: float = 1.0
    token: str = field(default="", compare=False)
    explicit: bool = field(default=True, compare=False)

    @property
    def tune_id(self) -> int | None:
        """The tune id when `ref` is all digits, else None (an adapter name)."""
        return int(self.ref) if self.ref.isdigit() else None

    def format(self) -> str:
        """The token in canonical spelling; `parse_prompt` reads it back to an equal Reference."""
        return f"<{self.kind}:{self.ref}:{format_weight(self.weight)}>"


@dataclass(frozen=True)
class ParsedPrompt:
    text: str
    references: tuple[Reference, ...] = ()

    def of_kind(self, kind: str) -> list[Reference]:
        return [r for r in self.references if r.kind == kind]

    def format(self) -> str:
        """Tokens first, then the clean text: a prompt that parses back to this one."""
        return " ".join([*(r.format() for r in self.references), self.text]).strip()


def parse_prompt(text: str) -> ParsedPrompt:
    """Split `text` into clean text and references. Raises PromptError naming the token for an
    unknown kind, a missing name, a weight that is not a number or is out of range, a token
    with too many parts, or one that is not closed with '>'."""
    if not isinstance(text, str):
        raise PromptError("The prompt text must be a string.")
    pieces: list[str] = []
    references: list[Reference] = []
    position = 0
    for match in _TOKEN_START.finditer(text):
        if match.start() < position:
            continue
        end = text.find(">", match.end())
        stray = re.search(r"[<\n]", text[match.end() : end if end != -1 else len(text)])
        if end == -1 or stray:
            shown = text[match.start() : match.end() + 20].split("\n")[0]
            raise PromptError(f"Token {shown!r}… is not closed: write it as <kind:name:weight>.")
        token = text[match.start() : end + 1]
        references.append(_reference(token, match.group(1), text[match.end() : end]))
        # A space keeps the words on either side apart and stops "<" + token + "x:y>" from
        # joining into a new token.
        pieces.extend([text[position : match.start()], " "])
        position = end + 1
    pieces.append(text[position:])
    return ParsedPrompt(tidy("".join(pieces)), tuple(references))


def canonical_text(text: str) -> str:
    """`text` with each token's kind in its canonical spelling (`<be-style:x:0.5>` becomes
    `<style:x:0.5>`), the rest as written: what the PNG parameters and the API show, so two
    spellings that render the same pixels read the same. `text` must parse."""
    return _TOKEN_START.sub(lambda m: f"<{KINDS.get(m.group(1).lower(), m.group(1))}:", text)


def _reference(token: str, kind_written: str, body: str) -> Reference:
    kind = KINDS.get(kind_written.lower())
    if kind is None:
        known = ", ".join(f"<{k}:…>" for k in KINDS)
        raise PromptError(f"Unknown token {token!r}: '{kind_written}' is not a token kind; use one of {known}.")
    parts = body.split(":")
    if len(parts) > 2:
        raise PromptError(f"Token {token!r} has too many ':' parts: write <{kind_written}:name:weight>.")
    ref = parts[0].strip()
    if not ref:
        raise PromptError(f"Token {token!r} has no name: write <{kind_written}:name:weight>.")
    if not _REF.fullmatch(ref):
        raise PromptError(
            f"Token {token!r}: '{ref}' is not a tune id or adapter name (letters, digits, '_', '-', '.')."
        )
    weight = 1.0
    if len(parts) == 2:
        raw = parts[1].strip()
        if not _NUMBER.fullmatch(raw):
            raise PromptError(f"Token {token!r}: weight '{raw}' is not a number.")
        weight = float(raw)
        low, high = WEIGHT_RANGES[kind]
        if not (math.isfinite(weight) and low <= weight <= high):
            raise PromptError(f"Token {token!r}: weight {raw} is out of range; use {low:g} to {high:g}.")
    return Reference(kind, ref, weight, token, explicit=len(parts) == 2)


def split_break(text: str) -> list[str]:
    """The parts of `text` between A1111's BREAK keywords, each tidied ("a man, BREAK a woman"
    gives ["a man", "a woman"]); one part when there is no BREAK. The text encoder reads each
    part in its own 75-token window (studio/prompt_weights.py); multi-person prompts give one
    part per person."""
    return [tidy(part) for part in BREAK.split(text)]


def tidy(text: str) -> str:
    """Collapse runs of spaces, drop spaces before commas and empty comma-separated items, and
    trim spaces and commas at both ends."""
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r" +,", ",", text)
    text = re.sub(r",(?:[ ]*,)+", ",", text)
    return text.strip(" ,\n\t")


def format_weight(weight: float) -> str:
    """Shortest text that reads back as the same float ('1' for 1.0, '0.65', '1e-05')."""
    text = repr(float(weight))
    return text[:-2] if text.endswith(".0") else text


def make_token(kind: str, ref: str | int, weight: float = 1.0) -> str:
    """The prompt token of `kind` for `ref` at `weight`, e.g. `<lora:12:1>`, `<be-style:cartoon:0.5>`."""
    return f"<{kind}:{ref}:{format_weight(weight)}>"


def add_trigger_words(text: str, words: list[str] | tuple[str, ...]) -> str:
    """Prefix the trigger words the text does not already contain (whole words, any case)."""
    missing = [w for w in words if w and not re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, re.IGNORECASE)]
    return tidy(" ".join([*missing, text]))


# -- templates -----------------------------------------------------------------------------


def template_values(tune: Mapping[str, Any]) -> dict[str, str]:
    """What `{{...}}` placeholders can name for a tune: `token` (default 'ohwx'), `name` (the
    class: man, woman, dog…), `title`, and each characteristic (eye_color, age…)."""
    values = {"token": tune.get("token") or "ohwx", "name": tune.get("name") or "", "title": tune.get("title") or ""}
    for key, value in (tune.get("characteristics") or {}).items():
        if value is not None and not isinstance(value, (dict, list)):
            values[str(key).lower()] = str(value)
    return values


def render_template(text: str, values: Mapping[str, str], *, strict: bool = True) -> str:
    """Fill `{{name}}` placeholders (spaces inside the braces allowed) from `values`. A
    placeholder with no value raises PromptError naming it when `strict`; otherwise it is
    dropped and the spacing tidied."""

    def fill(match: re.Match) -> str:
        key = match.group(1).lower()
        if key in values and values[key] != "":
            return values[key]
        if strict:
            known = ", ".join(sorted(k for k, v in values.items() if v)) or "none"
            raise PromptError(f"Placeholder {match.group(0)} has no value for this tune (known: {known}).")
        return ""

    filled = _PLACEHOLDER.sub(fill, text)
    return filled if strict else tidy(filled)


def placeholders(text: str) -> list[str]:
    """The placeholder names a template uses, in order, lower-cased."""
    return [m.group(1).lower() for m in _PLACEHOLDER.finditer(text)]


# -- request validation --------------------------------------------------------------------

SCHEDULERS = ("euler", "euler_a", "dpm++2m_karras", "dpm++sde_karras", "dpm++2m", "dpm++sde", "lcm", "tcd")
CONTROLNETS = ("pose", "canny")
MAX_IMAGES = 8
MAX_STEPS = 150
MAX_CFG = 30.0
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_SEED = 2**32 - 1
MAX_BEST_OF = 8  # candidates per image at most: each costs a generation


@dataclass(frozen=True)
class PromptRequest:
    """One generation request in Astria's field names (POST /tunes/:id/prompts).

    None means "the base model's default" for steps, cfg_scale, w, h and scheduler, and "pick
    one" for seed. `input_image` is the uploaded image's bytes (PNG/JPEG/WEBP): with `controlnet`
    it is the control image, otherwise the img2img start image; `controlnet_txt2img` makes it a
    control image only. `denoising_strength` is img2img's strength (1.0 keeps nothing of the
    image). `references` are role-tagged reference images, (role, bytes) pairs with a role of
    REFERENCE_ROLES, for base models that take reference images (FLUX.2 [klein]).

    Second passes (studio/detailer.py, the engine): `mask_image` (bytes, white = repaint) makes
    the input image an inpainting; `inpaint_faces` details the faces (None: automatic, see
    `face_detail_mode`) at `inpaint_faces_strength`, the faces `inpaint_faces_which` lists ("1,3":
    positions left to right; None: all); `hires_fix` upscales by `hires_scale` and denoises again
    at `hires_denoising_strength` for `hires_steps` (None: steps)."""

    text: str
    negative_prompt: str = ""
    num_images: int = 4
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    w: int | None = None
    h: int | None = None
    scheduler: str | None = None
    input_image: bytes | None = field(default=None, repr=False)
    denoising_strength: float = 0.8
    controlnet: str | None = None
    controlnet_conditioning_scale: float = 1.0
    controlnet_txt2img: bool = False
    super_resolution: bool = False
    face_correct: bool = False
    face_swap: bool = False
    callback: str | None = None
    references: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    aspect_ratio: str | None = None
    ar: str | None = None
    resolution: str | None = None
    use_lpw: bool | None = None
    lora_scale: float | None = None
    base_pack_id: int | None = None
    theme: str | None = None
    color_grading: str | None = None
    film_grain: bool = False
    mask_image: bytes | None = field(default=None, repr=False)
    inpaint_faces: bool | None = None
    inpaint_faces_strength: float = 0.4
    inpaint_faces_which: str | None = None
    hires_fix: bool = False
    hires_scale: float = 2.0
    hires_denoising_strength: float = 0.5
    hires_steps: int | None = None
    best_of: int = 1  # candidates per image; the most alike is kept (studio/services/best_of.py)
    # Said back on the prompt: fields accepted but not used and why (studio/prompt_fields.py),
    # or what the studio noticed making it (a pack placeholder left empty). Stored at creation,
    # first among the prompt's warnings when it finishes.
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptRequest:
        """Build from a JSON/form dict, converting types; unknown keys are ignored (Astria's
        clients send fields this studio does not use). Raises PromptError naming the field."""
        from studio.prompt_fields import ignored_warnings

        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known or value is None or value == "":
                continue
            if key == "references":
                values[key] = tuple((str(r), bytes(d)) for r, d in value)
            elif key == "warnings":
                values[key] = (value,) if isinstance(value, str) else tuple(str(w) for w in value)
            else:
                values[key] = _convert(key, value)
        if "text" not in values:
            raise PromptError("A prompt needs text.", field="text")
        ignored = ignored_warnings(data)
        if ignored:
            values["warnings"] = (*values.get("warnings", ()), *ignored)
        return cls(**values)

    def validate(self) -> PromptRequest:
        """Check every field up front; returns self or raises PromptError naming the field."""
        _check_range("num_images", self.num_images, 1, MAX_IMAGES)
        _check_range("best_of", self.best_of, 1, MAX_BEST_OF)
        if self.seed is not None:
            _check_range("seed", self.seed, 0, MAX_SEED)
        if self.steps is not None:
            _check_range("steps", self.steps, 1, MAX_STEPS)
        if self.cfg_scale is not None:
            _check_range("cfg_scale", self.cfg_scale, 0.0, MAX_CFG)
        for name in ("w", "h"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, MIN_SIZE, MAX_SIZE)
                if value % 8:
                    raise PromptError(f"{name}={value} is not a multiple of 8: try {value // 8 * 8}.", field=name)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise PromptError(
                f"scheduler '{self.scheduler}' is not one of: {', '.join(SCHEDULERS)}.", field="scheduler"
            )
        _check_range("denoising_strength", self.denoising_strength, 0.0, 1.0)
        _check_range("controlnet_conditioning_scale", self.controlnet_conditioning_scale, 0.0, 2.0)
        if self.controlnet is not None:
            if self.controlnet not in CONTROLNETS:
                raise PromptError(
                    f"controlnet '{self.controlnet}' is not available here: use one of {', '.join(CONTROLNETS)}.",
                    field="controlnet",
                )
            if self.input_image is None:
                raise PromptError(
                    "controlnet needs an input_image to take the pose or edges from.", field="input_image"
                )
        if self.input_image is not None and not (self.controlnet and self.controlnet_txt2img):
            check_img2img_steps(self.steps, self.denoising_strength)
        for role, _data in self.references:
            check_reference_role(role)
        if self.mask_image is not None and self.input_image is None:
            raise PromptError("mask_image needs the input_image it masks.", field="mask_image")
        if self.mask_image is not None and self.controlnet:
            raise PromptError("mask_image and controlnet cannot be combined: use one.", field="mask_image")
        _check_range("inpaint_faces_strength", self.inpaint_faces_strength, 0.01, 1.0)
        face_positions(self.inpaint_faces_which)
        _check_range("hires_scale", self.hires_scale, 1.05, 4.0)
        _check_range("hires_denoising_strength", self.hires_denoising_strength, 0.01, 1.0)
        if self.hires_steps is not None:
            _check_range("hires_steps", self.hires_steps, 1, MAX_STEPS)
        if self.negative_prompt and _TOKEN_START.search(self.negative_prompt):
            raise PromptError("Tokens like <lora:…> belong in text, not in negative_prompt.", field="negative_prompt")
        for name in ("aspect_ratio", "ar"):
            value = getattr(self, name)
            if value is not None and value.strip().lower() not in {*ASPECT_RATIOS, *AR_ALIASES}:
                allowed = ", ".join([*ASPECT_RATIOS, *(AR_ALIASES if name == "ar" else ())])
                raise PromptError(f"{name} '{value}' is not one of: {allowed}.", field=name)
        if self.resolution is not None and self.resolution.upper() not in SIZE_TIERS:
            raise PromptError(
                f"resolution '{self.resolution}' is not one of: {', '.join(SIZE_TIERS)}.", field="resolution"
            )
        if self.lora_scale is not None:
            _check_range("lora_scale", self.lora_scale, *WEIGHT_RANGES["lora"])
        if self.base_pack_id is not None:
            _check_range("base_pack_id", self.base_pack_id, 1, MAX_SEED)
        if self.color_grading is not None:
            from studio.look import canonical_grading

            canonical_grading(self.color_grading)  # raises PromptError naming the looks
        from studio.prompt_weights import fragments

        fragments(parse_prompt(self.text).text)  # a weight that is not a number is an error now
        return self

    def params(self) -> dict[str, Any]:
        """The fields worth storing with the prompt (JSON-safe; the image is stored apart)."""
        skip = {"text", "negative_prompt", "input_image", "callback", "references", "warnings", "mask_image"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


# Roles a reference image can play on a base model that takes reference images. `face` comes
# from a reference tune (<faceid:ID:w>) or an upload; the others are uploads or URLs only.
REFERENCE_ROLES = ("face", "outfit", "background", "pose", "style")

# What the model is told each role's images are for: the one place the role instructions are
# built (see `reference_instructions`).
_ROLE_PHRASES = {
    "face": "the person from {images}",
    "outfit": "wearing the outfit from {images}",
    "background": "in the background from {images}",
    "pose": "in the pose from {images}",
    "style": "in the style of {images}",
}


def face_positions(text: str | None) -> tuple[int, ...]:
    """`inpaint_faces_which` ("1, 3": face positions counted from the left, 1-based) as 0-based
    indices; () for None or empty (all faces). A PromptError naming the field otherwise."""
    if not text or not text.strip():
        return ()
    try:
        positions = tuple(int(part) - 1 for part in text.replace(" ", "").split(","))
    except ValueError:
        positions = (-1,)
    if any(p < 0 for p in positions):
        raise PromptError(
            f"inpaint_faces_which={text!r}: list face positions counted from the left, e.g. '1' or '1,3'.",
            field="inpaint_faces_which",
        )
    return positions


def check_reference_role(role: str) -> str:
    """`role` when it is one of REFERENCE_ROLES, else a PromptError naming it."""
    if role not in REFERENCE_ROLES:
        raise PromptError(f"reference role '{role}' is not one of: {', '.join(REFERENCE_ROLES)}.", field="references")
    return role


def reference_instructions(roles: Sequence[str]) -> str:
    """The sentence that tells a multi-reference editing model (FLUX.2 [klein]) what each of
    its reference images is for, numbered as the images are passed (1-based), e.g. for
    ("face", "face", "outfit"): "Show the person from images 1 and 2, wearing the outfit from
    image 3." It is put before the prompt text, and the images record it. Empty without roles."""
    if not roles:
        return ""
    parts = []
    for role in REFERENCE_ROLES:
        numbers = [str(i + 1) for i, r in enumerate(roles) if r == role]
        if numbers:
            images = (
                f"image {numbers[0]}" if len(numbers) == 1 else f"images {', '.join(numbers[:-1])} and {numbers[-1]}"
            )
            parts.append(_ROLE_PHRASES[role].format(images=images))
    if "face" not in roles:
        parts.insert(0, "the subject")
    return "Show " + ", ".join(parts) + "."


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(key: str, value: Any) -> Any:
    ints = {"num_images", "seed", "steps", "w", "h", "base_pack_id", "hires_steps", "best_of"}
    floats = {
        "cfg_scale",
        "denoising_strength",
        "controlnet_conditioning_scale",
        "lora_scale",
        "inpaint_faces_strength",
        "hires_scale",
        "hires_denoising_strength",
    }
    bools = {
        *("controlnet_txt2img", "super_resolution", "face_correct", "face_swap", "use_lpw", "film_grain"),
        *("inpaint_faces", "hires_fix"),
    }
    try:
        if key in ints:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        if key in floats:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if key in bools:
            return value if isinstance(value, bool) else _BOOLS[str(value).strip().lower()]
        if key in ("input_image", "mask_image"):
            if not isinstance(value, (bytes, bytearray)):
                raise ValueError
            return bytes(value)
    except (ValueError, KeyError, TypeError):
        raise PromptError(f"{key}={value!r} is not a valid value for {key}.", field=key) from None
    if not isinstance(value, str):
        # str() would store a number or an object as its Python repr, e.g. "{'a': 1}".
        raise PromptError(f"{key} must be text, not {_json_kind(value)}.", field=key)
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def check_img2img_steps(steps: int | None, strength: float) -> None:
    """img2img runs int(steps × denoising_strength) steps: refuse a request that would run none
    (PromptError naming denoising_strength). `steps` None (the model's default) checks only
    that the strength is above 0."""
    if strength <= 0 or (steps is not None and int(steps * strength) < 1):
        runs = f"{steps} steps × {strength:g}" if steps is not None else f"denoising_strength {strength:g}"
        raise PromptError(
            f"{runs} leaves img2img no step to run: raise denoising_strength (or steps) so that "
            "steps × denoising_strength is at least 1.",
            field="denoising_strength",
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise PromptError(f"{name}={value!r} is out of range: use {low:g} to {high:g}.", field=name)


# -- A1111 `parameters` text ---------------------------------------------------------------

SAMPLER_LABELS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpm++2m_karras": "DPM++ 2M Karras",
    "dpm++sde_karras": "DPM++ SDE Karras",
    "dpm++2m": "DPM++ 2M",
    "dpm++sde": "DPM++ SDE",
    "lcm": "LCM",
    "tcd": "TCD",
}
_PARAM = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def format_parameters(
    prompt: str,
    negative_prompt: str,
    *,
    steps: int,
    scheduler: str,
    cfg_scale: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A1111's `parameters` text: the prompt, a `Negative prompt:` line when there is one, and
    one line of `Key: value` pairs (Steps, Sampler, CFG scale, Seed, Size, Model, then `extra`).
    Values holding commas or quotes are quoted as A1111 does."""
    pairs = {
        "Steps": steps,
        "Sampler": SAMPLER_LABELS.get(scheduler, scheduler),
        "CFG scale": format_weight(cfg_scale),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model,
        **(extra or {}),
    }
    line = ", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs.items())
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    return "\n".join([*lines, line])


def _quote(value: str) -> str:
    """A1111's quoting: JSON strings for values holding a comma, colon or newline (and for
    values that start with a quote, which would otherwise read back unquoted)."""
    if "," not in value and ":" not in value and "\n" not in value and not value.startswith('"'):
        return value
    return json.dumps(value, ensure_ascii=False)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_parameters(text: str) -> dict[str, Any]:
    """Read A1111 `parameters` text back: `prompt`, `negative_prompt`, `steps`, `scheduler`
    (our name when the sampler label is known, else the label), `cfg_scale`, `seed`, `width`,
    `height`, `model`, and every other pair under `extra` as text. Raises PromptError when
    the last line holds no `Key: value` pairs."""
    *head, last = text.rstrip("\n").split("\n")
    pairs = {m.group(1).strip(): _unquote(m.group(2).strip()) for m in _PARAM.finditer(last)}
    if len(pairs) < 3:
        raise PromptError("These parameters have no 'Steps: …, Sampler: …' line.", field="parameters")
    prompt_lines, negative_lines, target = [], [], None
    for line in head:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].lstrip(" ")
        (prompt_lines if target is None else target).append(line)
    labels = {label: name for name, label in SAMPLER_LABELS.items()}
    out: dict[str, Any] = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    try:
        out["steps"] = int(pairs.pop("Steps"))
        sampler = pairs.pop("Sampler")
        out["scheduler"] = labels.get(sampler, sampler)
        out["cfg_scale"] = float(pairs.pop("CFG scale"))
        out["seed"] = int(pairs.pop("Seed"))
        width, height = pairs.pop("Size").split("x")
        out["width"], out["height"] = int(width), int(height)
    except (KeyError, ValueError) as exc:
        raise PromptError(f"These parameters lack a readable {exc}.", field="parameters") from None
    out["model"] = pairs.pop("Model", "")
    out["extra"] = pairs
    return out
