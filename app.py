"""Avatar Studio entry point: Settings.from_env() -> Studio.open() -> serve the UI and the API.

`make run` calls this. `create_app(studio)` is importable so tests can serve the same app on a
free port.
"""

from __future__ import annotations

import logging
import time

from studio.config import Settings
from studio.core import Studio

log = logging.getLogger("studio")


def create_app(studio: Studio):
    """The FastAPI app: REST routes first, then the Gradio Blocks mounted at '/'."""
    from fastapi import FastAPI

    from studio import api
    from studio.ui import build_ui

    app = FastAPI(title="Avatar Studio API", version="1")
    api.install(app, studio)
    return mount_ui(app, build_ui(studio), studio)


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
    settings = Settings.from_env()
    studio = Studio.open(settings)
    studio.prepare()
    app = create_app(studio)
    url = f"http://{settings.host}:{settings.port}/"
    log.info("ready in %.1f s: open %s", time.monotonic() - started, url)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        studio.close()


if __name__ == "__main__":
    main()
