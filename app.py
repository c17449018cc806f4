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

log = logging.getLogger("studio")


def create_app(studio: Studio):
    """The FastAPI app: REST routes first, then the Gradio Blocks mounted at '/'."""
    from fastapi import FastAPI

    from studio import api
    from studio.ui import build_ui

    app = FastAPI(title="Avatar Studio API", version="1")
    api.install(app, studio)
    if studio.settings.public_demo and not studio.settings.auth:
        app.add_middleware(VisitorCookie)
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
    STUDIO_HOME is blocked, both for direct file requests and for paths handlers return."""
    import gradio as gr

    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        allowed_paths=[str(p) for p in studio.files.public_dirs()],
        blocked_paths=[str(p) for p in studio.private_paths()],
        auth=list(studio.settings.auth) or None,
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
    studio.start_worker()
    app = create_app(studio)
    url = f"http://{settings.host}:{settings.port}/"
    log.info("ready in %.1f s: open %s", time.monotonic() - started, url)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    if settings.share:
        threading.Thread(target=open_share_link, args=(server, settings), name="studio-share", daemon=True).start()
    try:
        server.run()
    finally:
        studio.close()


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
