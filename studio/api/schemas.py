"""The REST API's documented shapes: request models for the bodies `forms.body` parses (one
route takes JSON and multipart alike, so no route declares them as parameters) and response
models for what `Studio` returns, with the error bodies. Only /openapi.json reads them."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from studio import families, look, packs, prompts, tune_requests


class PromptFields(BaseModel):
    """A prompt: Astria's fields. Unknown fields are ignored."""

    model_config = ConfigDict(extra="allow")
    text: str = Field(description="What to draw; may hold <lora:ID:W>, <faceid:ID:W> and other tokens.")
    negative_prompt: str | None = None
    num_images: int | None = Field(None, ge=1, le=prompts.MAX_IMAGES)
    seed: int | None = Field(None, ge=0, le=prompts.MAX_SEED)
    steps: int | None = Field(None, ge=1, le=prompts.MAX_STEPS)
    cfg_scale: float | None = Field(None, ge=0, le=prompts.MAX_CFG)
    w: int | None = Field(None, ge=prompts.MIN_SIZE, le=prompts.MAX_SIZE, multiple_of=8)
    h: int | None = Field(None, ge=prompts.MIN_SIZE, le=prompts.MAX_SIZE, multiple_of=8)
    scheduler: Literal[prompts.SCHEDULERS] | None = None  # type: ignore[valid-type]
    super_resolution: bool | None = None
    face_correct: bool | None = None
    face_swap: bool | None = None
    controlnet: Literal[prompts.CONTROLNETS] | None = None  # type: ignore[valid-type]
    controlnet_conditioning_scale: float | None = Field(None, ge=0, le=2)
    controlnet_txt2img: bool | None = None
    denoising_strength: float | None = Field(None, ge=0, le=1)
    input_image_url: str | None = Field(None, description="An http(s) image to start from or to control with.")
    input_image_base64: str | None = Field(None, description="The input image as a data URL.")
    mask_image_url: str | None = Field(
        None, description="An http(s) one-channel mask (white repaints) of the input image's size."
    )
    mask_image_base64: str | None = Field(None, description="The mask as a data URL.")
    inpaint_faces: bool | None = Field(
        None, description="Re-generate faces with the subject's tune (unset: automatic)."
    )
    inpaint_faces_strength: float | None = Field(None, ge=0.01, le=1)
    inpaint_faces_which: str | None = Field(None, description="Faces to detail, counted from the left: '1,3'.")
    hires_fix: bool | None = None
    hires_scale: float | None = Field(None, ge=1.05, le=4)
    hires_denoising_strength: float | None = Field(None, ge=0.01, le=1)
    hires_steps: int | None = Field(None, ge=1, le=prompts.MAX_STEPS)
    callback: str | None = Field(None, description="Receives POST {'prompt': {...}} when the prompt is done.")
    aspect_ratio: Literal[tuple(families.ASPECT_RATIOS)] | None = Field(  # type: ignore[valid-type]
        None, description="The family's bucket size for this ratio (README: Sizes); w/h win."
    )
    ar: str | None = Field(None, description="Legacy aspect ratio: 1:1, portrait (2:3), 16:9, landscape (3:2).")
    resolution: Literal[tuple(families.SIZE_TIERS)] | None = Field(  # type: ignore[valid-type]
        None, description="Size tier on the family's native size; each family lists the tiers it draws."
    )
    use_lpw: bool | None = Field(None, description="false reads (word:1.3) and BREAK as plain text (SD 1.5/SDXL).")
    lora_scale: float | None = Field(None, ge=-2, le=2, description="Scale of the tune's own LoRA (default 1).")
    base_pack_id: int | None = Field(None, description="A pack recorded as the prompt's provenance.")
    theme: str | None = Field(None, description="Metadata grouping prompts of one theme.")
    color_grading: Literal[tuple(look.COLOR_GRADINGS)] | None = None  # type: ignore[valid-type]
    film_grain: bool | None = Field(None, description="Seeded film grain: the same seed gives the same grain.")
    best_of: int | None = Field(
        None,
        ge=1,
        le=prompts.MAX_BEST_OF,
        description="Candidates per image: the one whose face looks most like the tune's subject is kept "
        "(its likeness record's `best_of` lists the candidates' scores).",
    )


class TuneFields(BaseModel):
    """A tune (fine-tune) to make from photos: Astria's fields."""

    model_config = ConfigDict(extra="allow")
    title: str = Field(description="Unique: a second request with the same title returns the first tune.")
    name: Literal[packs.CLASS_NAMES] = Field(description="The class of the subject.")  # type: ignore[valid-type]
    token: str | None = Field(None, description="The word the subject is learned as (default ohwx).")
    model_type: Literal[tune_requests.MODEL_TYPES] | None = None  # type: ignore[valid-type]
    base_tune_id: int | None = Field(None, description="A gallery base model (GET /gallery/tunes).")
    branch: Literal[tune_requests.BRANCHES] | None = Field(
        None, description="'fast' is the mock mode on the demo model."
    )  # type: ignore[valid-type]
    preset: Literal[tuple(tune_requests.PRESETS)] | None = None  # type: ignore[valid-type]
    steps: int | None = Field(None, ge=1, le=tune_requests.MAX_STEPS)
    face_crop: bool | None = None
    training_face_correct: bool | None = None
    characteristics: dict[str, str] | None = None
    image_urls: list[str] | None = Field(None, description="http(s) photos, fetched with size and time limits.")
    callback: str | None = Field(None, description="Receives POST {'tune': {...}} once the tune is trained.")
    prompts_attributes: list[PromptFields] | None = Field(None, description="Prompts run once the tune is trained.")
    prompts_callback: str | None = Field(None, description="Receives every prompt of the tune once all are done.")
    face_loss_weight: float | None = Field(
        None, ge=0, le=10, description="Loss weight of the face region (default 2 for people, 1 otherwise)."
    )
    background_loss_weight: float | None = Field(
        None, ge=0, le=10, description="Loss weight of the background (default 0.5 for people, 1 otherwise)."
    )
    caption_dropout: float | None = Field(None, ge=0, le=1, description="Share of steps on the instance prompt.")
    captions: list[str | None] | None = Field(
        None, description="Each photo's caption in upload order (null: made from the photo); must hold the token."
    )


class CaptionFields(BaseModel):
    """{photo id: caption}; null or "" makes that photo's caption again from the photo."""

    model_config = ConfigDict(extra="allow")


class CaptionsBody(BaseModel):
    captions: CaptionFields


class TuneBody(BaseModel):
    tune: TuneFields


class PromptBody(BaseModel):
    prompt: PromptFields


class PackTuneFields(BaseModel):
    """A tune made from a pack, or the pack run on existing tunes (`tune_ids`)."""

    model_config = ConfigDict(extra="allow")
    title: str | None = None
    name: str | None = Field(None, description="A class the pack has prompts for.")
    image_urls: list[str] | None = None
    callback: str | None = None
    characteristics: dict[str, str] | None = None
    prompt_attributes: dict[str, str] | None = Field(None, description="{'callback': URL} for each prompt.")
    prompts_callback: str | None = None
    branch: Literal[tune_requests.BRANCHES] | None = None  # type: ignore[valid-type]
    tune_ids: list[int] | None = Field(None, description="Run the pack on these tunes instead.")
    prompt_ids: list[int] | None = Field(None, description="Only these pack prompts.")


class PackTuneBody(BaseModel):
    tune: PackTuneFields


class Tune(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    title: str
    name: str | None
    token: str | None
    base_tune_id: int | None
    model_type: str
    branch: str | None
    family: str | None
    steps: int | None
    face_crop: bool | None
    status: str
    progress: float
    trained_at: str | None
    started_training_at: str | None
    created_at: str
    updated_at: str
    expires_at: str | None
    url: str
    orig_images: list[str]


class Prompt(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    tune_id: int
    text: str
    negative_prompt: str | None
    cfg_scale: float | None
    steps: int | None
    seed: int | None
    num_images: int | None
    status: str
    images: list[str] = Field(description="Absolute URLs of the images, in order.")
    likeness: list[dict[str, Any] | None] = Field(
        description="Per image, parallel to `images`: how much its face looks like the tune's subject "
        "(score: cosine similarity, same_person, threshold and backend, the best face's box), or null when "
        "the image was not scored."
    )
    likes_count: int
    liked: bool
    warnings: list[str]
    trained_at: str | None
    created_at: str
    url: str


class Pack(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    slug: str
    title: str
    token: str
    model_type: str
    cover_url: str | None
    likes_count: int
    score: float


class GalleryTune(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    title: str
    family: str
    embedded: bool
    available: bool


class Like(BaseModel):
    prompt_id: int
    image_idx: int | None
    liked: bool
    likes_count: int


class Message(BaseModel):
    message: str


class Error(BaseModel):
    """`error` says what to do; `field` names the input at fault and repeats the message under
    the field's name, as Astria's (Rails) validation errors do."""

    model_config = ConfigDict(extra="allow")
    error: str
    field: str | None = None


REQUEST_MODELS = (TuneBody, PromptBody, PackTuneBody, CaptionsBody)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid API key"},
    404: {"model": Error, "description": "Unknown id"},
    409: {"model": Error, "description": "The tune cannot make images (failed, canceled or still training)"},
    413: {"model": Error, "description": "Too many or too large photos"},
    422: {"model": Error, "description": "A field is wrong; the body names it"},
    429: {"model": Error, "description": "The job queue is full; try again later"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in (401, 422, *codes)}


def _request_body(model: type[BaseModel], root: str, files: dict[str, bool]) -> dict[str, Any]:
    """An operation's `requestBody`: `{root: {...}}` as JSON, or multipart with bracketed field
    names (`root[field]`, `root[field][]`) and the `files` (name -> repeated?)."""
    form: dict[str, Any] = {}
    for name, info in model.model_fields[root].annotation.model_fields.items():
        text = {"type": "string", "description": info.description or ""}
        kinds = [info.annotation, *get_args(info.annotation)]
        if any(get_origin(kind) is dict for kind in kinds):
            continue  # `root[name][key]=value`: free keys, documented in the JSON schema
        lists = [get_args(kind)[0] for kind in kinds if get_origin(kind) is list]
        if not lists:
            form[f"{root}[{name}]"] = text
        elif not (isinstance(lists[0], type) and issubclass(lists[0], BaseModel)):
            form[f"{root}[{name}][]"] = {"type": "array", "items": text}
    for name, many in files.items():
        binary = {"type": "string", "format": "binary"}
        form[f"{root}[{name}][]" if many else f"{root}[{name}]"] = (
            {"type": "array", "items": binary} if many else binary
        )
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": form}},
        },
    }
