"""Astria-compatible REST API: a FastAPI router over `Studio`, mounted beside the Gradio UI.

The same paths, field names and status codes as Astria's API (DESIGN.md §6), so a client
written for the hosted service needs only a new base URL:

    GET  /tunes  POST /tunes  GET /tunes/:id  DELETE /tunes/:id
    GET  /tunes/:id/photos/:photo_id  GET /tunes/:id/lora.safetensors   (orig_images, ckpt_url)
    GET  /tunes/:id/prompts  POST /tunes/:id/prompts  GET|DELETE /tunes/:id/prompts/:prompt_id
    GET  /prompts  GET|DELETE /prompts/:id  POST|DELETE /prompts/:id/likes
    GET  /packs  GET /gallery/packs  GET /p/:id  POST /p/:id/tunes
    POST /images/inspect  GET /gallery/tunes  GET /images/<sha256>.<ext>
    GET|POST /adapters  GET|DELETE /adapters/:kind/:name  GET /tunes/:id/checkpoints
    POST /tunes/:id/checkpoints/:step/activate  GET /p/:id/export  POST /packs   (library.py)

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

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from studio import packs
from studio.api import forms
from studio.api.auth import Acting, Caller, caller
from studio.api.schemas import (
    ERRORS,
    REQUEST_MODELS,
    CaptionsBody,
    GalleryTune,
    Like,
    Message,
    Pack,
    PackTuneBody,
    Prompt,
    PromptBody,
    Tune,
    TuneBody,
    _errors,
    _request_body,
)
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core import Studio

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot exist
MAX_PAGE = 120  # Astria's largest page
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
# Served files are exactly the type their name says; browsers must not guess another.
NOSNIFF = {"X-Content-Type-Options": "nosniff"}

Id = Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])]
PackId = Annotated[str, Path(max_length=80, description="A pack's id or slug.", examples=["corporate-headshots"])]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size (Astria's default 20, at most 120).")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="How many to skip; prefer before_id for deep pages.")]
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only ids below this (keyset pagination).")]


def build_router() -> APIRouter:
    """All keyed REST routes. Each handler reaches the Studio through `request.app.state.studio`;
    blocking work runs in the thread pool."""
    router = APIRouter(dependencies=[Depends(caller)], responses={401: ERRORS[401]})

    @router.get("/gallery/tunes", tags=["gallery"], responses={200: {"model": list[GalleryTune]}})
    def gallery(request: Request) -> list[dict]:
        """The base models, each with id, title, family, embedded and available."""
        return [_gallery_json(m) for m in _studio(request).base_models()]

    @router.get("/tunes", tags=["tunes"], responses={200: {"model": list[Tune]}, **_errors()})
    def list_tunes(
        request: Request, acting: Acting, limit: Limit = 20, offset: Offset = 0, before_id: BeforeId = None
    ) -> list[dict]:
        """The caller's tunes (an admin's: all), newest first."""
        return _studio(request).list_tunes(
            limit=limit, offset=offset, before_id=before_id, base_url=_base(request), principal=acting
        )

    @router.post(
        "/tunes",
        tags=["tunes"],
        status_code=201,
        # 409: the title is taken by someone else's tune or a gallery base model.
        responses={201: {"model": Tune}, **_errors(404, 409, 413, 429)},
        openapi_extra={"requestBody": _request_body(TuneBody, "tune", {"images": True})},
    )
    async def create_tune(request: Request, acting: Acting) -> JSONResponse:
        """Create a tune from `images` (multipart files) and/or `image_urls`; it trains (a LoRA)
        or is ready at once (FaceID), then runs its `prompts_attributes`. A title in use
        returns that tune (idempotency)."""
        fields, files = await forms.body(request, "tune", files=_studio(request).settings.max_photos)
        tune = await run_in_threadpool(
            forms.create_tune,
            _studio(request),
            fields,
            files.get("images", []),
            base_url=_base(request),
            principal=acting,
        )
        return JSONResponse(tune, status_code=201)

    @router.get("/tunes/{tune_id}", tags=["tunes"], responses={200: {"model": Tune}, **_errors(404)})
    def get_tune(request: Request, tune_id: Id, acting: Acting) -> dict:
        """A tune, or a gallery base model as a tune (e.g. 690204)."""
        return _studio(request).tune_json(tune_id, _base(request), principal=acting)

    @router.delete("/tunes/{tune_id}", tags=["tunes"], responses={200: {"model": Message}, **_errors(404)})
    def delete_tune(request: Request, tune_id: Id, acting: Acting) -> dict:
        """Delete a tune with its photos, weights, prompts and images (its work is canceled first)."""
        _studio(request).delete_tune(tune_id, cancel=True, principal=acting)
        return {"message": "Tune successfully deleted"}

    @router.post("/tunes/{tune_id}/best_step", tags=["tunes"], responses={200: {"model": Tune}, **_errors(404)})
    def use_best_step(request: Request, tune_id: Id, acting: Acting) -> dict:
        """Let prompts use the tune's best checkpoint by likeness again (the default; picking a
        step turns it off): active now when the samples are scored, else after they are. The
        tune's `use_best_step`, `best_step` and `best_step_note` say where it stands."""
        _studio(request).use_best_step(tune_id, principal=acting)
        return _studio(request).tune_json(tune_id, _base(request), principal=acting)

    @router.get(
        "/tunes/{tune_id}/photos/{photo_id}",
        tags=["tunes"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **_errors(404)},
    )
    def tune_photo(request: Request, tune_id: Id, photo_id: Id, acting: Acting) -> FileResponse:
        """One of the tune's photos (its `orig_images`). Photos are private, so unlike generated
        images they are served only here, with the API key."""
        path = _studio(request).tune_photo_file(tune_id, photo_id, principal=acting)
        headers = {"Cache-Control": "private", **NOSNIFF}
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), headers=headers)

    @router.get("/tunes/{tune_id}/captions", tags=["tunes"], responses=_errors(404))
    def tune_captions(request: Request, tune_id: Id, acting: Acting) -> list[dict]:
        """Each training photo's caption: [{photo_id, filename, caption}] in photo order."""
        return _studio(request).tune_captions(tune_id, principal=acting)

    @router.patch(
        "/tunes/{tune_id}/captions",
        tags=["tunes"],
        responses=_errors(404),
        openapi_extra={"requestBody": _request_body(CaptionsBody, "captions", {})},
    )
    async def set_tune_captions(request: Request, tune_id: Id, acting: Acting) -> list[dict]:
        """Edit training photos' captions ({"captions": {photo id: caption}}; each must hold the
        tune's token; null or "" makes it again from the photo). The next training reads them."""
        fields, _ = await forms.body(request, "captions", files=0)
        studio = _studio(request)
        return await run_in_threadpool(lambda: studio.set_captions(tune_id, fields, principal=acting))

    @router.get(
        "/tunes/{tune_id}/lora.safetensors",
        tags=["tunes"],
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, **_errors(404, 409)},
    )
    def tune_lora(request: Request, tune_id: Id, acting: Acting) -> FileResponse:
        """The trained tune's LoRA in kohya/A1111 layout at its active checkpoint (its `ckpt_url`);
        409 while it is not trained or for a FaceID tune."""
        path = _studio(request).lora_file(tune_id, principal=acting)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=f"tune-{tune_id}.safetensors",
            headers={"Cache-Control": "private", **NOSNIFF},
        )

    @router.get("/tunes/{tune_id}/prompts", tags=["prompts"], responses={200: {"model": list[Prompt]}, **_errors(404)})
    def list_tune_prompts(
        request: Request,
        tune_id: Id,
        user: Caller,
        acting: Acting,
        limit: Limit = 20,
        offset: Offset = 0,
        before_id: BeforeId = None,
    ) -> list[dict]:
        """The tune's prompts, newest first."""
        return _studio(request).prompts_json(
            tune_id,
            limit=limit,
            offset=offset,
            before_id=before_id,
            base_url=_base(request),
            user=user,
            principal=acting,
        )

    @router.post(
        "/tunes/{tune_id}/prompts",
        tags=["prompts"],
        status_code=201,
        responses={201: {"model": Prompt}, **_errors(404, 409, 413, 429)},
        openapi_extra={"requestBody": _request_body(PromptBody, "prompt", {"input_image": False, "mask_image": False})},
    )
    async def create_prompt(request: Request, tune_id: Id, user: Caller, acting: Acting) -> JSONResponse:
        """Generate images on a tune (or on a gallery base tune, with <lora:…> / <faceid:…>
        tokens). On FLUX.2 [klein], `references` add role-tagged reference images (roles face,
        outfit, background, pose, style): multipart `prompt[references][][role]` with a file
        `prompt[references][][image]` or a `prompt[references][][url]`, or JSON
        `{"references": [{"role": …, "url": …}]}`. Inpainting: a `mask_image` file (or
        `mask_image_url`) with the input image. The prompt is queued; poll it or pass a `callback`."""
        # One input image, in a file or as base64 in the JSON (a third larger).
        upload_mb = _studio(request).settings.max_upload_mb
        fields, files = await forms.body(
            request,
            "prompt",
            files=2 + forms.MAX_REFERENCE_FILES,
            json_limit=forms.JSON_LIMIT + upload_mb * 2**20 * 4 // 3,
        )
        studio = _studio(request)
        upload, mask = files.get("input_image"), files.get("mask_image")
        prompt = await run_in_threadpool(
            forms.create_prompt,
            studio,
            tune_id,
            fields,
            upload[0][1] if upload else None,
            base_url=_base(request),
            principal=acting,
            reference_files=[data for _name, data in files.get("references", [])],
            other_files={
                name: items[0][1]
                for name, items in files.items()
                if name not in ("input_image", "references", "mask_image")
            },
            mask_image=mask[0][1] if mask else None,
        )
        made = await run_in_threadpool(studio.prompt_json, prompt["id"], _base(request), user, principal=acting)
        return JSONResponse(made, 201)

    @router.get(
        "/tunes/{tune_id}/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Prompt}, **_errors(404)}
    )
    def get_prompt(request: Request, tune_id: Id, prompt_id: Id, user: Caller, acting: Acting) -> dict:
        """One prompt of the tune, with its status and image URLs."""
        return _studio(request).prompt_json(prompt_id, _base(request), user, tune_id=tune_id, principal=acting)

    @router.delete(
        "/tunes/{tune_id}/prompts/{prompt_id}",
        tags=["prompts"],
        responses={200: {"model": Message}, **_errors(404, 409)},
    )
    def delete_tune_prompt(request: Request, tune_id: Id, prompt_id: Id, acting: Acting) -> dict:
        """Delete a prompt of the tune with its images and likes (an unfinished one is canceled first)."""
        _studio(request).delete_prompt(prompt_id, tune_id, cancel=True, principal=acting)
        return {"message": "Prompt successfully deleted"}

    @router.get("/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Prompt}, **_errors(404)})
    def get_any_prompt(request: Request, prompt_id: Id, user: Caller, acting: Acting) -> dict:
        """One prompt by id alone, as `GET /tunes/:tune_id/prompts/:id` shows it."""
        return _studio(request).prompt_json(prompt_id, _base(request), user, principal=acting)

    @router.delete("/prompts/{prompt_id}", tags=["prompts"], responses={200: {"model": Message}, **_errors(404, 409)})
    def delete_prompt(request: Request, prompt_id: Id, acting: Acting) -> dict:
        """Delete a prompt with its images and likes (an unfinished one is canceled first); the
        path of Astria's own curl example."""
        _studio(request).delete_prompt(prompt_id, cancel=True, principal=acting)
        return {"message": "Prompt successfully deleted"}

    @router.get("/prompts", tags=["prompts"], responses={200: {"model": list[Prompt]}, **_errors()})
    def list_prompts(
        request: Request,
        user: Caller,
        acting: Acting,
        limit: Limit = 20,
        offset: Offset = 0,
        before_id: BeforeId = None,
    ) -> list[dict]:
        """The caller's prompts (an admin's: all), newest first."""
        return _studio(request).prompts_json(
            limit=limit, offset=offset, before_id=before_id, base_url=_base(request), user=user, principal=acting
        )

    @router.post(
        "/prompts/{prompt_id}/likes", tags=["likes"], status_code=201, responses={201: {"model": Like}, **_errors(404)}
    )
    def like(request: Request, prompt_id: Id, user: Caller, acting: Acting) -> JSONResponse:
        """Like a prompt (once per user); a prompt made from a pack counts for the pack too."""
        return JSONResponse(_studio(request).like_prompt(prompt_id, user, principal=acting), status_code=201)

    @router.delete("/prompts/{prompt_id}/likes", tags=["likes"], responses={200: {"model": Like}, **_errors(404)})
    def unlike(request: Request, prompt_id: Id, user: Caller, acting: Acting) -> dict:
        """Take back a like (nothing happens when there is none)."""
        return _studio(request).unlike_prompt(prompt_id, user, principal=acting)

    # Astria's own examples call the singular path.
    router.add_api_route("/prompts/{prompt_id}/like", like, methods=["POST"], include_in_schema=False)

    @router.get("/packs", tags=["packs"], responses={200: {"model": list[Pack]}, **_errors()})
    def list_packs(
        request: Request, acting: Acting, public: bool | None = None, listed: bool | None = None, blend: bool = False
    ) -> list[dict]:
        """Packs, best ranked first: by likes per image shown, or with `blend=true` by likes
        blended with likeness (`blended_score`: 70 % likes, 30 % how often the images look like
        their subject)."""
        studio = _studio(request)
        rows = studio.list_packs(public=public or None, listed=listed or None, blend=blend, principal=acting)
        return [studio.pack_json(pack, _base(request)) for pack in rows]

    @router.get("/gallery/packs", tags=["packs"], responses={200: {"model": list[Pack]}, **_errors()})
    def gallery_packs(request: Request, acting: Acting) -> list[dict]:
        """The public, listed packs, best ranked first."""
        studio = _studio(request)
        rows = studio.list_packs(public=True, listed=True, principal=acting)
        return [studio.pack_json(pack, _base(request)) for pack in rows]

    @router.get("/p/{pack_id}", tags=["packs"], responses={200: {"model": Pack}, **_errors(404)})
    def get_pack(request: Request, pack_id: PackId, acting: Acting) -> dict:
        """A pack by id or slug, with its prompts per class."""
        studio = _studio(request)
        pack = studio.get_pack(_pack_key(pack_id), principal=acting)
        return studio.pack_json(pack, _base(request), with_prompts=True)

    @router.post(
        "/p/{pack_id}/tunes",
        tags=["packs"],
        status_code=201,
        responses={201: {"model": Tune}, **_errors(404, 413, 429)},
        openapi_extra={"requestBody": _request_body(PackTuneBody, "tune", {"images": True})},
    )
    async def pack_tune(request: Request, pack_id: PackId, user: Caller, acting: Acting) -> JSONResponse:
        """Create a tune that runs the pack's prompts of its class once trained; with
        `tune_ids`, run the pack on those tunes and answer their new prompts."""
        fields, files = await forms.body(request, "tune", files=_studio(request).settings.max_photos)
        studio = _studio(request)
        made = await run_in_threadpool(
            forms.tune_from_pack,
            studio,
            _pack_key(pack_id),
            fields,
            files.get("images", []),
            base_url=_base(request),
            principal=acting,
        )
        if isinstance(made, list):
            made = [
                await run_in_threadpool(studio.prompt_json, p["id"], _base(request), user, principal=acting)
                for p in made
            ]
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
        fields, files = await forms.body(request, "image")
        upload = files.get("file")
        return await run_in_threadpool(forms.inspect, _studio(request), fields, upload[0][1] if upload else None)

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
        headers = {"Cache-Control": "public, max-age=31536000, immutable", **NOSNIFF}
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)

    return router


def install(app: FastAPI, studio: Studio) -> None:
    """Attach the routers (the library's are added by `studio.api.install`), the error handlers and the OpenAPI schema to `app` (before Gradio is
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
