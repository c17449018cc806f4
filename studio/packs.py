"""Packs: themed prompt templates per class, their linter, the pack file format, and rankings.

A pack is a collection of prompt templates for one or more classes (man, woman, cat, dog…) plus
the tune config (model_type, base model, preset, token). A template's text may hold
`{{token}}`, `{{name}}` and characteristic placeholders (`{{eye_color}}`, `{{hair_color}}`…);
running a pack on a tune fills them from the tune and its characteristics. Everything here is
pure: `Studio` (studio/core.py) ties it to storage.

Rankings
--------
A pack prompt's images are shown to the person whose tune they were made for, and each image is
one chance to be liked. So a pack prompt (or a pack) is ranked by its like *rate*: likes `k`
over images shown `n`, summed over every prompt made from it. A raw rate overrates small samples
(1 like of 1 image is 100 %), and raw counts let a pack win by volume alone, so the score is the
lower bound of the Wilson score interval at 95 % confidence (z = 1.96):

    p = k / n
    score = (p + z²/2n - z·sqrt(p(1 - p)/n + z²/4n²)) / (1 + z²/n),   score = 0 when n = 0

It is the rate we are 97.5 % sure the prompt beats given what was seen: a new pack with 3 likes
of 6 images (0.19) ranks above an old one with 1,000 of 10,000 (0.094), but 1 of 1 (0.21) does
not beat 60 of 100 (0.50). Several people may like the same image, so `k` is capped at `n`. Ties
(notably every score of 0) put the least-shown first, so a pack nobody has tried yet sits above
packs that were shown often and never liked. Items shown fewer than `FEW_RATINGS` images are
flagged "new" (never shown) or "few ratings", so the UI can say the score is not settled yet.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from studio import prompts, tune_requests
from studio.errors import InvalidInput, TooLarge, refuse_bidi

# Characteristics the image inspection reports (Astria's `/images/inspect` keys).
CHARACTERISTICS = (
    "age",
    "body_type",
    "ethnicity",
    "eye_color",
    "facial_hair",
    "glasses",
    "hair_color",
    "hair_length",
    "hair_style",
    "headcover",
    "is_bald",
)
PLACEHOLDER_NAMES = ("token", "name", "title", *CHARACTERISTICS)
CLASS_NAMES = ("man", "woman", "boy", "girl", "baby", "person", "couple", "cat", "dog", "style")
# Subject classes: a template for one must not put the token before another.
SUBJECT_CLASSES = frozenset(CLASS_NAMES) - {"style"}
# A pack's `args` may set these TuneRequest fields for the tunes made from it.
TRAINING_ARGS = tuple(
    f.name
    for f in fields(tune_requests.TuneRequest)
    if f.name
    not in {"title", "name", "token", "model_type", "base_tune_id", "branch", "preset", "characteristics", "callback"}
    and not f.name.startswith("prompts")
)
# Generation parameters a template may set (PromptRequest fields that need no input image).
PARAM_NAMES = (
    *("cfg_scale", "steps", "scheduler", "w", "h", "seed", "super_resolution", "face_correct", "face_swap"),
    *("aspect_ratio", "resolution", "lora_scale", "use_lpw", "color_grading", "film_grain"),
    *("inpaint_faces", "inpaint_faces_strength", "hires_fix", "hires_scale", "hires_denoising_strength"),
)
# Tokens people hard-code instead of writing {{token}}.
COMMON_TOKENS = ("ohwx", "sks")
MAX_IMAGES = prompts.MAX_IMAGES
FEW_RATINGS = 20
Z_95 = 1.96
FORMAT = "avatar-studio-pack"
FORMAT_VERSION = 1
# A pack is listed whole by every `GET /packs`: its text stays small. Images are stored as
# files, so a pack file may add up to one upload's worth of them (STUDIO_MAX_UPLOAD_MB).
MAX_PACK_TEXT_BYTES = 5 * 2**20
MAX_PACK_PROMPTS = 500
MAX_PACK_CLASSES = 50
MAX_FIELD_CHARS = 2000


def max_file_bytes(max_upload_mb: int) -> int:
    """The largest pack file: its text, plus one upload's worth of images in base64."""
    return MAX_PACK_TEXT_BYTES + max_upload_mb * 2**20 * 4 // 3


@dataclass(frozen=True)
class PackRequest:
    """A pack's own fields, as the create and edit forms and pack files give them."""

    title: str
    slug: str | None = None
    description: str = ""
    classes: tuple[str, ...] = ()
    model_type: str = "lora"
    base_tune_id: int | None = None
    preset: str | None = None
    token: str = "ohwx"
    args: Mapping[str, Any] = field(default_factory=dict)
    public: bool = True
    unlisted: bool = False


@dataclass(frozen=True)
class PackPromptRequest:
    """One template of a pack, for one class. Generation parameters use Astria's prompt field
    names (the names pack files and the REST API carry): `cfg_scale` (guidance scale), `steps`
    (inference steps), `scheduler`, `w`/`h` (pixels, multiples of 8), `seed`,
    `super_resolution`, `face_correct`, `face_swap`, `aspect_ratio`, `resolution`,
    `lora_scale`, `use_lpw`, `color_grading`, `film_grain`, `inpaint_faces` (None: automatic,
    True/False: on/off), `inpaint_faces_strength`, `hires_fix`, `hires_scale`,
    `hires_denoising_strength`. Unset parameters take the base model's defaults when the prompt
    runs."""

    class_name: str
    text: str
    negative_prompt: str = ""
    num_images: int = 1
    cfg_scale: float | None = None
    steps: int | None = None
    scheduler: str | None = None
    w: int | None = None
    h: int | None = None
    seed: int | None = None
    super_resolution: bool = False
    face_correct: bool = False
    face_swap: bool = False
    aspect_ratio: str | None = None
    resolution: str | None = None
    lora_scale: float | None = None
    use_lpw: bool | None = None
    color_grading: str | None = None
    film_grain: bool = False
    inpaint_faces: bool | None = None
    inpaint_faces_strength: float | None = None
    hires_fix: bool = False
    hires_scale: float | None = None
    hires_denoising_strength: float | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The set generation parameters, checked (raises InvalidInput). A parameter at its
        default is unset: False is kept where None is the default (inpaint_faces off)."""
        defaults = {f.name: f.default for f in fields(self)}
        return check_params(
            {name: getattr(self, name) for name in PARAM_NAMES if getattr(self, name) != defaults[name]}
        )


@dataclass(frozen=True)
class LintIssue:
    """One finding of `lint`: `level` is 'error' (the class cannot run) or 'warning'."""

    level: str
    code: str
    message: str
    class_name: str | None = None
    pack_prompt_id: int | None = None


# -- templates --------------------------------------------------------------------------------


def pack_values(tune: Mapping[str, Any]) -> dict[str, str]:
    """What fills a pack template for `tune` (token, name, characteristics; see
    `prompts.template_values`), leaving out characteristics inspection reported as 'NONE'."""
    values = prompts.template_values(tune)
    return {key: value for key, value in values.items() if value.strip() and value.strip().upper() != "NONE"}


def fill_template(text: str, values: Mapping[str, str]) -> tuple[str, list[str]]:
    """Fill a template's placeholders from `values`. Returns the text and the names that had
    no value; those are dropped with the comma item they leave empty ('ohwx woman,
    {{eye_color}}, smiling' becomes 'ohwx woman, smiling')."""
    missing = [name for name in dict.fromkeys(prompts.placeholders(text)) if not values.get(name)]
    return prompts.render_template(text, values, strict=False), missing


def missing_warning(missing: Iterable[str]) -> str:
    """The warning on a prompt whose template had placeholders the tune has no value for."""
    names = ", ".join(f"{{{{{name}}}}}" for name in missing)
    return (
        f"Left out of the prompt: {names}: the tune has no value for it. Set it in the tune's "
        "characteristics (or the photo set's, before the tune is made) to fill it in."
    )


def slugify(title: str) -> str:
    """A URL slug from a title: lowercase ASCII words joined by '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if not slug:
        raise InvalidInput(f"Cannot make a slug from {title!r}: use letters or digits in the title.", field="slug")
    return slug[:80].rstrip("-")


# -- validation -------------------------------------------------------------------------------


def check_pack(request: PackRequest) -> PackRequest:
    """Validate a pack request (its preset and training args as a tune made from it would be
    checked); returns it with a slug (from the title when not given)."""
    for name in ("title", "slug", "description", "token", "preset"):
        check_text(getattr(request, name), name, optional=name in ("slug", "preset", "description"))
    if len(request.classes) > MAX_PACK_CLASSES:
        raise InvalidInput(f"A pack has at most {MAX_PACK_CLASSES} classes.", field="classes")
    title = request.title.strip()
    if not title or len(title) > 255:
        raise InvalidInput("Give the pack a title of 1 to 255 characters.", field="title")
    refuse_bidi(title, "title")
    slug = request.slug.strip() if request.slug else slugify(title)
    if slugify(slug) != slug:
        raise InvalidInput(
            f"Slug {slug!r} must be lowercase letters, digits and '-', e.g. {slugify(slug)!r}.", field="slug"
        )
    token = request.token.strip()
    if not re.fullmatch(r"[a-z0-9]{2,16}", token):
        raise InvalidInput(
            f"Token {token!r} must be one lowercase word of 2 to 16 letters or digits, e.g. 'ohwx'.", field="token"
        )
    unknown = sorted(set(request.args) - set(TRAINING_ARGS))
    if unknown:
        raise InvalidInput(
            f"Unknown training arg(s) {', '.join(unknown)}: use {', '.join(TRAINING_ARGS)}.", field="args"
        )
    tune_requests.check_request(
        tune_requests.TuneRequest(
            title=title,
            name="person",
            token=token,
            model_type=request.model_type,
            preset=request.preset,
            **request.args,
        )
    )
    classes = tuple(dict.fromkeys(check_class_name(name) for name in request.classes))
    return replace(request, title=title, slug=slug, token=token, classes=classes, args=dict(request.args))


def pack_columns(request: PackRequest) -> dict[str, Any]:
    """The store's column values for a checked pack request."""
    return {
        "slug": request.slug,
        "title": request.title,
        "description": request.description,
        "classes": list(request.classes),
        "model_type": request.model_type,
        "base_tune_id": request.base_tune_id,
        "preset": request.preset,
        "token": request.token,
        "args": dict(request.args),
        "public": int(request.public),
        "unlisted": int(request.unlisted),
    }


def pack_request(row: Mapping[str, Any]) -> PackRequest:
    """The request that describes a stored pack (the starting point of an edit)."""
    names = [f.name for f in fields(PackRequest)]
    values = {name: row[name] for name in names if row.get(name) is not None}
    return PackRequest(
        **{
            **values,
            "classes": tuple(row.get("classes") or ()),
            "public": bool(row["public"]),
            "unlisted": bool(row["unlisted"]),
        }
    )


def check_class_name(name: str) -> str:
    """A class name is one lowercase word (man, woman, cat, dog…)."""
    name = (name or "").strip().lower()
    if not re.fullmatch(r"[a-z][a-z_]{1,31}", name):
        raise InvalidInput(f"Class {name!r} must be one word such as {', '.join(CLASS_NAMES[:4])}.", field="class_name")
    return name


def check_pack_prompt(request: PackPromptRequest) -> dict[str, Any]:
    """Validate a pack prompt; returns its column values (class_name, text, negative_prompt,
    num_images, params). Raises InvalidInput naming the field."""
    check_text(request.text, "text")
    check_text(request.negative_prompt, "negative_prompt", optional=True)
    text = request.text.strip()
    if not text:
        raise InvalidInput("A pack prompt needs text, e.g. 'portrait of {{token}} {{name}}'.", field="text")
    if not 1 <= int(request.num_images) <= MAX_IMAGES:
        raise InvalidInput(f"num_images must be 1 to {MAX_IMAGES}.", field="num_images")
    return {
        "class_name": check_class_name(request.class_name),
        "text": text,
        "negative_prompt": (request.negative_prompt or "").strip(),
        "num_images": int(request.num_images),
        "params": request.params,
    }


def check_text(value: Any, field: str, *, optional: bool = False) -> None:
    """A pack's text field is text of at most MAX_FIELD_CHARS characters (None when optional)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text, not {type(value).__name__}.", field=field)
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidInput(f"{field} is over {MAX_FIELD_CHARS} characters ({len(value)}).", field=field)


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check generation parameters by Astria's names, with the rules every prompt is held to
    (`prompts.PromptRequest.validate`); returns them converted to their types."""
    for name in params:
        if name not in PARAM_NAMES:
            raise InvalidInput(f"Unknown parameter {name!r}: use {', '.join(PARAM_NAMES)}.", field=name)
    request = prompts.PromptRequest.from_dict({**params, "text": "x"}).validate()
    return {name: getattr(request, name) for name in params if params[name] is not None and params[name] != ""}


# -- linter -----------------------------------------------------------------------------------


def lint(
    pack: Mapping[str, Any], pack_prompts: Iterable[Mapping[str, Any]], characteristics: Mapping | None = None
) -> list[LintIssue]:
    """Find what would go wrong before anything runs: a pack without prompts, declared classes
    without prompts, unresolved or malformed placeholders, hard-coded tokens, a token followed by
    another class, bad parameters. With a tune's `characteristics`, also name the placeholders
    this tune leaves empty."""
    pack_prompts = list(pack_prompts)
    issues: list[LintIssue] = []
    if not pack_prompts:
        issues.append(LintIssue("error", "no_prompts", "The pack has no prompts: add at least one per class."))
    present = {p["class_name"] for p in pack_prompts}
    for name in pack.get("classes") or ():
        if name not in present:
            message = f"Class '{name}' has no prompts: add some or remove the class."
            issues.append(LintIssue("warning", "class_without_prompts", message, name))
    for name in sorted(present - set(CLASS_NAMES)):
        message = f"Class '{name}' is not one of: {', '.join(CLASS_NAMES)}."
        issues.append(LintIssue("warning", "unknown_class", message, name))
    for prompt in pack_prompts:
        issues += _lint_prompt(prompt, pack.get("token") or "ohwx", characteristics)
    return issues


def _lint_prompt(prompt: Mapping[str, Any], token: str, characteristics: Mapping | None) -> list[LintIssue]:
    text, class_name = prompt["text"], prompt["class_name"]
    where = f"Prompt {prompt['id']} ({class_name})" if prompt.get("id") else f"A '{class_name}' prompt"
    found: list[LintIssue] = []

    def issue(level: str, code: str, message: str) -> None:
        found.append(LintIssue(level, code, f"{where}: {message}", class_name, prompt.get("id")))

    names = list(dict.fromkeys(prompts.placeholders(text)))
    for name in names:
        if name not in PLACEHOLDER_NAMES and name not in (characteristics or {}):
            issue(
                "error",
                "unresolved_placeholder",
                f"{{{{{name}}}}} is filled by nothing; use {', '.join(PLACEHOLDER_NAMES)}.",
            )
    # What is left once every well-formed placeholder is gone must hold no braces.
    leftover = prompts.render_template(text, dict.fromkeys(names, " "), strict=False)
    if re.search(r"\{\{|\}\}|\{\s*\w+\s*\}", leftover):
        issue("error", "malformed_placeholder", "a placeholder is not written {{like_this}}.")
    if characteristics is not None:
        values = pack_values({"token": token, "name": class_name, "characteristics": characteristics})
        for name in names:
            if name not in values:
                issue("warning", "missing_characteristic", f"this tune has no {name}; {{{{{name}}}}} is left out.")
    for literal in dict.fromkeys((token, *COMMON_TOKENS)):
        if re.search(rf"\b{re.escape(literal)}\b", leftover):
            issue(
                "warning", "literal_token", f"write {{{{token}}}} instead of '{literal}' so each tune's token is used."
            )
    if "token" not in names:
        issue("warning", "no_token", "the text never names the subject; write '{{token}} {{name}}'.")
    for word in re.findall(r"\{\{\s*token\s*\}\}\s+([A-Za-z]+)", text):
        if word.lower() in SUBJECT_CLASSES and word.lower() != class_name:
            issue(
                "error",
                "class_mismatch",
                f"'{{{{token}}}} {word}' in a '{class_name}' prompt: write '{{{{token}}}} {{{{name}}}}'.",
            )
    try:
        check_params(prompt.get("params") or {})
    except InvalidInput as error:
        issue("error", "bad_params", error.message)
    return found


# -- rankings ---------------------------------------------------------------------------------


def wilson_lower_bound(likes: int, shown: int, z: float = Z_95) -> float:
    """Lower bound of the Wilson score interval for a like rate of `likes` in `shown` trials
    (0 when nothing was shown; likes above `shown` count as `shown`). In [0, 1)."""
    if shown <= 0:
        return 0.0
    k = min(max(likes, 0), shown)
    p = k / shown
    z2 = z * z
    centre = p + z2 / (2 * shown)
    spread = z * math.sqrt(p * (1 - p) / shown + z2 / (4 * shown * shown))
    return max(0.0, (centre - spread) / (1 + z2 / shown))


def rating(shown: int) -> str | None:
    """'new' when nothing was shown yet, 'few ratings' under FEW_RATINGS images, else None."""
    if shown <= 0:
        return "new"
    return "few ratings" if shown < FEW_RATINGS else None


def scored(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` (with `likes_count` and `images_shown`) plus its `score` (Wilson lower bound),
    `like_rate` (None before anything was shown) and `rating` ('new', 'few ratings' or None)."""
    likes, shown = row["likes_count"], row["images_shown"]
    return {
        **row,
        "score": round(wilson_lower_bound(likes, shown), 6),
        "like_rate": round(min(likes, shown) / shown, 6) if shown else None,
        "rating": rating(shown),
    }


def rank(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`scored` rows, best first; ties (every score of 0, say) put the fewest shown first, then
    the newest, so untried items come before items shown often and never liked."""
    return sorted(map(scored, rows), key=lambda r: (-r["score"], r["images_shown"], -r["id"]))


# -- pack files -------------------------------------------------------------------------------


def image_suffix(data: bytes, what: str) -> str:
    """Check that `data` is a PNG, JPEG or WEBP image; returns its file suffix."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as image:
            image.verify()
            kind = image.format
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise InvalidInput(f"The {what} is not a readable PNG, JPEG or WEBP image.", field=what) from None
    return {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[kind]


def data_url(data: bytes, suffix: str) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}[suffix]
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(value: str, what: str) -> bytes:
    """The bytes of a `data:image/...;base64,` URL (raises InvalidInput naming `what`)."""
    match = re.fullmatch(r"data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\s]+)", value.strip())
    if not match:
        raise InvalidInput(
            f"The {what} must be a data:image/png|jpeg|webp;base64 URL or a sibling file name.", field=what
        )
    try:
        return base64.b64decode(match.group(2), validate=False)
    except binascii.Error:
        raise InvalidInput(f"The {what} is not valid base64.", field=what) from None


def pack_document(pack: Mapping[str, Any], prompts: Iterable[Mapping[str, Any]], images: Mapping[str, str]) -> dict:
    """The pack file for `pack` and its prompts. `images` maps stored image paths (the cover,
    example images) to data URLs; paths missing from it are left out."""
    per_class: dict[str, list[dict]] = {}
    for prompt in prompts:
        entry = {
            "text": prompt["text"],
            "negative_prompt": prompt.get("negative_prompt") or "",
            "num_images": prompt["num_images"],
            **(prompt.get("params") or {}),
        }
        if prompt.get("image_path") in images:
            entry["image"] = images[prompt["image_path"]]
        per_class.setdefault(prompt["class_name"], []).append(entry)
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "slug": pack["slug"],
        "title": pack["title"],
        "description": pack.get("description") or "",
        "classes": list(pack.get("classes") or per_class),
        "model_type": pack["model_type"],
        "base_tune_id": pack.get("base_tune_id"),
        "preset": pack.get("preset"),
        "token": pack.get("token") or "ohwx",
        "args": pack.get("args") or {},
        "public": bool(pack.get("public", True)),
        "unlisted": bool(pack.get("unlisted", False)),
        "cover": images.get(pack.get("cover_path") or ""),
        "prompts_per_class": per_class,
    }


def parse_document(document: Any) -> tuple[PackRequest, list[PackPromptRequest], list[str | None], str | None]:
    """Read a pack file (as `pack_document` writes it). Returns the pack request, its prompt
    requests in file order, each prompt's image reference (data URL, sibling file name or None)
    and the cover reference. Raises InvalidInput saying what is wrong, never a bare Python
    error: a value of the wrong type is named as such."""
    try:
        return _parse_document(document)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError):
        raise InvalidInput(
            "The pack file has a value of the wrong type (text, number, true/false, list or object "
            "where another is expected): export a pack to see the format.",
            field="file",
        ) from None


def _parse_document(document: Any) -> tuple[PackRequest, list[PackPromptRequest], list[str | None], str | None]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInput(f'Not a pack file: expected an object with "format": "{FORMAT}".', field="file")
    if document.get("version") != FORMAT_VERSION:
        raise InvalidInput(
            f"Pack file version {document.get('version')!r} is not supported (use {FORMAT_VERSION}).", field="file"
        )
    per_class = document.get("prompts_per_class")
    if not isinstance(per_class, dict):
        raise InvalidInput("prompts_per_class must map class names to lists of prompts.", field="prompts_per_class")
    count = sum(len(entries) if isinstance(entries, list) else 1 for entries in per_class.values())
    if count > MAX_PACK_PROMPTS:
        raise InvalidInput(
            f"A pack has at most {MAX_PACK_PROMPTS} prompts; this file has {count}.", field="prompts_per_class"
        )
    if document.get("classes") is not None and not isinstance(document["classes"], list):
        raise InvalidInput("classes must be a list of class names.", field="classes")
    if document.get("args") is not None and not isinstance(document["args"], dict):
        raise InvalidInput("args must be an object of training args.", field="args")
    cover = document.get("cover")
    if cover is not None and not isinstance(cover, str):
        raise InvalidInput("cover must be a data URL or a file name.", field="cover")
    pack_fields = {f.name: document[f.name] for f in fields(PackRequest) if document.get(f.name) is not None}
    pack_fields["classes"] = tuple(document.get("classes") or per_class)
    pack_fields["args"] = dict(document.get("args") or {})
    pack = check_pack(PackRequest(**pack_fields))
    prompts, images = [], []
    for class_name, entries in per_class.items():
        for entry in entries if isinstance(entries, list) else [None]:
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise InvalidInput(
                    f"Each '{class_name}' prompt must be an object with a text.", field="prompts_per_class"
                )
            if entry.get("image") is not None and not isinstance(entry["image"], str):
                raise InvalidInput(f"A '{class_name}' prompt's image must be a data URL or a file name.", field="image")
            values = {k: v for k, v in entry.items() if k != "image"}
            unknown = set(values) - {f.name for f in fields(PackPromptRequest)} - {"class_name"}
            if unknown:
                raise InvalidInput(
                    f"Unknown prompt field(s) {', '.join(sorted(unknown))} in class '{class_name}'.",
                    field="prompts_per_class",
                )
            request = PackPromptRequest(**{**values, "class_name": class_name})
            check_pack_prompt(request)
            prompts.append(request)
            images.append(entry.get("image"))
    return pack, prompts, images, cover


def pack_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored pack as callers see it: flags as booleans."""
    return {**row, "public": bool(row["public"]), "unlisted": bool(row["unlisted"])}


def read_document(source: str | bytes | Path | Mapping, max_bytes: int | None = None) -> Any:
    """The parsed pack file from a path, JSON text or bytes, or an already parsed object.
    A file or text over `max_bytes` is refused (TooLarge) before it is read or parsed."""
    if isinstance(source, Mapping):
        return dict(source)
    try:
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(f"The pack file is over {max_bytes / 2**20:g} MB ({size / 2**20:.1f} MB).", field="file")
        text = source.read_bytes() if isinstance(source, Path) else source
        return json.loads(text)
    except FileNotFoundError:
        raise InvalidInput(f"No pack file at {source}.", field="file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidInput(f"The pack file is not valid JSON: {error}.", field="file") from None


def image_bytes(reference: str, folder: Path | None) -> bytes:
    """The bytes a pack file's image reference names: a data URL, or (for a file read from
    `folder`) the plain name of a sibling file. Never a path: names with separators are refused."""
    if reference.startswith("data:"):
        return decode_data_url(reference, "image")
    if folder is None:
        raise InvalidInput(
            f"Image {reference!r} must be embedded as a data URL when the pack is not read from a file.", field="image"
        )
    if reference in ("", ".", "..") or "/" in reference or "\\" in reference:
        raise InvalidInput(f"Image {reference!r} must be the name of a file next to the pack file.", field="image")
    path = folder / reference
    if not path.is_file():
        raise InvalidInput(
            f"The pack file names image {reference!r}, but there is no such file next to it.", field="image"
        )
    return path.read_bytes()
