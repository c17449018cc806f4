"""The Astria-compatible REST API, mounted beside the Gradio UI (the routes and their contract
are described in `routes`): `auth` (who a request acts for), `forms` (bodies -> studio calls),
`schemas` (the documented shapes for /openapi.json), `routes` (the routers and `install`).
It goes through `Studio` only; only `app.py` imports it."""

from studio.api.routes import install

__all__ = ["install"]
