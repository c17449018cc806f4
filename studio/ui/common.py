"""Helpers shared by the tabs."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr

from studio.errors import StudioError

F = TypeVar("F", bound=Callable)


def guard(fn: F) -> F:
    """Show a StudioError as a Gradio error toast with its message; anything else propagates."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StudioError as error:
            raise gr.Error(error.message) from error

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Context:
    """Components every tab may use. `browser_id` is a per-browser id kept in localStorage,
    so likes survive a reload; use `user()` to turn it (or the login name) into the like user."""

    browser_id: Any

    @staticmethod
    def ensure_browser_id(current: dict | None) -> dict:
        # A dict, not a bare string: Gradio does not write falsy values back to the browser.
        if isinstance(current, dict) and current.get("id"):
            return current
        return {"id": uuid.uuid4().hex}

    @staticmethod
    def user(browser_id: dict | None, request: gr.Request | None) -> str:
        """Who is acting: the login name when the UI has auth, else this browser's id."""
        if request is not None and getattr(request, "username", None):
            return f"user:{request.username}"
        if isinstance(browser_id, dict) and browser_id.get("id"):
            return f"browser:{browser_id['id']}"
        raise StudioError("Your browser id is not set yet; reload the page and try again.")
