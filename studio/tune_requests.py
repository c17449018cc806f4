"""What a person asks of a tune, as data: `TuneRequest` and its checks, presets and enums,
and `plan_training`, which turns a request into the complete `TrainSettings` (defaults < preset
< mock-mode limits < the request's own values).

Pure: no torch, no storage. The UI, the REST API and packs import this; `studio/training.py`
runs the plan.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from studio.domain import FLUX1, FLUX2
from studio.errors import InvalidInput, refuse_bidi
from studio.families import FAMILIES, TRAINING

MODEL_TYPES = ("lora", "faceid")
BRANCHES = ("fast", "sd15", "sdxl1")
BRANCH_FAMILY = {"sd15": "sd15", "sdxl1": "sdxl"}
LEARNING_RATES = (1e-4, 1e-5, 1e-6, 2e-4, 5e-5)  # Novita's choices
#: Timestep sampling / loss weighting of flow-matching training (diffusers' training_utils names).
WEIGHTING_SCHEMES = ("logit_normal", "none", "mode", "sigma_sqrt", "cosmap")
LR_SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup")
DEFAULT_TOKEN = "ohwx"
DEFAULT_INSTANCE_PROMPT = "a close photo of {token} {name}"
MAX_STEPS = 10_000
#: Steps per image times photos is capped here, so 50 photos do not mean a day of training.
MAX_AUTO_STEPS = 3_000

# Values a preset fills in; the request's own values win. `fast` is Astria's mock mode (branch
# "fast"): the embedded demo model, minimal steps and size, whatever else the request says.
DEFAULTS: dict[str, Any] = {
    "steps_per_image": 100,
    "learning_rate": 1e-4,
    "lr_scheduler": "constant",
    "lr_warmup_steps": 0,
    "rank": 8,
    "train_batch_size": 1,
    "train_text_encoder": False,
    "face_crop": False,
    "face_crop_ratio": 2.0,
    "face_restore": False,
    "sample_steps": 20,
    # Face-focused loss (studio/face_loss.py): None is by class, on for people, off otherwise.
    "face_loss_weight": None,
    "background_loss_weight": None,
    # Share of steps that train a photo on the instance prompt instead of its caption.
    "caption_dropout": 0.1,
}
PRESETS: dict[str, dict[str, Any]] = {
    "portrait": {"face_crop": True, "face_crop_ratio": 2.0, "steps_per_image": 100, "min_train_steps": 300, "rank": 16},
    "style": {
        "face_crop": False,
        "steps_per_image": 150,
        "min_train_steps": 300,
        "rank": 32,
        "lr_scheduler": "cosine",
        "instance_prompt": "an image in {token} style",
    },
    # Astria's step rule on any family: 27 steps per photo, at least 300 (10 photos: 300 steps,
    # 20 photos: 540), the rest as the defaults.
    "per-photo": {"steps_per_image": 27, "min_train_steps": 300},
    "fast": {"max_train_steps": 8, "resolution": 64, "rank": 4, "learning_rate": 2e-4, "sample_steps": 4},
    # Astria's Flux presets. Astria publishes what they are for and, for portrait and fast, the
    # step rule (27 steps per photo, at least 300); the other values are the studio's.
    # portrait: face features first, from face crops; recommended for all but style training.
    "flux-lora-portrait": {
        "steps_per_image": 27,
        "min_train_steps": 300,
        "face_crop": True,
        "face_crop_ratio": 2.0,
        "rank": 16,
        "learning_rate": 1e-4,
    },
    # focus: balances faces, products and styles, so the photos are trained on whole.
    "flux-lora-focus": {"steps_per_image": 27, "min_train_steps": 300, "face_crop": False, "rank": 16},
    # fast (legacy): cheaper than the full-size default; half the native side costs a quarter.
    "flux-lora-fast": {
        "steps_per_image": 27,
        "min_train_steps": 300,
        "rank": 8,
        "resolution": 512,
        "learning_rate": 2e-4,
    },
}
#: Presets made for some families only; the others apply to every family.
PRESET_FAMILIES: dict[str, tuple[str, ...]] = {
    "flux-lora-portrait": (FLUX1, FLUX2),
    "flux-lora-focus": (FLUX1, FLUX2),
    "flux-lora-fast": (FLUX1, FLUX2),
}
FAST_LIMITS = ("max_train_steps", "resolution", "sample_steps")


@dataclass(frozen=True)
class PromptSpec:
    """A prompt created with a tune and run once the tune is ready (Astria's `prompts_attributes`,
    a pack's prompts). `params` holds the generation fields (num_images, seed, w, h, ...)."""

    text: str
    negative_prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    callback: str | None = None
    orig_prompt_id: int | None = None


@dataclass(frozen=True)
class TuneRequest:
    """A tune to make from photos: Astria's fields plus Novita's training settings.

    Training fields left None come from the preset, then from DEFAULTS. `max_train_steps` is
    Astria's `steps`; without it, `steps_per_image` times the number of good photos is used.
    `face_crop_ratio` (>= 1: more of the head and shoulders) and `resize` (width, height) are
    Novita's `face_crop_region` and `resize` components; `face_restore` its `face_restore`
    (Astria's `training_face_correct`), applied when a face-restore model is installed.
    `face_loss_weight` and `background_loss_weight` weigh the loss by region
    (studio/face_loss.py; None: on for people, off otherwise). `captions` are the photos' own
    captions, in upload order (None or "" for one: made from its inspection)."""

    title: str
    name: str
    token: str = DEFAULT_TOKEN
    model_type: str = "lora"
    base_tune_id: int | None = None
    branch: str | None = None
    preset: str | None = None
    characteristics: Mapping[str, Any] | None = None
    callback: str | None = None
    prompts: tuple[PromptSpec, ...] = ()
    prompts_callback: str | None = None
    instance_prompt: str | None = None
    max_train_steps: int | None = None
    steps_per_image: int | None = None
    learning_rate: float | None = None
    lr_scheduler: str | None = None
    lr_warmup_steps: int | None = None
    rank: int | None = None
    resolution: int | None = None
    train_batch_size: int | None = None
    seed: int | None = None
    train_text_encoder: bool | None = None
    checkpointing_steps: int | None = None
    face_crop: bool | None = None
    face_crop_ratio: float | None = None
    resize: tuple[int, int] | None = None
    face_restore: bool | None = None
    face_loss_weight: float | None = None
    background_loss_weight: float | None = None
    caption_dropout: float | None = None
    captions: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run needs, complete (diffusers' argument names).

    Images are scaled to cover `size` (width, height) and centre-cropped. A checkpoint with a
    sample image is written every `checkpointing_steps` steps (0: only at the end). Mixed
    precision and gradient checkpointing are used on CUDA and left off elsewhere when 'auto'.
    `weighting_scheme` is how a flow-matching (Flux) training draws its timesteps and weighs
    its loss (diffusers' `weighting_scheme`: logit-normal sampling by default); SD ignores it.
    `face_loss_weight` and `background_loss_weight` weigh the loss by region (studio/face_loss.py;
    both 1: the plain loss). With captions, `caption_dropout` is the share of photo draws trained
    on `instance_prompt` instead of the photo's caption."""

    instance_prompt: str
    max_train_steps: int
    size: tuple[int, int] = (512, 512)
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    rank: int = 8
    train_batch_size: int = 1
    seed: int = 0
    train_text_encoder: bool = False
    checkpointing_steps: int = 0
    sample_steps: int = 20
    mixed_precision: str = "auto"
    gradient_checkpointing: bool | None = None
    weighting_scheme: str = "logit_normal"
    face_loss_weight: float = 1.0
    background_loss_weight: float = 1.0
    caption_dropout: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["size"] = tuple(values.get("size", (512, 512)))
        return cls(**values)


# -- requests --------------------------------------------------------------------------------

_WORD = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_NAME = re.compile(r"^[\w][\w \-]{0,49}$")


def check_request(request: TuneRequest) -> None:
    """Refuse a request whose values cannot work, naming the field (InvalidInput). Checks what
    needs neither photos nor models; `plan_training` checks the rest."""
    title = (request.title or "").strip()
    if not title or len(title) > 255:
        raise InvalidInput("Give the tune a title of 1 to 255 characters (a UUID works well).", field="title")
    refuse_bidi(title, "title")
    if not _NAME.match(request.name or ""):
        raise InvalidInput("name is the class of the subject, e.g. man, woman, cat, dog or style.", field="name")
    if not _WORD.match(request.token or ""):
        raise InvalidInput("token must be one word of letters, digits or _ (e.g. ohwx).", field="token")
    _choice(request.model_type, MODEL_TYPES, "model_type")
    _choice(request.branch, BRANCHES, "branch", optional=True)
    _choice(request.preset, tuple(PRESETS), "preset", optional=True)
    if request.characteristics is not None and (
        not isinstance(request.characteristics, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str | int | float) for k, v in request.characteristics.items())
    ):
        raise InvalidInput(
            'characteristics must be an object of text values, e.g. {"eye_color": "blue"}.', field="characteristics"
        )
    if request.learning_rate is not None and not any(
        math.isclose(request.learning_rate, lr, rel_tol=1e-6) for lr in LEARNING_RATES
    ):
        raise InvalidInput(
            f"learning_rate must be one of {', '.join(map(str, LEARNING_RATES))}.", field="learning_rate"
        )
    _choice(request.lr_scheduler, LR_SCHEDULERS, "lr_scheduler", optional=True)
    _int_range(request.max_train_steps, "max_train_steps", 1, MAX_STEPS)
    _int_range(request.steps_per_image, "steps_per_image", 1, 1000)
    _int_range(request.lr_warmup_steps, "lr_warmup_steps", 0, MAX_STEPS)
    _int_range(request.rank, "rank", 1, 256)
    _int_range(request.train_batch_size, "train_batch_size", 1, 16)
    _int_range(request.seed, "seed", 0, 2**32 - 1)
    _int_range(request.checkpointing_steps, "checkpointing_steps", 0, MAX_STEPS)
    _size(request.resolution, "resolution")
    if request.resize is not None:
        if len(request.resize) != 2:
            raise InvalidInput("resize is (width, height), e.g. (512, 512).", field="resize")
        for value in request.resize:
            _size(value, "resize")
    for name in ("face_loss_weight", "background_loss_weight"):
        value = getattr(request, name)
        if value is not None and not 0.0 <= float(value) <= 10.0:
            raise InvalidInput(f"{name} must be between 0 and 10 (1 weighs the region as the rest).", field=name)
    if request.caption_dropout is not None and not 0.0 <= float(request.caption_dropout) <= 1.0:
        raise InvalidInput("caption_dropout must be between 0 and 1.", field="caption_dropout")
    if request.captions is not None:
        check_captions(request.captions, request.token)
    if request.face_crop_ratio is not None and not 1.0 <= float(request.face_crop_ratio) <= 4.0:
        raise InvalidInput("face_crop_ratio must be between 1.0 (just the face) and 4.0.", field="face_crop_ratio")
    if len(request.prompts) > 100:
        raise InvalidInput("At most 100 prompts can be created with a tune.", field="prompts")
    for prompt in request.prompts:
        if not isinstance(prompt, PromptSpec) or not prompt.text or not prompt.text.strip():
            raise InvalidInput("Every prompt needs a text.", field="prompts")


_ALIASES = {
    "steps": "max_train_steps",
    "training_face_correct": "face_restore",
    "prompts_attributes": "prompts",
    "lora_r": "rank",
    "lora_rank": "rank",
    "network_dim": "rank",
    "batch_size": "train_batch_size",
}
_INT_FIELDS = frozenset(
    {
        "base_tune_id",
        "max_train_steps",
        "steps_per_image",
        "lr_warmup_steps",
        "rank",
        "resolution",
        "train_batch_size",
        "seed",
        "checkpointing_steps",
    }
)
_FLOAT_FIELDS = frozenset(
    {"learning_rate", "face_crop_ratio", "face_loss_weight", "background_loss_weight", "caption_dropout"}
)
_BOOL_FIELDS = frozenset({"train_text_encoder", "face_crop", "face_restore"})


def tune_request_from_fields(data: Mapping[str, Any]) -> TuneRequest:
    """A TuneRequest from API or form fields: Astria's names (`steps`, `training_face_correct`,
    `prompts_attributes`), Novita's `components` list and `expert_setting` object, and the form
    strings of multipart requests ("500", "true", JSON text). Fields the studio does not use
    (`images`, `auto_extend`…) are ignored; a value that cannot be converted is refused naming
    its field."""
    flat = {k: v for k, v in data.items() if k not in ("components", "expert_setting")}
    flat.update(data.get("expert_setting") or {})
    flat.update(_components(data.get("components") or []))
    known = {f.name for f in fields(TuneRequest)}
    values: dict[str, Any] = {}
    for key, value in flat.items():
        name = _ALIASES.get(key, key)
        if name in known and value is not None and value != "":
            values[name] = _convert(name, value)
    for required in ("title", "name"):
        if required not in values:
            raise InvalidInput(f"{required} is required.", field=required)
    return TuneRequest(**values)


def _convert(name: str, value: Any) -> Any:
    try:
        if name in _INT_FIELDS:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if name in _FLOAT_FIELDS:
            return float(value)
        if name in _BOOL_FIELDS:
            return _bool(value)
        if name == "resize":
            return tuple(int(v) for v in (value.split("x") if isinstance(value, str) else value))
        if name == "characteristics":
            return json.loads(value) if isinstance(value, str) else dict(value)
        if name == "captions":
            items = json.loads(value) if isinstance(value, str) and value.lstrip().startswith("[") else value
            items = [items] if isinstance(items, str) else list(items)
            return tuple(None if c in (None, "") else str(c) for c in items)
        if name == "prompts":
            return tuple(_prompt_spec(p) for p in (json.loads(value) if isinstance(value, str) else value))
    except (TypeError, ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested too deep
        raise InvalidInput(f"{name} has a value the studio cannot read: {value!r}.", field=name) from None
    return value if isinstance(value, str) else str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _prompt_spec(fields_: Any) -> PromptSpec:
    if isinstance(fields_, PromptSpec):
        return fields_
    if isinstance(fields_, str):
        return PromptSpec(text=fields_)
    rest = {
        k: v for k, v in dict(fields_).items() if k not in ("text", "negative_prompt", "callback", "orig_prompt_id")
    }
    orig = fields_.get("orig_prompt_id")
    return PromptSpec(
        text=str(fields_.get("text") or ""),
        negative_prompt=fields_.get("negative_prompt") or None,
        params=rest,
        callback=fields_.get("callback") or None,
        orig_prompt_id=int(orig) if orig not in (None, "") else None,
    )


def _components(components: Any) -> dict[str, Any]:
    """Novita's `components` ([{name, args: [{name, value}]}]) as TuneRequest fields."""
    out: dict[str, Any] = {}
    for component in components:
        args = {a.get("name"): a.get("value") for a in component.get("args") or []}
        name = component.get("name")
        if name == "face_crop_region":
            out.update(face_crop=True, face_crop_ratio=args.get("ratio", DEFAULTS["face_crop_ratio"]))
        elif name == "resize":
            out["resize"] = (args.get("width", 512), args.get("height", 512))
        elif name == "face_restore":
            out["face_restore"] = True
        else:
            raise InvalidInput(
                f"components: unknown component {name!r}; use face_crop_region, resize or face_restore.",
                field="components",
            )
    return out


def plan_training(
    request: TuneRequest, *, num_images: int, native_resolution: int, family: str | None = None
) -> TrainSettings:
    """The complete settings for a LoRA tune trained on `num_images` photos of a base model
    whose native image side is `native_resolution` (of `family`, when given: its presets, size
    multiple and what it trains are checked). Raises InvalidInput naming the field when the
    combination cannot work (warm-up longer than the run, prompt without the token, a preset
    of another family, a size the family cannot train)."""
    if family is not None and request.preset in PRESET_FAMILIES and family not in PRESET_FAMILIES[request.preset]:
        raise InvalidInput(
            f"preset {request.preset} is for FLUX base models; on this {family} base use portrait or style.",
            field="preset",
        )
    values = resolved_values(request)
    auto = max(values.get("min_train_steps", 0), values["steps_per_image"] * max(1, num_images))
    steps = values.get("max_train_steps") or min(MAX_AUTO_STEPS, auto)
    if values["lr_warmup_steps"] >= steps and values["lr_warmup_steps"] > 0:
        raise InvalidInput(
            f"lr_warmup_steps ({values['lr_warmup_steps']}) must be fewer than the {steps} training steps.",
            field="lr_warmup_steps",
        )
    prompt = _fill(values.get("instance_prompt") or DEFAULT_INSTANCE_PROMPT, request)
    if request.token not in prompt.split() and request.token not in prompt:
        raise InvalidInput(f"instance_prompt must contain the token {request.token!r}.", field="instance_prompt")
    side = values.get("resolution") or native_resolution
    size = tuple(values["resize"]) if values.get("resize") else (side, side)
    face_weight, background_weight = face_loss_weights(values, request.name)
    checkpointing = values.get("checkpointing_steps")
    if checkpointing is None:
        checkpointing = max(1, steps // 4) if steps >= 4 else 0
    settings = TrainSettings(
        instance_prompt=prompt,
        max_train_steps=int(steps),
        size=size,
        learning_rate=float(values["learning_rate"]),
        lr_scheduler=values["lr_scheduler"],
        lr_warmup_steps=int(values["lr_warmup_steps"]),
        rank=int(values["rank"]),
        train_batch_size=int(values["train_batch_size"]),
        seed=int(values["seed"]) if values.get("seed") is not None else random.randrange(1, 2**31),
        train_text_encoder=bool(values["train_text_encoder"]),
        checkpointing_steps=int(checkpointing),
        sample_steps=int(values["sample_steps"]),
        face_loss_weight=face_weight,
        background_loss_weight=background_weight,
        caption_dropout=float(values["caption_dropout"]),
    )
    if family is not None:
        check_family_settings(settings, family)
    return settings


def face_loss_weights(values: Mapping[str, Any], name: str) -> tuple[float, float]:
    """(face, background) loss weights of resolved `values` for subject class `name`: what the
    request or preset says, else the person defaults (studio/face_loss.py) for a human class
    and the plain loss (1, 1) for a pet or a style."""
    from studio.face_loss import NON_PERSON, PERSON_BACKGROUND_WEIGHT, PERSON_FACE_WEIGHT

    person = name not in NON_PERSON
    face, background = values.get("face_loss_weight"), values.get("background_loss_weight")
    if face is None:
        face = PERSON_FACE_WEIGHT if person else 1.0
    if background is None:
        background = PERSON_BACKGROUND_WEIGHT if person else 1.0
    return float(face), float(background)


#: A caption longer than this is refused (CLIP reads 77 tokens; T5 and Qwen more).
MAX_CAPTION = 500


def check_captions(captions: Any, token: str) -> None:
    """InvalidInput naming `captions` unless each is None/"" (made from the photo) or a text of
    at most MAX_CAPTION characters that contains the tune's token (the LoRA learns the token from
    the captions)."""
    for caption in captions:
        if caption in (None, ""):
            continue
        if not isinstance(caption, str) or len(caption) > MAX_CAPTION:
            raise InvalidInput(f"Each caption is a text of at most {MAX_CAPTION} characters.", field="captions")
        refuse_bidi(caption, "captions")
        if token not in re.findall(r"[A-Za-z0-9_]+", caption):
            raise InvalidInput(
                f"Each caption must contain the tune's token {token!r} (got {caption!r}).", field="captions"
            )


def check_family_settings(settings: TrainSettings, family: str) -> None:
    """InvalidInput naming the field when `family` cannot train with `settings`: a size that is
    not a multiple of the family's, a text encoder it does not train, an unknown weighting."""
    fam = FAMILIES[family]
    if any(side % fam.size_multiple for side in settings.size):
        field = "resize" if settings.size[0] != settings.size[1] else "resolution"
        raise InvalidInput(
            f"{fam.label} trains on sizes that are multiples of {fam.size_multiple} "
            f"(got {settings.size[0]}x{settings.size[1]}).",
            field=field,
        )
    if family in TRAINING and settings.train_text_encoder and not TRAINING[family].text_lora_components:
        raise InvalidInput(
            f"{fam.label} LoRAs train the transformer only; leave train_text_encoder off.",
            field="train_text_encoder",
        )
    if settings.weighting_scheme not in WEIGHTING_SCHEMES:
        raise InvalidInput(
            f"weighting_scheme must be one of {', '.join(WEIGHTING_SCHEMES)} (got {settings.weighting_scheme!r}).",
            field="weighting_scheme",
        )


def resolved_values(request: TuneRequest) -> dict[str, Any]:
    """Training values after layering DEFAULTS < preset < mock-mode limits < the request (the
    mock mode's step, size and sample limits win over the request, so `fast` stays cheap)."""
    values = {**DEFAULTS, **PRESETS.get(request.preset or "", {})}
    own = {f.name: getattr(request, f.name) for f in fields(request)}
    values.update({k: v for k, v in own.items() if v is not None and (k in DEFAULTS or k in _TRAINING_FIELDS)})
    if request.branch == "fast":
        values.update({k: PRESETS["fast"][k] for k in FAST_LIMITS})
    return values


_TRAINING_FIELDS = frozenset(
    {"instance_prompt", "max_train_steps", "resolution", "seed", "checkpointing_steps", "resize", "face_crop_ratio"}
)


def _fill(template: str, request: TuneRequest) -> str:
    text = template.replace("{{token}}", "{token}").replace("{{name}}", "{name}")
    return " ".join(text.replace("{token}", request.token).replace("{name}", request.name).split())


def _choice(value: Any, choices: tuple[str, ...], name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise InvalidInput(f"{name} must be one of: {', '.join(choices)} (got {value!r}).", field=name)


def _int_range(value: Any, name: str, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high} (got {value!r}).", field=name)


def _size(value: Any, name: str) -> None:
    if value is None:
        return
    _int_range(value, name, 64, 2048)
    if value % 8:
        raise InvalidInput(f"{name} must be a multiple of 8 (got {value}).", field=name)
