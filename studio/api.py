"""Astria-compatible REST API: a FastAPI router over `Studio`, mounted beside the Gradio UI.

The same paths, field names and status codes as Astria's API (DESIGN.md §6), so a client
written for the hosted service needs only a new base URL:

    GET  /tunes  POST /tunes  GET /tunes/:id  DELETE /tunes/:id
    GET  /tunes/:id/photos/:photo_id  GET /tunes/:id/lora.safetensors   (orig_images, ckpt_url)
    GET  /tunes/:id/prompts  POST /tunes/:id/prompts  GET|DELETE /tunes/:id/prompts/:prompt_id
    GET  /prompts  GET|DELETE /prompts/:id  POST|DELETE /prompts/:id/likes
    GET  /packs  GET /gallery/packs  GET /p/:id  POST /p/:id/tunes
    POST /images/inspect  GET /gallery/tunes  GET /images/<sha256>.<ext>

Thin by design: each route parses its body (JSON, or multipart with Astria's bracketed
`tune[...]` fields), calls one `Studio` method and returns what it returns. Create calls answer
201. `StudioError`s become JSON error bodies with their status (422 naming the field, 404, 409,
413, 429); anything else is a bug and answers 500. Image URLs are absolute
(STUDIO_PUBLIC_URL, else the request's base URL) and point at `/images/<sha256>.<ext>`, which
needs no key: the content hash is the unguessable part, as on Astria's storage.

Auth: `Authorization: Bearer <key>` with a key from STUDIO_API_KEYS or one created in the
Settings tab (stored hashed). When no key exists at all, the API answers loopback clients only,
and only while the server listens on loopback alone (not on a Space, not behind a share link).

The request bodies are parsed by hand (one route takes JSON and multipart alike), so their
schemas are published in /openapi.json from the pydantic models below, which document the
fields; `Studio` does the checking and names the field at fault.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from studio import packs, prompts, tune_requests
from studio.errors import InvalidInput, StudioError, TooLarge
from studio.formdata import nest

if TYPE_CHECKING:
    from studio.core import Studio

LOCAL_USER = "local"
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot exist
MAX_PAGE = 120  # Astria's largest page
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}

Id = Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])]
PackId = Annotated[str, Path(max_length=80, description="A pack's id or slug.", examples=["corporate-headshots"])]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size (Astria's default 20, at most 120).")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="How many to skip; prefer before_id for deep pages.")]
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only ids below this (keyset pagination).")]


class Unauthorized(StudioError):
    status = 401


def key_hash(key: str) -> str:
    """How API keys are kept at rest: sha256 hex of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def env_key_user(key: str) -> str:
    """The user a STUDIO_API_KEYS key acts as (likes are per user), without the key itself."""
    return f"key:{key_hash(key)[:12]}"


def caller(request: Request) -> str:
    """The user the request acts for (likes are per user): the key's owner, or 'local'."""
    studio: Studio = request.app.state.studio
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    env_keys = studio.settings.api_keys
    if scheme.lower() == "bearer" and key:
        for env_key in env_keys:
            if hmac.compare_digest(env_key, key):
                return env_key_user(key)
        owner = studio.store.api_key_owner(key_hash(key))
        if owner is not None:
            return owner
        raise Unauthorized("That API key is not valid.")
    # Keyless only when the server listens on loopback alone: a share tunnel or a Space's proxy
    # forwards the public's requests from a loopback address.
    if not env_keys and studio.settings.is_loopback and not studio.store.has_api_keys() and _is_loopback(request):
        return LOCAL_USER
    raise Unauthorized("Send 'Authorization: Bearer <key>' with a key from STUDIO_API_KEYS or the Settings tab.")


Caller = Annotated[str, Depends(caller)]


async def body(request: Request, root: str) -> tuple[dict[str, Any], dict[str, list[tuple[str, bytes]]]]:
    """The request's fields under `root` (e.g. 'tune') and its uploaded files.

    JSON bodies may wrap the fields (`{"tune": {...}}`) or not; multipart and urlencoded bodies
    use bracketed names (`tune[title]`, `tune[images][]`). Files are returned apart from the
    fields, by the name under `root` (`tune[images][]` -> "images"), as (filename, bytes) in
    order. Raises TooLarge for a body or file over the upload limits, InvalidInput (field
    'body') for a body that cannot be read or is not a JSON object."""
    settings = request.app.state.studio.settings
    file_limit = settings.max_upload_mb * 2**20
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > file_limit * (settings.max_photos + 1):
        limit = settings.max_upload_mb * (settings.max_photos + 1)
        raise TooLarge(f"The request is over {limit} MB: send fewer or smaller photos.", field="body")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except (ValueError, RecursionError):  # RecursionError: nested too deep for json to read
            raise InvalidInput("The body is not valid JSON.", field="body") from None
        if not isinstance(data, dict):
            raise InvalidInput(f'The JSON body must be an object, e.g. {{"{root}": {{...}}}}.', field="body")
        fields = data.get(root, data)
        return (fields if isinstance(fields, dict) else {}), {}
    try:
        form = await request.form()
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        raise InvalidInput(f"The form could not be read: {error.detail}", field="body") from None
    files: dict[str, list[tuple[str, bytes]]] = {}
    items = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            items.append((key, value))
            continue
        name = _file_field(key, root)
        if value.size is not None and value.size > file_limit:
            raise TooLarge(f"{value.filename or name} is over {settings.max_upload_mb} MB.", field=name)
        files.setdefault(name, []).append((value.filename or "upload", await value.read()))
    nested = nest(items)
    fields = nested.get(root, nested)
    return (fields if isinstance(fields, dict) else {}), files


# -- documented shapes ------------------------------------------------------------------------
# Request models document the bodies `body()` parses; response models document what `Studio`
# returns (extra fields are allowed: clients of Astria ignore what they do not know).


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
    callback: str | None = Field(None, description="Receives POST {'prompt': {...}} when the prompt is done.")


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


REQUEST_MODELS = (TuneBody, PromptBody, PackTuneBody)
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


# -- routes -----------------------------------------------------------------------------------


def build_router() -> APIRouter:
    """All keyed REST routes. Each handler reaches the Studio through `request.app.state.studio`;
    blocking work runs in the thread pool."""
    router = APIRouter(dependencies=[Depends(caller)], responses={401: ERRORS[401]})

    @router.get("/gallery/tunes", tags=["gallery"], responses={200: {"model": list[GalleryTune]}})
    def gallery(request: Request) -> list[dict]:
        """The base models, each with id, title, family, embedded and available."""
        return [_gallery_json(m) for m in _studio(request).base_models()]

    @router.get("/tunes", tags=["tunes"], responses={200: {"model": list[Tune]}, **_errors()})
    def list_tunes(request: Request, limit: Limit = 20, offset: Offset = 0, before_id: BeforeId = None) -> list[dict]:
        """The user's tunes, newest first."""
        return _studio(request).list_tunes(limit=limit, offset=offset, before_id=before_id, base_url=_base(request))

    @router.post(
        "/tunes",
        tags=["tunes"],
        status_code=201,
        responses={201: {"model": Tune}, **_errors(404, 413, 429)},
        openapi_extra={"requestBody": _request_body(TuneBody, "tune", {"images": True})},
    )
    async def create_tune(request: Request) -> JSONResponse:
        """Create a tune from `images` (multipart files) and/or `image_urls`; it trains (a LoRA)
        or is ready at once (FaceID), then runs its `prompts_attributes`. A title in use
        returns that tune (idempotency)."""
        fields, files = await body(request, "tune")
        tune = await run_in_threadpool(
            _studio(request).api_create_tune, fields, files.get("images", []), base_url=_base(request)
        )
        return JSONResponse(tune, status_code=201)

    @router.get("/tunes/{tune_id}", tags=["tunes"], responses={200: {"model": Tune}, **_errors(404)})
    def get_tune(request: Request, tune_id: Id) -> dict:
        """A tune, or a gallery base model as a tune (e.g. 690204)."""
        return _studio(request).api_tune(tune_id, _base(request))

    @router.delete("/tunes/{tune_id}", tags=["tunes"], responses={200: {"model": Message}, **_errors(404)})
    def delete_tune(request: Request, tune_id: Id) -> dict:
        """Delete a tune with its photos, weights, prompts and images (its work is canceled first)."""
        _studio(request).api_delete_tune(tune_id)
        return {"message": "Tune successfully deleted"}

    @router.get(
        "/tunes/{tune_id}/photos/{photo_id}",
        tags=["tunes"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **_errors(404)},
    )
    def tune_photo(request: Request, tune_id: Id, photo_id: Id) -> FileResponse:
        """One of the tune's photos (its `orig_images`). Photos are private, so unlike generated
        images they are served only here, with the API key."""
        path = _studio(request).tune_photo_file(tune_id, photo_id)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "private"})

    @router.get(
        "/tunes/{tune_id}/lora.safetensors",
        tags=["tunes"],
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, **_errors(404, 409)},
    )
    def tune_lora(request: Request, tune_id: Id) -> FileResponse:
        """The trained tune's LoRA in kohya/A1111 layout at its active checkpoint (its `ckpt_url`);
        409 while it is not trained or for a FaceID tune."""
        path = _studio(request).lora_file(tune_id)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=f"tune-{tune_id}.safetensors",
            headers={"Cache-Control": "private"},
        )

    @router.get("/tunes/{tune_id}/prompts", tags=["prompts"], responses={200: {"model": list[Prompt]}, **_errors(404)})
    def list_tune_prompts(
        request: Request, tune_id: Id, user: Caller, limit: Limit = 20, offset: Offset = 0, before_id: BeforeId = None
    ) -> list[dict]:
        """The tune's prompts, newest first."""
        return _studio(request).api_prompts(
            tune_id, limit=limit, offset=offset, before_id=before_id, base_url=_base(request), user=user
        )

    @router.post(
        "/tunes/{tune_id}/prompts",
        tags=["prompts"],
        status_code=201,
        responses={201: {"model": Prompt}, **_errors(404, 409, 413, 429)},
        openapi_extra={"requestBody": _request_body(PromptBody, "prompt", {"input_image": False})},
    )
    async def create_prompt(request: Request, tune_id: Id, user: Caller) -> JSONResponse:
        """Generate images on a tune (or on a gallery base tune, with <lora:…> / <faceid:…>
        tokens). The prompt is queued; poll it or pass a `callback`."""
        fields, files = await body(request, "prompt")
        studio = _studio(request)
        upload = files.get("input_image")
        prompt = await run_in_threadpool(
            studio.api_create_prompt, tune_id, fields, upload[0][1] if upload else None, base_url=_base(request)
        )
        return JSONResponse(await run_in_threadpool(studio.prompt_json, prompt["id"], _base(request), user), 201)

    @router.get(
        "/tunes/{tune_id}/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Prompt}, **_errors(404)}
    )
    def get_prompt(request: Request, tune_id: Id, prompt_id: Id, user: Caller) -> dict:
        """One prompt of the tune, with its status and image URLs."""
        return _studio(request).api_prompt(tune_id, prompt_id, _base(request), user)

    @router.delete(
        "/tunes/{tune_id}/prompts/{prompt_id}",
        tags=["prompts"],
        responses={200: {"model": Message}, **_errors(404, 409)},
    )
    def delete_tune_prompt(request: Request, tune_id: Id, prompt_id: Id) -> dict:
        """Delete a prompt of the tune with its images and likes (an unfinished one is canceled first)."""
        _studio(request).api_delete_prompt(prompt_id, tune_id)
        return {"message": "Prompt successfully deleted"}

    @router.get("/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Prompt}, **_errors(404)})
    def get_any_prompt(request: Request, prompt_id: Id, user: Caller) -> dict:
        """One prompt by id alone, as `GET /tunes/:tune_id/prompts/:id` shows it."""
        return _studio(request).prompt_json(prompt_id, _base(request), user)

    @router.delete("/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Message}, **_errors(404, 409)})
    def delete_prompt(request: Request, prompt_id: Id) -> dict:
        """Delete a prompt with its images and likes (an unfinished one is canceled first); the
        path of Astria's own curl example."""
        _studio(request).api_delete_prompt(prompt_id)
        return {"message": "Prompt successfully deleted"}

    @router.get("/prompts", tags=["prompts"], responses={200: {"model": list[Prompt]}, **_errors()})
    def list_prompts(
        request: Request, user: Caller, limit: Limit = 20, offset: Offset = 0, before_id: BeforeId = None
    ) -> list[dict]:
        """Every prompt, newest first."""
        return _studio(request).api_prompts(
            limit=limit, offset=offset, before_id=before_id, base_url=_base(request), user=user
        )

    @router.post(
        "/prompts/{prompt_id}/likes", tags=["likes"], status_code=201, responses={201: {"model": Like}, **_errors(404)}
    )
    def like(request: Request, prompt_id: Id, user: Caller) -> JSONResponse:
        """Like a prompt (once per user); a prompt made from a pack counts for the pack too."""
        return JSONResponse(_studio(request).like_prompt(prompt_id, user), status_code=201)

    @router.delete("/prompts/{prompt_id}/likes", tags=["likes"], responses={200: {"model": Like}, **_errors(404)})
    def unlike(request: Request, prompt_id: Id, user: Caller) -> dict:
        """Take back a like (nothing happens when there is none)."""
        return _studio(request).unlike_prompt(prompt_id, user)

    # Astria's own examples call the singular path.
    router.add_api_route("/prompts/{prompt_id}/like", like, methods=["POST"], include_in_schema=False)

    @router.get("/packs", tags=["packs"], responses={200: {"model": list[Pack]}, **_errors()})
    def list_packs(
        request: Request, public: bool | None = None, listed: bool | None = None, blend: bool = False
    ) -> list[dict]:
        """Packs, best ranked first: by likes per image shown, or with `blend=true` by likes
        blended with likeness (`blended_score`: 70 % likes, 30 % how often the images look like
        their subject)."""
        studio = _studio(request)
        rows = studio.list_packs(public=public or None, listed=listed or None, blend=blend)
        return [studio.pack_json(pack, _base(request)) for pack in rows]

    @router.get("/gallery/packs", tags=["packs"], responses={200: {"model": list[Pack]}, **_errors()})
    def gallery_packs(request: Request) -> list[dict]:
        """The public, listed packs, best ranked first."""
        studio = _studio(request)
        return [studio.pack_json(pack, _base(request)) for pack in studio.list_packs(public=True, listed=True)]

    @router.get("/p/{pack_id}", tags=["packs"], responses={200: {"model": Pack}, **_errors(404)})
    def get_pack(request: Request, pack_id: PackId) -> dict:
        """A pack by id or slug, with its prompts per class."""
        studio = _studio(request)
        return studio.pack_json(studio.get_pack(_pack_key(pack_id)), _base(request), with_prompts=True)

    @router.post(
        "/p/{pack_id}/tunes",
        tags=["packs"],
        status_code=201,
        responses={201: {"model": Tune}, **_errors(404, 413, 429)},
        openapi_extra={"requestBody": _request_body(PackTuneBody, "tune", {"images": True})},
    )
    async def pack_tune(request: Request, pack_id: PackId, user: Caller) -> JSONResponse:
        """Create a tune that runs the pack's prompts of its class once trained; with
        `tune_ids`, run the pack on those tunes and answer their new prompts."""
        fields, files = await body(request, "tune")
        studio = _studio(request)
        made = await run_in_threadpool(
            studio.api_tune_from_pack, _pack_key(pack_id), fields, files.get("images", []), base_url=_base(request)
        )
        if isinstance(made, list):
            made = [await run_in_threadpool(studio.prompt_json, p["id"], _base(request), user) for p in made]
        return JSONResponse(made, status_code=201)

    @router.post(
        "/images/inspect",
        tags=["images"],
        responses={200: {"description": "Astria's inspect fields plus findings and warnings"}, **_errors(413)},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "enum": list(packs.CLASS_NAMES)},
                                "file": {"type": "string", "format": "binary"},
                                "file_url": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def inspect(request: Request) -> dict:
        """Inspect one photo (`file`, or `file_url`) of class `name`: Astria's characteristics
        and warnings (blurry, selfie, wearing_sunglasses…)."""
        fields, files = await body(request, "image")
        upload = files.get("file")
        return await run_in_threadpool(
            _studio(request).api_inspect,
            fields.get("name"),
            upload[0][1] if upload else None,
            fields.get("file_url"),
        )

    return router


def build_public_router() -> APIRouter:
    """Routes without a key: the images that responses and callbacks link to."""
    router = APIRouter()

    @router.get(
        "/images/{name}",
        tags=["images"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, 404: ERRORS[404]},
    )
    def image(request: Request, name: Annotated[str, Path(max_length=80)]) -> FileResponse:
        """A generated image, pack cover or sample by its content-hash name (as in `images`)."""
        path = _studio(request).public_image(name)
        # Content-addressed: the bytes behind a name never change.
        headers = {"Cache-Control": "public, max-age=31536000, immutable"}
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)

    return router


def install(app: FastAPI, studio: Studio) -> None:
    """Attach the routers, the error handlers and the OpenAPI schema to `app` (before Gradio is
    mounted at '/')."""
    app.state.studio = studio
    app.include_router(build_public_router())
    app.include_router(build_router())

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, error: StudioError) -> JSONResponse:
        content: dict[str, Any] = {"error": error.message}
        if error.field:
            content["field"] = error.field
            content[error.field] = [error.message]
        return JSONResponse(content, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = {".".join(str(p) for p in e["loc"][1:]) or "body": [e["msg"]] for e in error.errors()}
        first = next(iter(fields))
        return JSONResponse(
            {"error": f"{first}: {fields[first][0]}", "field": first, **fields},
            status_code=422,
        )

    app.openapi = lambda: _openapi(app)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request models, which no route declares as a parameter."""
    from fastapi.openapi.utils import get_openapi

    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=__doc__, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in REQUEST_MODELS:
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        app.openapi_schema = schema
    return app.openapi_schema


def _studio(request: Request) -> Studio:
    return request.app.state.studio


def _base(request: Request) -> str:
    """Where this client reached the studio (scheme, host, port, root path)."""
    return str(request.base_url).rstrip("/")


def _pack_key(pack_id: str) -> int | str:
    """A pack path segment: an id when it is digits (within range), else a slug."""
    return int(pack_id) if pack_id.isdigit() and int(pack_id) <= MAX_ID else pack_id


def _file_field(key: str, root: str) -> str:
    """The field name of an uploaded file: `tune[images][]` -> 'images', `file` -> 'file'."""
    parts = [p for p in key.replace("]", "").split("[") if p]
    if len(parts) > 1 and parts[0] == root:
        parts = parts[1:]
    return parts[0] if parts else key


def _gallery_json(model: dict) -> dict:
    return {
        "id": model["id"],
        "title": model["title"],
        "name": model.get("name"),
        "family": model["family"],
        "model_type": "checkpoint",
        "embedded": model["embedded"],
        "available": model["available"],
        "source": model["source"],
    }


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
