"""Helpers shared by the tabs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

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
