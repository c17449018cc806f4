"""REST routes for what a person keeps beside tunes and prompts, so nothing the UI does is out of
an API client's reach: uploaded LoRAs and avatars (the Avatars & LoRAs tab), a tune's
checkpoints and which one it uses (the Tunes tab), and pack files (the Packs tab's import and
export). Same auth and owners as the rest of the API (studio/api/auth.py): another owner's
adapter, tune or pack reads as missing (404).

    GET  /adapters  POST /adapters  GET|DELETE /adapters/:kind/:name
    GET  /tunes/:id/checkpoints  POST /tunes/:id/checkpoints/:step/activate
    GET  /p/:id/export  POST /packs
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from studio import packs
from studio.api import forms
from studio.api.auth import Acting, caller
from studio.api.routes import MAX_ID, Id, PackId, _base, _pack_key, _studio
from studio.api.schemas import ERRORS, Message, Pack, Tune, _errors
from studio.domain import ADAPTER_KINDS, RUNNABLE_FAMILIES
from studio.errors import InvalidInput, TooLarge

if TYPE_CHECKING:
    from studio.core import Studio

Step = Annotated[int, Path(ge=0, le=MAX_ID, description="A checkpoint's training step.", examples=[500])]
Kind = Annotated[Literal[ADAPTER_KINDS], Path(description="The adapter's kind.")]  # type: ignore[valid-type]
Name = Annotated[str, Path(max_length=64, description="The adapter's name (one word).", examples=["toy"])]


class Adapter(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    kind: str
    name: str
    family: str | None
    weight: float
    trigger_words: list[str]
    token: str = Field(description="The prompt token that uses it at its default weight.")
    created_at: str | None


class Checkpoint(BaseModel):
    step: int
    loss: float | None
    sample: str | None = Field(description="The sample image drawn at this step (absolute URL).")
    likeness: dict[str, Any] | None
    active: bool
    best: bool


ADAPTER_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["adapter[kind]", "adapter[name]", "adapter[file]"],
                "properties": {
                    "adapter[kind]": {"type": "string", "enum": list(ADAPTER_KINDS)},
                    "adapter[name]": {"type": "string", "description": "One word: a letter, then letters, digits, _ -"},
                    "adapter[file]": {
                        "type": "string",
                        "format": "binary",
                        "description": "A .safetensors LoRA, or a PNG/JPEG/WEBP image for a face, style or pose",
                    },
                    "adapter[weight]": {"type": "number", "description": "Default weight (LoRA -2..2, else 0..2)"},
                    "adapter[trigger_words][]": {"type": "array", "items": {"type": "string"}},
                    "adapter[family]": {"type": "string", "enum": list(RUNNABLE_FAMILIES)},
                },
            }
        }
    },
}
PACK_FILE = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object", "description": "A pack file, as GET /p/:id/export gives"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}


def build_library_router() -> APIRouter:
    """The keyed routes for adapters, checkpoints and pack files."""
    router = APIRouter(dependencies=[Depends(caller)], responses={401: ERRORS[401]})

    @router.get("/adapters", tags=["adapters"], responses={200: {"model": list[Adapter]}, **_errors()})
    def list_adapters(
        request: Request,
        acting: Acting,
        kind: Annotated[Literal[ADAPTER_KINDS] | None, Query(description="Only this kind.")] = None,  # type: ignore[valid-type]
    ) -> list[dict]:
        """The caller's uploaded LoRAs and face, style and pose avatars (an admin's: all)."""
        studio = _studio(request)
        return [_adapter_json(studio, a) for a in studio.list_adapters(kind, principal=acting)]

    @router.post(
        "/adapters",
        tags=["adapters"],
        status_code=201,
        responses={201: {"model": Adapter}, **_errors(409, 413)},
        openapi_extra={"requestBody": ADAPTER_FORM},
    )
    async def create_adapter(request: Request, acting: Acting) -> JSONResponse:
        """Upload a LoRA (`adapter[kind]=lora`, a .safetensors `adapter[file]`, its
        `adapter[trigger_words][]`) or save a face, style or pose avatar from an image; the
        answer carries the token to paste into a prompt. 409 when the caller has one of that
        kind and name."""
        studio = _studio(request)
        # One file: a LoRA may be larger than a photo (STUDIO_MAX_LORA_MB).
        file_mb = max(studio.settings.max_lora_mb, studio.settings.max_upload_mb)
        fields, uploads = await forms.body(request, "adapter", file_mb=file_mb)
        adapter = await run_in_threadpool(_add_adapter, studio, fields, uploads.get("file", []), acting)
        return JSONResponse(_adapter_json(studio, adapter), status_code=201)

    @router.get("/adapters/{kind}/{name}", tags=["adapters"], responses={200: {"model": Adapter}, **_errors(404)})
    def get_adapter(request: Request, kind: Kind, name: Name, acting: Acting) -> dict:
        """One adapter by kind and name."""
        studio = _studio(request)
        return _adapter_json(studio, studio.get_adapter(kind, name, principal=acting))

    @router.delete("/adapters/{kind}/{name}", tags=["adapters"], responses={200: {"model": Message}, **_errors(404)})
    def delete_adapter(request: Request, kind: Kind, name: Name, acting: Acting) -> dict:
        """Delete an adapter and its files; prompts naming it fail from now on."""
        _studio(request).delete_adapter(kind, name, principal=acting)
        return {"message": "Adapter successfully deleted"}

    @router.get(
        "/tunes/{tune_id}/checkpoints",
        tags=["tunes"],
        responses={200: {"model": list[Checkpoint]}, **_errors(404)},
    )
    def list_checkpoints(request: Request, tune_id: Id, acting: Acting) -> list[dict]:
        """The tune's checkpoints by step: loss, sample URL, likeness, which is active and
        which looks most like the subject (`best`)."""
        return _studio(request).tune_json(tune_id, _base(request), principal=acting)["checkpoints"]

    @router.post(
        "/tunes/{tune_id}/checkpoints/{step}/activate",
        tags=["tunes"],
        responses={200: {"model": Tune}, **_errors(404)},
    )
    def activate_checkpoint(request: Request, tune_id: Id, step: Step, acting: Acting) -> dict:
        """Use the weights saved at `step` from now on (prompts and `ckpt_url`); answers the
        tune. 404 naming `step` when the tune has no checkpoint there."""
        studio = _studio(request)
        studio.set_active_checkpoint(tune_id, step, principal=acting)
        return studio.tune_json(tune_id, _base(request), principal=acting)

    @router.get(
        "/p/{pack_id}/export",
        tags=["packs"],
        responses={200: {"description": "The pack file (JSON), as POST /packs takes it"}, **_errors(404)},
    )
    def export_pack(request: Request, pack_id: PackId, acting: Acting) -> JSONResponse:
        """The pack as one JSON file, its cover and example images embedded as data URLs."""
        studio = _studio(request)
        key = _pack_key(pack_id)
        document = json.loads(studio.export_pack(key, principal=acting))
        disposition = f'attachment; filename="{document["slug"]}.json"'
        return JSONResponse(document, headers={"Content-Disposition": disposition})

    @router.post(
        "/packs",
        tags=["packs"],
        status_code=201,
        responses={201: {"model": Pack}, **_errors(409, 413)},
        openapi_extra={"requestBody": PACK_FILE},
    )
    async def import_pack(
        request: Request,
        acting: Acting,
        slug: Annotated[str | None, Query(max_length=80, description="Import under this slug instead.")] = None,
    ) -> JSONResponse:
        """Import a pack file (what GET /p/:id/export gives) as the caller's pack: the JSON as
        the body, or a multipart `file`. 409 when the caller has a pack with that slug."""
        studio = _studio(request)
        limit = packs.max_file_bytes(studio.settings.max_upload_mb)
        document = await _pack_document(request, limit)
        pack = await run_in_threadpool(studio.import_pack, document, slug=slug, principal=acting)
        return JSONResponse(studio.pack_json(pack, _base(request), with_prompts=True), status_code=201)

    return router


def _add_adapter(studio: Studio, fields: dict, uploads: list[tuple[str, bytes]], acting) -> dict:
    """`POST /adapters`'s form into `Studio.add_adapter`."""
    if len(uploads) != 1:
        raise InvalidInput("Send one file as adapter[file].", field="file")
    weight = fields.get("weight")
    try:
        weight = 1.0 if weight in (None, "") else float(weight)
    except (TypeError, ValueError):
        raise InvalidInput(f"weight {weight!r} is not a number.", field="weight") from None
    words = fields.get("trigger_words") or []
    words = [words] if isinstance(words, str) else words
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InvalidInput("trigger_words must be a list of words.", field="trigger_words")
    return studio.add_adapter(
        str(fields.get("kind") or ""),
        str(fields.get("name") or "").strip(),
        uploads[0][1],
        weight=weight,
        trigger_words=words,
        family=forms.text(fields.get("family")),
        principal=acting,
    )


async def _pack_document(request: Request, limit: int) -> bytes:
    """The pack file a request carries: its JSON body, or its multipart `file`."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    too_large = f"The pack file is over {limit / 2**20:g} MB."
    if media_type == forms.JSON_TYPE:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(too_large, field="file")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise TooLarge(too_large, field="file")
        return bytes(data)
    _fields, uploads = await forms.body(request, "pack", file_mb=-(-limit // 2**20))
    if len(uploads.get("file", [])) != 1:
        raise InvalidInput("Send the pack file as the JSON body or as one multipart 'file'.", field="file")
    return uploads["file"][0][1]


def _adapter_json(studio: Studio, adapter: dict) -> dict:
    """An adapter as clients see it: no storage paths."""
    metadata = adapter["metadata"] or {}
    return {
        "id": adapter["id"],
        "kind": adapter["kind"],
        "name": adapter["name"],
        "family": adapter["family"],
        "weight": adapter["weight"],
        "trigger_words": metadata.get("trigger_words", []),
        "width": metadata.get("width"),
        "height": metadata.get("height"),
        "token": studio.adapter_token(adapter),
        "created_at": adapter.get("created_at"),
    }
