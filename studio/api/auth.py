"""Who a REST request acts for: `Authorization: Bearer <key>` with a key from STUDIO_API_KEYS or
one made in the Settings tab; with no key at all, loopback clients of a server that listens on
loopback alone act as 'local'. The caller's principal (studio/principals.py) decides what it
sees: its own tunes, prompts and photos, or everything for an admin (STUDIO_ADMINS, 'local')."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Request

from studio.errors import StudioError
from studio.principals import Principal, principal_for

#: Who a keyless request acts for.
LOCAL_USER = "local"


class Unauthorized(StudioError):
    status = 401


def caller(request: Request) -> str:
    """The user the request acts for (likes are per user): the key's owner, or 'local'."""
    studio = request.app.state.studio
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key:
        user = studio.api_key_user(key)
        if user is None:
            raise Unauthorized("That API key is not valid.")
        return user
    # Keyless only when the server listens on loopback alone: a share tunnel or a Space's proxy
    # forwards the public's requests from a loopback address.
    if studio.keyless_allowed() and _is_loopback(request):
        return LOCAL_USER
    raise Unauthorized("Send 'Authorization: Bearer <key>' with a key from STUDIO_API_KEYS or the Settings tab.")


Caller = Annotated[str, Depends(caller)]


def principal(request: Request, user: Caller) -> Principal:
    """Who the request acts for, with what it may see (see studio/principals.py)."""
    return principal_for(user, request.app.state.studio.settings.admins)


Acting = Annotated[Principal, Depends(principal)]


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
