"""Reads and small helpers several services share (kept here so no two services import each
other in a loop)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from storage import Store
from studio.errors import NotFound


def user_tune(store: Store, tune_id: int) -> dict[str, Any]:
    """A user's tune (LoRA or FaceID) row; NotFound for a base model or a missing id."""
    tune = store.get_tune(tune_id)
    if tune is None or tune["model_type"] == "checkpoint":
        raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
    return tune


def prompt_row(store: Store, prompt_id: int) -> dict[str, Any]:
    prompt = store.get_prompt(prompt_id)
    if prompt is None:
        raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
    return prompt


def still_there(render: Callable[[int], dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`render(id)` of each listed row, leaving out those deleted since the listing: rendering
    reads each row again, and a concurrent delete must not turn a whole listing into a 404."""
    shown = []
    for row in rows:
        try:
            shown.append(render(row["id"]))
        except NotFound:
            continue
    return shown


def timestamp(moment: datetime) -> str:
    """A UTC datetime in the form the store's `now()` writes (ISO 8601, milliseconds, Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
