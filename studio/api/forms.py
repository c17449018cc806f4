"""REST bodies into studio calls: a body's fields and files read (JSON, or multipart with
Astria's bracketed `tune[...]` names, within the upload limits), and Astria's create requests
turned into the typed requests `Studio` takes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.exceptions import HTTPException

from studio import packs
from studio.errors import InvalidInput, TooLarge
from studio.formdata import nest
from studio.principals import LOCAL_ADMIN, Principal
from studio.prompts import REFERENCE_ROLES, check_reference_role
from studio.tune_requests import tune_request_from_fields

if TYPE_CHECKING:
    from studio.core import Studio


#: A JSON body's cap (fields and image URLs; no file bytes).
JSON_LIMIT = 2**20
#: The media types read; a body of any other (e.g. application/jsonx) is not guessed at: it
#: gives no fields, so the route names the first field it misses.
#: Reference files one prompt may upload: one per role at most.
MAX_REFERENCE_FILES = len(REFERENCE_ROLES)
JSON_TYPE, FORM_TYPES = "application/json", ("multipart/form-data", "application/x-www-form-urlencoded")


async def body(
    request: Request, root: str, *, files: int = 1, json_limit: int = JSON_LIMIT, file_mb: int | None = None
) -> tuple[dict[str, Any], dict[str, list[tuple[str, bytes]]]]:
    """The request's fields under `root` (e.g. 'tune') and its uploaded files.

    JSON bodies may wrap the fields (`{"tune": {...}}`) or not; multipart and urlencoded bodies
    use bracketed names (`tune[title]`, `tune[images][]`). Files are returned apart from the
    fields, by the name under `root` (`tune[images][]` -> "images"), as (filename, bytes) in
    order. The body is capped while it is read (chunked bodies too): a JSON body at
    `json_limit`, a form at the upload settings for `files` files (STUDIO_MAX_UPLOAD_MB each,
    plus one more for the fields; `file_mb` instead, e.g. for a LoRA). Raises TooLarge naming the limit, InvalidInput (field
    'body') for a body that cannot be read or is not a JSON object."""
    settings = request.app.state.studio.settings
    file_mb = file_mb or settings.max_upload_mb
    file_limit = file_mb * 2**20
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == JSON_TYPE:
        limit = json_limit
    elif media_type in FORM_TYPES:
        limit = file_limit * (files + 1)
    else:
        return {}, {}
    too_large = _over(limit, media_type == JSON_TYPE)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(too_large, field="body")
    capped = Request(request.scope, _capped_receive(request.receive, limit, too_large))
    if media_type == JSON_TYPE:
        raw = b"".join([chunk async for chunk in capped.stream()])
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for json to read
            raise InvalidInput("The body is not valid JSON.", field="body") from None
        if not isinstance(data, dict):
            raise InvalidInput(f'The JSON body must be an object, e.g. {{"{root}": {{...}}}}.', field="body")
        fields = data.get(root, data)
        return (fields if isinstance(fields, dict) else {}), {}
    try:
        form = await capped.form()
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        raise InvalidInput(f"The form could not be read: {error.detail}", field="body") from None
    uploads: dict[str, list[tuple[str, bytes]]] = {}
    items = []
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                items.append((key, value))
                continue
            name = file_field(key, root)
            if value.size is not None and value.size > file_limit:
                raise TooLarge(f"{value.filename or name} is over {file_mb} MB.", field=name)
            uploads.setdefault(name, []).append((value.filename or "upload", await value.read()))
    finally:
        await form.close()
    nested = nest(items)
    fields = nested.get(root, nested)
    return (fields if isinstance(fields, dict) else {}), uploads


def _over(limit: int, is_json: bool) -> str:
    size = f"{limit / 2**20:g} MB"
    if is_json:
        return f"The JSON body is over the limit of {size}: send photos as files (multipart) or image_urls."
    return f"The request is over the limit of {size}: send fewer or smaller photos."


def _capped_receive(receive, limit: int, message: str):
    """`receive` that counts the body as it arrives and raises TooLarge once past `limit`."""
    received = 0

    async def capped():
        nonlocal received
        event = await receive()
        if event["type"] == "http.request":
            received += len(event.get("body", b""))
            if received > limit:
                raise TooLarge(message, field="body")
        return event

    return capped


def create_tune(
    studio: Studio,
    fields: Mapping[str, Any],
    uploads: Sequence[tuple[str, bytes]],
    *,
    base_url: str,
    principal: Principal = LOCAL_ADMIN,
) -> dict[str, Any]:
    """Astria's `POST /tunes`: the tune's fields (JSON values, or multipart's bracketed fields
    as strings) and its `images` files as (filename, bytes); `image_urls` are fetched by
    `Studio.create_tune` once everything else is checked."""
    request = tune_request_from_fields(fields)
    return studio.create_tune(
        request,
        photos=list(uploads),
        image_urls=fields.get("image_urls"),
        base_url=base_url,
        detect_characteristics=True,  # as the Photos tab finds them; the request's own win
        principal=principal,
    )


def tune_from_pack(
    studio: Studio,
    pack_id: int | str,
    fields: Mapping[str, Any],
    uploads: Sequence[tuple[str, bytes]],
    *,
    base_url: str,
    principal: Principal = LOCAL_ADMIN,
) -> dict[str, Any] | list[dict[str, Any]]:
    """Astria's `POST /p/:id/tunes` (pack by id or slug). With `tune_ids`, the pack's prompts
    are made on those existing tunes (`Studio.run_pack`) and returned as a list. Otherwise a
    tune is made from `title`, `name`, the photos (uploads and `image_urls`), `callback`,
    `characteristics` and `branch`, and runs the pack's prompts of its class once trained
    (`Studio.tune_from_pack`). Either way each prompt posts to `prompt_attributes.callback`,
    and `prompts_callback` gets them all once they are done."""
    prompt_ids = ids(fields.get("prompt_ids"), "prompt_ids")
    attributes = fields.get("prompt_attributes") or {}
    if not isinstance(attributes, Mapping):
        raise InvalidInput(
            'prompt_attributes must be an object such as {"callback": "https://…"}.', field="prompt_attributes"
        )
    prompt_callback = text(attributes.get("callback"))
    tune_ids = ids(fields.get("tune_ids"), "tune_ids")
    if tune_ids:
        return studio.run_pack(
            pack_id,
            tune_ids,
            prompt_ids=prompt_ids,
            prompt_callback=prompt_callback,
            prompts_callback=text(fields.get("prompts_callback")),
            base_url=base_url,
            principal=principal,
        )
    title, name = text(fields.get("title")), text(fields.get("name"))
    for value, field_name in ((title, "title"), (name, "name")):
        if not value:
            raise InvalidInput(f"{field_name} is required.", field=field_name)
    return studio.tune_from_pack(
        pack_id,
        list(uploads),
        name,
        title,
        characteristics(fields.get("characteristics")),
        image_urls=fields.get("image_urls"),
        prompt_ids=prompt_ids,
        callback=text(fields.get("callback")),
        prompt_callback=prompt_callback,
        prompts_callback=text(fields.get("prompts_callback")),
        branch=text(fields.get("branch")),
        base_url=base_url,
        detect_characteristics=True,
        principal=principal,
    )


def create_prompt(
    studio: Studio,
    tune_id: int,
    fields: Mapping[str, Any],
    input_image: bytes | None,
    *,
    base_url: str,
    principal: Principal = LOCAL_ADMIN,
    reference_files: Sequence[bytes] = (),
    other_files: Mapping[str, bytes] | None = None,
    mask_image: bytes | None = None,
) -> dict[str, Any]:
    """Astria's `POST /tunes/:id/prompts`. The input image is the uploaded `input_image` file,
    else fetched from `input_image_url` (like `image_urls`), else decoded from
    `input_image_base64` (a data URL). Role-tagged references (`references`, see
    `references`) pair `reference_files` with the entries that give no `url`, in order. An
    inpainting mask comes the same three ways: `mask_image`, `mask_image_url`, `mask_image_base64`.
    `other_files` are the other uploads by field name (video_first_frame…): the request answers
    those it does not use with a warning (studio/prompt_fields.py)."""
    extra = ("input_image", "input_image_url", "input_image_base64", "references")
    extra += ("mask_image", "mask_image_url", "mask_image_base64")
    values = {**(other_files or {}), **{key: value for key, value in fields.items() if key not in extra}}
    for name, upload in (("input_image", input_image), ("mask_image", mask_image)):
        if (image := _image_field(studio, name, upload, fields)) is not None:
            values[name] = image
    if fields.get("references") or reference_files:
        values["references"] = references(studio, fields.get("references"), reference_files)
    return studio.create_prompt(tune_id, values, base_url=base_url, principal=principal)


def _image_field(studio: Studio, name: str, upload: bytes | None, fields: Mapping[str, Any]) -> bytes | None:
    """An image field of a prompt: the uploaded file `name`, else fetched from `name_url`, else
    decoded from `name_base64` (a data URL); None when none is given."""
    if upload is not None:
        return upload
    url, data_url = text(fields.get(f"{name}_url")), text(fields.get(f"{name}_base64"))
    if url:
        [(_, data)] = studio.fetch_photos([url], field=f"{name}_url")
        return data
    if data_url:
        return packs.decode_data_url(data_url, f"{name}_base64")
    return None


def references(studio: Studio, entries: Any, files: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """(role, image bytes) pairs from `references`: a list of {"role": …, "url": …} (JSON), or
    the form's `prompt[references][][role]` with a `prompt[references][][url]` or a file field
    `prompt[references][][image]` (files pair, in order, with the entries that give no url).
    URLs are fetched SSRF-checked like `image_urls`. An unknown role is an InvalidInput naming it."""
    if entries in (None, ""):
        entries = []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise InvalidInput('references must be a list of {"role": …, "url": …}.', field="references")
    pending = list(files)
    out = []
    for entry in entries:
        role = check_reference_role(text(entry.get("role")) or "")
        url = text(entry.get("url"))
        if url:
            [(_, data)] = studio.fetch_photos([url], field="references")
        elif pending:
            data = pending.pop(0)
        else:
            raise InvalidInput(f"The {role} reference has neither a url nor a file.", field="references")
        out.append((role, data))
    if pending:
        raise InvalidInput(
            f"{len(pending)} reference file(s) without a role: send prompt[references][][role] for each.",
            field="references",
        )
    return out


def inspect(studio: Studio, fields: Mapping[str, Any], upload: bytes | None) -> dict[str, Any]:
    """Astria's `POST /images/inspect`: one photo (`file`, else `file_url`) of class `name`,
    which the API requires."""
    return studio.inspect_photo(upload, text(fields.get("name")) or "", url=text(fields.get("file_url")))


def file_field(key: str, root: str) -> str:
    """The field name of an uploaded file: `tune[images][]` -> 'images', `file` -> 'file'."""
    parts = [p for p in key.replace("]", "").split("[") if p]
    if len(parts) > 1 and parts[0] == root:
        parts = parts[1:]
    return parts[0] if parts else key


def text(value: Any) -> str | None:
    """A text field of an API request: stripped, None when absent or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def ids(value: Any, field: str) -> list[int] | None:
    """A list of ids from JSON (numbers) or a form (`tune_ids[]=1`, or "1,2"); None when
    absent. InvalidInput naming `field` for anything that is not a positive whole number."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    ids = []
    for item in items:
        try:
            number = int(str(item).strip()) if not isinstance(item, bool) else 0
        except ValueError:
            number = 0
        if not 1 <= number < 2**63:
            raise InvalidInput(f"{field} must be a list of ids (positive whole numbers); got {item!r}.", field=field)
        ids.append(number)
    return ids


def characteristics(value: Any) -> dict[str, Any] | None:
    """`characteristics` from JSON (an object), a form (`tune[characteristics][eye_color]=…`)
    or JSON text; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
            value = None
    if not isinstance(value, Mapping):
        raise InvalidInput(
            'characteristics must be an object of text values, e.g. {"eye_color": "blue eyes"}.',
            field="characteristics",
        )
    return dict(value)
