"""Gallery tab: every prompt with its images and their likeness badges, filtered by tune, pack or
likeness, newest, most liked or best likeness first; like or unlike each image (likes rank
prompts and packs), download, delete a prompt.

Likes belong to the person: the login name when the studio has one, else this browser's id, so
they survive a reload. A prompt still running shows its progress, and the tab polls until it is
done.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.core import Studio
from studio.domain import FINISHED
from studio.ui import board
from studio.ui.common import Context, guard, on_show

PAGE = 12
ALL = 0  # the filter choice meaning "any tune" / "any pack"
SORTS = [("Newest", "newest"), ("Most liked", "likes"), ("Best likeness", "likeness")]
# Likeness filter (studio/likeness.py): an image shows the tune's subject, or scored images all miss it.
MATCHES = [
    ("Any likeness", "all"),
    ("Looks like the subject", "match"),
    ("Misses the subject", "miss"),
    ("Copies a training photo", "copy"),
]
LIKENESS_NOTE = (
    "Likeness badges: how much the face in each image looks like the tune's subject (cosine similarity "
    "of face embeddings, 1 = identical); each badge shows its face backend's same-person threshold. "
    "'too alike: a copy' marks a face nearly identical to a training photo (dlib from 0.995, insightface "
    "from 0.962): the model pasted it instead of drawing the person."
)


def build(studio: Studio, ctx: Context) -> None:
    gr.Markdown("Every prompt and its images. Like the images you like: likes rank the packs and their prompts.")
    with gr.Row(equal_height=True):
        tune = gr.Dropdown(_tune_choices(studio), value=ALL, label="Tune", min_width=200, elem_id="gallery-tune")
        pack = gr.Dropdown(_pack_choices(studio), value=ALL, label="Pack", min_width=200, elem_id="gallery-pack")
        sort = gr.Radio(SORTS, value="newest", label="Sort", min_width=200, elem_id="gallery-sort")
        match = gr.Dropdown(MATCHES, value="all", label="Likeness", min_width=200, elem_id="gallery-likeness")
    gr.Markdown(LIKENESS_NOTE, elem_id="gallery-likeness-note")
    cards = gr.HTML(
        board.render(studio, [], empty="Loading…"),
        css_template=board.board_css(),
        js_on_load=board.BOARD_JS,
        elem_id="gallery-board",
    )
    with gr.Row():
        more = gr.Button("Show more", size="sm", visible=False, elem_id="gallery-more")
        refresh = gr.Button("Refresh", size="sm", elem_id="gallery-refresh")
    limit = gr.State(PAGE)
    timer = gr.Timer(2.0, active=False)

    def show(
        tune_id: int, pack_id: int, order: str, match: str, count: int, browser_id: dict | None, request: gr.Request
    ):
        """The cards, the "show more" button and the poll timer for the filters, `count`
        prompts at most."""
        user = board.viewer(browser_id, request)
        items = studio.gallery(
            tune_id=tune_id or None, pack_id=pack_id or None, sort=order, limit=count, user=user, likeness=match
        )
        empty = "No images yet." if not (tune_id or pack_id or match != "all") else "No prompts match these filters."
        running = any(item["status"] not in FINISHED for item in items)
        return {
            cards: board.render(studio, items, empty=empty, deletable=True),
            more: gr.Button(visible=len(items) == count),
            timer: gr.Timer(active=running),
        }

    @guard
    def on_filter(tune_id: int, pack_id: int, order: str, match: str, browser_id: dict | None, request: gr.Request):
        return {limit: PAGE, **show(tune_id, pack_id, order, match, PAGE, browser_id, request)}

    @guard
    def on_more(
        tune_id: int, pack_id: int, order: str, match: str, count: int, browser_id: dict | None, request: gr.Request
    ):
        return {limit: count + PAGE, **show(tune_id, pack_id, order, match, count + PAGE, browser_id, request)}

    @guard
    def on_heart(
        tune_id: int,
        pack_id: int,
        order: str,
        match: str,
        count: int,
        browser_id: dict | None,
        request: gr.Request,
        event: gr.EventData,
    ):
        board.heart(studio, ctx.like_user(browser_id, request), event)
        return show(tune_id, pack_id, order, match, count, browser_id, request)

    @guard
    def on_trash(
        tune_id: int,
        pack_id: int,
        order: str,
        match: str,
        count: int,
        browser_id: dict | None,
        request: gr.Request,
        event: gr.EventData,
    ):
        studio.delete_prompt(board.event_int(event, "prompt"), cancel=True)
        return show(tune_id, pack_id, order, match, count, browser_id, request)

    @guard
    def on_open(
        tune_id: int, pack_id: int, order: str, match: str, count: int, browser_id: dict | None, request: gr.Request
    ) -> dict[Any, Any]:
        tunes, packs = _tune_choices(studio), _pack_choices(studio)
        tune_id = tune_id if tune_id in {value for _, value in tunes} else ALL
        pack_id = pack_id if pack_id in {value for _, value in packs} else ALL
        return {
            tune: gr.Dropdown(choices=tunes, value=tune_id),
            pack: gr.Dropdown(choices=packs, value=pack_id),
            **show(tune_id, pack_id, order, match, count, browser_id, request),
        }

    filters = [tune, pack, sort, match]
    view = [cards, more, timer]
    for control in filters:
        control.input(on_filter, [*filters, ctx.browser_id], [limit, *view], api_visibility="private")
    more.click(on_more, [*filters, limit, ctx.browser_id], [limit, *view], api_visibility="private")
    cards.heart(on_heart, [*filters, limit, ctx.browser_id], view, api_visibility="private")
    cards.trash(on_trash, [*filters, limit, ctx.browser_id], view, api_visibility="private")
    refresh.click(on_open, [*filters, limit, ctx.browser_id], [tune, pack, *view], api_visibility="private")
    timer.tick(guard(show), [*filters, limit, ctx.browser_id], view, api_visibility="private", show_progress="hidden")
    on_show(ctx, on_open, [*filters, limit, ctx.browser_id], [tune, pack, *view])


def _tune_choices(studio: Studio) -> list[tuple[str, int]]:
    tunes = [(f"{t['title']} (#{t['id']})", t["id"]) for t in studio.list_tunes(limit=500)]
    models = [(f"{m['title']} · {m['family_label']} base model", m["id"]) for m in studio.base_models()]
    return [("All tunes", ALL), *tunes, *models]


def _pack_choices(studio: Studio) -> list[tuple[str, int]]:
    return [("All packs", ALL), *((p["title"], p["id"]) for p in studio.list_packs())]
