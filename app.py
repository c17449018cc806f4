"""Avatar Studio entry point: Settings.from_env() -> Studio.open() -> serve the UI and the API.

`make run` calls this. `create_app(studio)` is importable so tests can serve the same app on a
free port.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from studio import zerogpu
from studio.config import ConfigError, Settings
from studio.core import Studio
from studio.errors import StudioError

log = logging.getLogger("studio")

#: Gradio's cache: how often it is swept and how old a file may get (an upload must outlive the
#: form it was picked in; a result, the page that shows it).
CACHE_SWEEP_S, CACHE_AGE_S = 300, 3600
#: A client has this long to send a request's line and headers (uvicorn itself has no limit).
HEAD_TIMEOUT_S = 10.0
#: Idle time before a kept-alive connection is closed, and the largest request head.
KEEP_ALIVE_S, MAX_HEAD_BYTES = 5, 64 * 1024


def create_app(studio: Studio):
    """The FastAPI app: REST routes first, then the Gradio Blocks mounted at '/'."""
    from fastapi import FastAPI

    from studio import api
    from studio.api.edge import Edge
    from studio.ui import build_ui

    app = FastAPI(title="Avatar Studio API", version="1")
    api.install(app, studio)
    if studio.settings.public_demo and not studio.settings.auth:
        app.add_middleware(VisitorCookie)
    # Around everything, Gradio's routes included: Host/Origin in open loopback mode, body caps
    # and pace, the login throttle (studio/api/edge.py).
    app.add_middleware(Edge, studio=studio)
    return mount_ui(app, build_ui(studio), studio)


class VisitorCookie:
    """ASGI middleware of a STUDIO_PUBLIC_DEMO studio without logins: gives each browser a
    random visitor id cookie, which the UI uses to keep one anonymous visitor's tunes and
    photos from another's (studio/ui/common.py `event_principal`). A convenience for a demo,
    not security: a client can send any id it likes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        from http.cookies import CookieError, SimpleCookie

        from studio.ui.common import VISITOR_COOKIE

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cookies = SimpleCookie()
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except CookieError:  # a malformed header: treat it as no cookie
                    pass
        if VISITOR_COOKIE in cookies:
            return await self.app(scope, receive, send)
        cookie = f"{VISITOR_COOKIE}={secrets.token_urlsafe(18)}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"

        async def with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        return await self.app(scope, receive, with_cookie)


def mount_ui(app, demo, studio: Studio):
    """Mount `demo` at '/' of `app`, serving only the public file areas.

    Routes must be added before this, or the mount at '/' shadows them. Every other path under
    STUDIO_HOME is blocked, both for direct file requests and for paths handlers return.

    Uploads follow the REST API's limits: one file at most STUDIO_MAX_UPLOAD_MB (413 from
    Gradio's upload route), a whole upload at most the photo set's worth (the Edge). Gradio
    keeps uploads and the files handlers return in its cache and serves them by path to anyone
    who may use the UI; `delete_cache` removes each of them once it is CACHE_AGE_S old (checked
    every CACHE_SWEEP_S) and everything at shutdown. Gradio 6.31 has no way to drop an upload
    when the event that read it ends: handlers that must not leave a copy delete it themselves."""
    import gradio as gr

    # A Blocks attribute (a constructor argument) that mount_gradio_app reads when it mounts.
    demo.delete_cache = (CACHE_SWEEP_S, CACHE_AGE_S)
    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        allowed_paths=[str(p) for p in studio.files.public_dirs()],
        blocked_paths=[str(p) for p in studio.private_paths()],
        auth=list(studio.settings.auth) or None,
        # Only StudioErrors (gr.Error toasts) reach the browser: Gradio's own errors name server
        # paths, e.g. the blocked folders of STUDIO_HOME when a request names a file there.
        show_error=False,
        max_file_size=studio.settings.max_upload_mb * 2**20,
        # Gradio's login page says only "Incorrect credentials", even to an address the Edge
        # holds back after too many failures: say so up front.
        auth_message=(
            f"After {studio.settings.login_failures_per_minute} failed logins in a minute, "
            "logins from your address wait a little."
        )
        if studio.settings.auth
        else None,
    )
    # mount_gradio_app never marks the Blocks launched, and Gradio only checks the paths that
    # handlers return against blocked_paths once it is (NOTES-gradio.md §3).
    demo.has_launched = True
    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise SystemExit(f"Avatar Studio cannot start: {error.message}") from None
    if settings.public_demo and not settings.auth:
        log.warning(
            "STUDIO_PUBLIC_DEMO=1 without STUDIO_AUTH: anyone who reaches %s:%s uses the studio; "
            "visitors are told apart by a cookie only, and none of them can manage API keys",
            settings.host,
            settings.port,
        )
    if zerogpu.active(settings.zero_gpu):
        import spaces  # noqa: F401  ZeroGPU patches torch's CUDA handling; it must come before torch uses CUDA
    studio = Studio.open(settings)
    studio.prepare()
    try:
        studio.start_worker()
    except StudioError as error:  # e.g. the Ray cluster of STUDIO_RAY_ADDRESS does not answer
        studio.close()
        raise SystemExit(f"Avatar Studio cannot start: {error.message}") from None
    app = create_app(studio)
    url = f"http://{settings.host}:{settings.port}/"
    log.info("ready in %.1f s: open %s", time.monotonic() - started, url)
    server = uvicorn.Server(server_config(app, settings))
    if settings.share:
        threading.Thread(target=open_share_link, args=(server, settings), name="studio-share", daemon=True).start()
    try:
        server.run()
    finally:
        studio.close()


def server_config(app, settings: Settings, **overrides):
    """uvicorn's config for `app`, with the slow-client limits: a request's head must arrive
    within HEAD_TIMEOUT_S (counted from the connection, or the end of the previous response,
    not per read) and be at most MAX_HEAD_BYTES; an idle kept-alive connection closes after
    KEEP_ALIVE_S. The body's pace and size are the Edge's (studio/api/edge.py)."""
    import uvicorn

    values = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "http": head_deadline_protocol(HEAD_TIMEOUT_S),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        **overrides,
    }
    return uvicorn.Config(app, **values)


def head_deadline_protocol(seconds: float):
    """uvicorn's h11 protocol, closing connections whose request head takes over `seconds`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadline(H11Protocol):
        _head_timer = None
        _head_cycle = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the head of the next request on a kept-alive connection
            super().data_received(data)
            upgraded = self.transport.get_protocol() is not self  # a websocket took over
            if self._head_timer is not None and (self.cycle is not self._head_cycle or upgraded):
                self._disarm()  # a new request's head was read

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                log.info("closed a connection whose request head took over %.0f s", seconds)
                self.transport.close()

    return HeadDeadline


def open_share_link(server, settings: Settings, timeout: float = 60.0) -> str | None:
    """Once `server` (a uvicorn.Server) listens, open a Gradio share tunnel to it and log the
    public URL; returns it, or None when no tunnel could be made (the studio keeps running
    locally). Settings already refused sharing without STUDIO_AUTH. Needs internet: Gradio's
    tunnel client (frpc) is downloaded on first use and asks gradio.live for a link."""
    from gradio import networking

    deadline = time.monotonic() + timeout
    while not server.started:
        if server.should_exit or time.monotonic() > deadline:
            log.error("no share link: the server did not start within %.0f s", timeout)
            return None
        time.sleep(0.1)
    local_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    try:
        address = networking.setup_tunnel(
            local_host=local_host,
            local_port=settings.port,
            share_token=secrets.token_urlsafe(32),
            share_server_address=None,
            share_server_tls_certificate=None,
        )
    except Exception as error:  # no internet, a blocked binary…: the local studio still works
        log.error("could not open a share link (%s); the studio stays on %s:%s", error, settings.host, settings.port)
        return None
    # gradio.live serves the tunnel over https whatever scheme frpc reports (as Blocks.launch does).
    public = address if networking.GRADIO_SHARE_SERVER_ADDRESS else urlunsplit(("https", *urlsplit(address)[1:]))
    log.info("public share link (login required; API keys required): %s", public)
    return public


if __name__ == "__main__":
    main()
