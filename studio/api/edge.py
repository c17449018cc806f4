"""The server's edge: what every request passes before any route, the REST API's and the
Gradio UI's alike (`app.py` wraps the whole app in `Edge`).

- Open loopback mode: the server listens on loopback alone and STUDIO_AUTH is not set, so the
  API may run keyless and the UI asks for no login; whoever reaches the port is trusted. Then
  only loopback `Host` names (localhost, 127.0.0.1, [::1], any port; and STUDIO_PUBLIC_URL's
  host when set) are answered, so a page on another site cannot reach the studio through DNS
  rebinding; and a state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` (or, without
  one, `Referer`) is another site is refused, so another site cannot post through the person's
  browser. The UI's own pages send their own origin and pass; clients that send neither header
  (curl, scripts, gradio_client) pass. The UI needs the check as much as the API: without a
  login it can mint API keys and delete tunes.
- Bodies: every body is counted while it is read, chunked ones included, and cut with 413 naming
  the limit once over its path's cap (Gradio's upload route: the upload settings; Gradio's other
  routes: EVENT_LIMIT; REST routes: the upload settings here, finer caps in `forms.body`). A
  body must also keep a minimum pace (BODY_GRACE_S, then MIN_BODY_RATE bytes a second on
  average over the whole body, not per read), else 408: a client that drips bytes is cut.
- Failed logins (`POST /login`, Gradio's login form) are counted per client address; past
  STUDIO_LOGIN_FAILURES_PER_MINUTE the address waits (429 saying how long). The address is the
  connection's, or X-Forwarded-For's when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS,
  127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from studio.throttle import Throttle

if TYPE_CHECKING:
    from studio.core import Studio

log = logging.getLogger(__name__)

MB = 2**20
#: Gradio's event and login bodies carry fields and file references, never file bytes.
EVENT_LIMIT = 2 * MB
BODY_GRACE_S = 30.0
MIN_BODY_RATE = 16 * 1024  # bytes a second, on average after the grace
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GRADIO_UPLOAD = "/gradio_api/upload"


def upload_limit(settings) -> int:
    """The largest body the upload settings allow: every photo of a set at its largest, plus one
    upload's worth of room for the other fields."""
    return settings.max_upload_mb * (settings.max_photos + 1) * MB


def open_loopback(settings) -> bool:
    """True when whoever reaches the port is trusted: loopback only, and no login."""
    return settings.is_loopback and not settings.auth


class Edge:
    """ASGI middleware around the whole app (REST routes and the mounted Gradio UI)."""

    def __init__(self, app, studio: Studio, *, clock=time.monotonic):
        settings = studio.settings
        self.app = app
        self.clock = clock
        self.open_loopback = open_loopback(settings)
        self.upload_limit = upload_limit(settings)
        self.logins = Throttle(settings.login_failures_per_minute, clock=clock)
        public = urlsplit(settings.public_url or "")
        self.public_origin = _origin(settings.public_url) if public.hostname else None
        self.public_host = public.hostname

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.open_loopback:
            refusal = self.refusal(scope, headers)
            if refusal:
                log.warning("refused %s %s: %s", scope.get("method", "WS"), scope["path"], refusal)
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await _answer(send, 403, refusal, close=True)
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if scope["method"] == "POST" and path.rstrip("/") == "/login":
            await self.login(scope, receive, send)
            return
        limit = self.body_limit(path)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit), close=True)
            return
        await self.guarded(scope, receive, send, limit)

    def refusal(self, scope, headers: Headers) -> str | None:
        """Why open loopback mode refuses this request (another Host, or a cross-site write);
        None when it passes."""
        host = headers.get("host")
        if host is not None and not self._known_host(host):
            return (
                f"This studio answers only at localhost or 127.0.0.1, not at {host!r} "
                "(set STUDIO_PUBLIC_URL to serve it under another name)."
            )
        if scope["type"] == "websocket" or scope["method"] in STATE_CHANGING:
            source = headers.get("origin") or headers.get("referer")
            if source is not None and not self._same_origin(source, scope, host):
                return f"Requests that change data must come from the studio's own pages, not from {source!r}."
        return None

    def _known_host(self, host: str) -> bool:
        name = urlsplit(f"//{host}").hostname
        if name is None:
            return False
        if name == "localhost" or name == self.public_host:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def _same_origin(self, source: str, scope, host: str | None) -> bool:
        origin = _origin(source)
        if origin is None:  # "null" (a sandboxed frame, a file), or not a URL at all
            return False
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        own = _origin(f"{scheme}://{host}") if host else None
        return origin in (own, self.public_origin)

    def body_limit(self, path: str) -> int:
        if path == GRADIO_UPLOAD or not path.startswith("/gradio_api/"):
            return self.upload_limit
        return EVENT_LIMIT

    async def guarded(self, scope, receive, send, limit: int) -> None:
        """Run the app with its body counted and paced; once cut, the app sees the client gone
        and whatever it answers is dropped."""
        started = self.clock()
        state = {"received": 0, "done": False, "answered": False, "responded": False}

        async def cut(status: int, message: str) -> dict[str, Any]:
            state["answered"] = True
            log.warning("cut %s %s: %s", scope["method"], scope["path"], message)
            if not state["responded"]:
                await _answer(send, status, message, close=True)
            return {"type": "http.disconnect"}

        async def paced_receive():
            if state["done"] or state["answered"]:
                return await receive()  # the body is read: what follows is the client leaving
            deadline = started + BODY_GRACE_S + state["received"] / MIN_BODY_RATE
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - self.clock(), 0.001))
            except TimeoutError:
                return await cut(408, f"The request body came too slowly (under {MIN_BODY_RATE // 1024} KB/s).")
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    return await cut(413, _too_large(limit))
                state["done"] = not message.get("more_body", False)
            return message

        async def checked_send(message):
            if state["answered"]:
                return
            if message["type"] == "http.response.start":
                state["responded"] = True
            await send(message)

        try:
            await self.app(scope, paced_receive, checked_send)
        except Exception:
            if not state["answered"]:
                raise
            log.debug("the app stopped after its request was cut", exc_info=True)

    async def login(self, scope, receive, send) -> None:
        """Gradio's login form, with failures counted per client address."""
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = self.logins.blocked(address)
        if wait:
            log.warning("login refused for %s: too many failures", address)
            seconds = math.ceil(wait)
            await _answer(
                send,
                429,
                f"Too many failed logins from your address: wait {seconds} s and try again.",
                close=True,
                headers=[(b"retry-after", str(seconds).encode())],
            )
            return
        status = {}

        async def watched_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.guarded(scope, receive, watched_send, EVENT_LIMIT)
        if status.get("code") == 400:  # Gradio's "Incorrect credentials."
            self.logins.take(address)


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, default ports filled in; None when it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _too_large(limit: int) -> str:
    return f"The request body is over the limit of {limit / MB:g} MB."


async def _answer(send, status: int, message: str, *, close: bool = False, headers=()) -> None:
    """A JSON error answer (`{"error": ..., "detail": ...}`: the API's shape and Gradio's)."""
    body = json.dumps({"error": message, "detail": message}).encode()
    extra = [(b"connection", b"close")] if close else []
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
