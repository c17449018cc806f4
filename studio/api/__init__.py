"""The Astria-compatible REST API, mounted beside the Gradio UI (the routes and their contract
are described in `routes`): `auth` (who a request acts for), `forms` (bodies -> studio calls),
`schemas` (the documented shapes for /openapi.json), `routes` (the routers and their `install`),
`library` (adapters, checkpoints, pack files: routes that reuse `routes`' path types).
It goes through `Studio` only; only `app.py` imports it."""

from fastapi import FastAPI

from studio.api import library, routes


def install(app: FastAPI, studio) -> None:
    """Attach every router, the error handlers and the OpenAPI schema to `app` (before Gradio
    is mounted at '/')."""
    routes.install(app, studio)
    app.include_router(library.build_library_router())


__all__ = ["install"]
