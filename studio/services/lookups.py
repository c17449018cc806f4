"""Reads and small helpers several services share (kept here so no two services import each
other in a loop)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from storage import Store
from studio.errors import NotFound
from studio.principals import LOCAL_ADMIN, Principal


def user_tune(store: Store, tune_id: int, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
    """A user's tune (LoRA or FaceID) row `principal` may see; NotFound for a base model, a
    missing id or someone else's tune (which must look just like a missing one)."""
    tune = store.get_tune(tune_id)
    if tune is None or tune["model_type"] == "checkpoint" or not principal.sees(tune["owner"]):
        raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
    return tune


def any_tune(store: Store, tune_id: int, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
    """A tune row `principal` may see: a gallery base model (shared) or its own user tune."""
    tune = store.get_tune(tune_id)
    if tune is None or (tune["model_type"] != "checkpoint" and not principal.sees(tune["owner"])):
        raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
    return tune


def named_adapter(store: Store, kind: str, name: str, principal: Principal = LOCAL_ADMIN) -> dict[str, Any] | None:
    """The adapter a token `<kind:name>` of `principal` names: its own of that name (names are
    unique per owner, so two owners may use the same one), else for an admin, who sees all,
    the first made by anyone; None when there is none."""
    adapter = store.get_adapter(kind, name, principal.owner)
    if adapter is None and principal.is_admin:
        adapter = store.get_adapter(kind, name)
    return adapter


def prompt_row(store: Store, prompt_id: int, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
    prompt = store.get_prompt(prompt_id)
    if prompt is None or not principal.sees(prompt["owner"]):
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
