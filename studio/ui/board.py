"""Prompt cards: prompts with their images, a like button and the seed under each image, a
download link, and (where the view allows) a delete button. The Gallery tab shows every prompt
this way and the Packs tab the prompts a pack run made.

The cards are one gr.HTML rendered here in Python (every user text escaped). Clicks go to the
server as custom events carrying the prompt id and image index: 'heart' (like or unlike, by
what the button showed) and 'trash' (delete, after the browser's confirm). Each tab wires them
with its own re-render, because only it knows which prompts it shows.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from studio.core import Studio
from studio.domain import FINISHED, QUEUING, RUNNING
from studio.errors import InvalidInput, NotFound, StudioError
from studio.ui.common import Context, card_css, likeness_badge

BOARD_JS = """
element.addEventListener('click', (event) => {
  const heart = event.target.closest('button.heart');
  if (heart) {
    heart.disabled = true;
    trigger('heart', {prompt: +heart.dataset.prompt, idx: +heart.dataset.idx, liked: heart.dataset.liked === '1'});
    return;
  }
  const trash = event.target.closest('button.trash');
  if (trash && window.confirm('Delete prompt ' + trash.dataset.prompt + ' and its images?')) {
    trash.disabled = true;
    trigger('trash', {prompt: +trash.dataset.prompt});
  }
});
"""

BOARD_CSS = """
.prompts { display: flex; flex-direction: column; gap: 12px; }
.prompt-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
        background: var(--background-fill-secondary); padding: 10px; color: var(--body-text-color);
        display: flex; flex-direction: column; gap: 6px; min-width: 0; }
.prompt-card .head { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.prompt-card .head .grow { flex: 1 1 140px; min-width: 0; overflow-wrap: anywhere; }
.prompt-card .text { overflow-wrap: anywhere; }
.prompt-card .shots { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 8px; }
.prompt-card figure { margin: 0; display: flex; flex-direction: column; gap: 4px; min-width: 0; }
.prompt-card figure a { display: block; }
.prompt-card figure img { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: var(--radius-md);
        background: var(--background-fill-primary); margin: 0; display: block; }
.prompt-card figcaption { display: flex; gap: 6px; align-items: center; font-size: 12px; flex-wrap: wrap; }
.prompt-card figcaption .seed { order: 3; flex: 1 1 100%; min-width: 0; color: var(--body-text-color-subdued);
        font-size: 11px; overflow-wrap: anywhere; }
.prompt-card figcaption a.download { margin-left: auto; }
.prompt-card button, .prompt-card a.download { font-size: 13px; padding: 2px 10px; border-radius: 999px;
        cursor: pointer; border: 1px solid var(--border-color-primary); text-decoration: none;
        background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); }
.prompt-card button.heart.on { background: #e11d48; border-color: #e11d48; color: #fff; }
.prompt-card button.trash { color: #ef4444; border-color: #ef4444; }
.prompt-card button:disabled { opacity: 0.6; cursor: progress; }
.prompt-card .likes { font-weight: 600; }
.more { text-align: center; }
"""


def board_css() -> str:
    """The cards' scoped CSS: the shared card styles plus the prompt cards' (theme variables
    only, so dark mode follows; image grids wrap to two columns on a phone)."""
    return card_css() + BOARD_CSS


def file_url(studio: Studio, relative: str) -> str:
    """The URL a page of this app loads a public stored file from (relative, so it works behind
    any host or proxy; Gradio serves the outputs, covers and samples areas only)."""
    return f"gradio_api/file={studio.public_path(relative)}"


def render(studio: Studio, items: list[dict[str, Any]], *, empty: str, deletable: bool = False) -> str:
    """Cards for `Studio.gallery` items, in order; `empty` (plain text) when there are none."""
    if not items:
        return f"<p class='empty'>{html.escape(empty)}</p>"
    return "<div class='prompts'>" + "".join(_card(studio, item, deletable) for item in items) + "</div>"


def _card(studio: Studio, item: dict[str, Any], deletable: bool) -> str:
    pid = int(item["id"])
    head = [
        f"<span class='badge {html.escape(item['status'])}'>{html.escape(item['status'])}</span>",
        f"<b>#{pid}</b>",
        f"<span class='grow'>{html.escape(item['tune_title'] or '')}"
        + (f" · pack: {html.escape(item['pack_title'])}" if item.get("pack_title") else "")
        + "</span>",
        f"<span class='likes' title='likes of this prompt and its images'>♥ {int(item['likes_count'])}</span>",
        _mean_likeness(item["images"]),
    ]
    if deletable:
        head.append(f"<button class='trash' data-prompt='{pid}' title='Delete this prompt'>Delete</button>")
    parts = [f"<div class='head'>{''.join(head)}</div>", f"<div class='text'>{html.escape(item['text'])}</div>"]
    if item["status"] not in FINISHED:
        percent = round(100 * float(item["progress"] or 0))
        parts.append(f"<div class='bar' title='{percent}%'><div style='width:{percent}%'></div></div>")
    if item.get("message"):
        parts.append(f"<div class='detail'>{html.escape(item['message'])}</div>")
    elif item["status"] == QUEUING:
        parts.append(f"<div class='detail waiting'>{html.escape(_waiting(studio, item['tune_id']))}</div>")
    for warning in item.get("warnings") or []:
        parts.append(f"<div class='detail'>⚠ {html.escape(str(warning))}</div>")
    if item["images"]:
        parts.append("<div class='shots'>" + "".join(_image(studio, pid, image) for image in item["images"]) + "</div>")
    parts.append(f"<div class='detail'>{html.escape(describe_params(item))}</div>")
    return f"<div class='prompt-card' data-prompt='{pid}'>{''.join(parts)}</div>"


def _waiting(studio: Studio, tune_id: int) -> str:
    """What a queued prompt waits for: its tune's training (a pack run on a new tune waits for
    minutes, and a bare QUEUING badge looks stuck), or its turn in the queue."""
    try:
        tune = studio.get_tune(tune_id)
    except NotFound:
        return "waiting in the queue"
    if tune["status"] in RUNNING:
        done = round(100 * float(tune["progress"] or 0))
        return f"waiting for the tune '{tune['title']}' to finish training ({done}%)"
    return "waiting in the queue"


def _image(studio: Studio, pid: int, image: dict[str, Any]) -> str:
    idx, url = int(image["idx"]), html.escape(file_url(studio, image["path"]), quote=True)
    liked = bool(image["liked"])
    label = "Unlike" if liked else "Like"
    return (
        f"<figure><a href='{url}' target='_blank' rel='noopener'>"
        f"<img src='{url}' loading='lazy' alt='image {idx + 1} of prompt {pid}'></a><figcaption>"
        f"<button class='heart{' on' if liked else ''}' data-prompt='{pid}' data-idx='{idx}' "
        f"data-liked='{int(liked)}' aria-pressed='{str(liked).lower()}' title='{label}'>"
        f"♥ <span class='count'>{int(image['likes'])}</span></button>"
        f"<span class='seed'>seed {int(image['seed'])}</span>"
        f"<a class='download' href='{url}' download='prompt-{pid}-{idx + 1}.png' title='Download'>⤓</a>"
        f"{likeness_badge(image.get('likeness'))}</figcaption></figure>"
    )


def _mean_likeness(images: list[dict[str, Any]]) -> str:
    """The mean likeness of a prompt's images that show a face, beside its likes ('' when none)."""
    scores = [image["likeness"]["score"] for image in images if (image.get("likeness") or {}).get("score") is not None]
    if not scores:
        return ""
    return (
        f"<span class='likeness-mean' title='mean likeness of the {len(scores)} image(s) with a face'>"
        f"likeness ⌀ {sum(scores) / len(scores):.2f}</span>"
    )


def describe_params(prompt: dict[str, Any]) -> str:
    """One line of a prompt's generation settings: those it set, then the negative prompt."""
    params = prompt.get("params") or {}
    shown = [
        f"{params['num_images']} image(s)" if params.get("num_images") else None,
        f"{params['steps']} steps" if params.get("steps") else None,
        params.get("scheduler"),
        f"CFG {params['cfg_scale']:g}" if params.get("cfg_scale") is not None else None,
        f"{params['w']}×{params['h']}" if params.get("w") and params.get("h") else None,
        f"seed {params['seed']}" if params.get("seed") is not None else None,
        "face correct" if params.get("face_correct") else None,
        "super resolution" if params.get("super_resolution") else None,
        "face swap" if params.get("face_swap") else None,
        f"aspect {params.get('aspect_ratio') or params['ar']}"
        if params.get("aspect_ratio") or params.get("ar")
        else None,
        params.get("resolution"),
        f"LoRA scale {params['lora_scale']:g}" if params.get("lora_scale") is not None else None,
        params.get("color_grading"),
        "film grain" if params.get("film_grain") else None,
        "no prompt weights" if params.get("use_lpw") is False else None,
        f"negative: {prompt['negative_prompt']}" if prompt.get("negative_prompt") else None,
    ]
    return " · ".join(item for item in shown if item)


def viewer(browser_id: dict | None, request: gr.Request | None) -> str | None:
    """Whose likes the cards show as theirs; None before this browser has an id (a first
    visit: nothing is liked yet)."""
    try:
        return Context.user(browser_id, request)
    except StudioError:
        return None


def heart(studio: Studio, user: str, event: gr.EventData) -> None:
    """Like or unlike the image a heart button names; the button says which (what it showed)."""
    prompt_id, idx = event_int(event, "prompt"), event_int(event, "idx")
    if _event_data(event).get("liked") is True:
        studio.unlike_prompt(prompt_id, user, idx)
    else:
        studio.like_prompt(prompt_id, user, idx)


def event_int(event: gr.EventData, name: str) -> int:
    """A whole number the page sent with a custom event; InvalidInput when it is not one."""
    value = _event_data(event).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInput(f"The page sent no valid {name}; reload it and try again.", field=name)
    return int(value)


def _event_data(event: gr.EventData) -> dict[str, Any]:
    data = getattr(event, "_data", None)
    return data if isinstance(data, dict) else {}
