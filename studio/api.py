"""Astria-compatible REST API: a FastAPI router over `Studio`, mounted beside the Gradio UI.

Thin by design: each route parses its body (JSON, or multipart with Astria's bracketed
`tune[...]` fields), calls one `Studio` method and returns what it returns. `StudioError`s become
JSON error bodies with their status (422 naming the field, 404, 409, 413, 429); anything else is a
bug and answers 500.

Auth: `Authorization: Bearer <key>` with a key from STUDIO_API_KEYS or one created in the
Settings tab (stored hashed). When no key exists at all, the API answers loopback clients only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from studio.errors import StudioError
from studio.formdata import nest

if TYPE_CHECKING:
    from studio.core import Studio

LOCAL_USER = "local"


class Unauthorized(StudioError):
    status = 401


def key_hash(key: str) -> str:
    """How API keys are kept at rest: sha256 hex of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def caller(request: Request) -> str:
    """The user the request acts for (likes are per user): the key's owner, or 'local'."""
    studio: Studio = request.app.state.studio
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    env_keys = studio.settings.api_keys
    if scheme.lower() == "bearer" and key:
        for env_key in env_keys:
            if hmac.compare_digest(env_key, key):
                return f"key:{key_hash(key)[:12]}"
        owner = studio.store.api_key_owner(key_hash(key))
        if owner is not None:
            return owner
        raise Unauthorized("That API key is not valid.")
    if not env_keys and not studio.store.has_api_keys() and _is_loopback(request):
        return LOCAL_USER
    raise Unauthorized("Send 'Authorization: Bearer <key>' with a key from STUDIO_API_KEYS or the Settings tab.")


async def body(request: Request, root: str) -> tuple[dict[str, Any], list[Any]]:
    """The request's fields under `root` (e.g. 'tune') and its uploaded files.

    JSON bodies may wrap the fields (`{"tune": {...}}`) or not; multipart and urlencoded bodies
    use bracketed names (`tune[title]`, `tune[images][]`). Uploaded files are returned separately
    as (filename, bytes) pairs in order."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise StudioError("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise StudioError("The JSON body must be an object.")
        fields = data.get(root, data)
        return (fields if isinstance(fields, dict) else {}), []
    form = await request.form()
    files, items = [], []
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            files.append((value.filename or "upload", await value.read()))
        else:
            items.append((key, value))
    nested = nest(items)
    fields = nested.get(root, {k: v for k, v in nested.items()})
    return (fields if isinstance(fields, dict) else {}), files


def build_router() -> APIRouter:
    """All REST routes. Each handler reaches the Studio through `request.app.state.studio`."""
    router = APIRouter(dependencies=[Depends(caller)])

    @router.get("/gallery/tunes", tags=["gallery"])
    def gallery(request: Request) -> list[dict]:
        """The base models, each with id, title, family, embedded and available."""
        return [_gallery_json(m) for m in request.app.state.studio.base_models()]

    return router


def install(app: FastAPI, studio: Studio) -> None:
    """Attach the router and the error handlers to `app` (before Gradio is mounted at '/')."""
    app.state.studio = studio
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
        return JSONResponse({"error": "Some fields are invalid.", **fields}, status_code=422)


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
