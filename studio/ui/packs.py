"""Packs tab: browse packs as cards (cover, title, like rate), best ranked first; run a pack on
a tune and like its results; build and edit a pack (its fields, its prompt templates per class,
with the linter's findings inline); import and export pack files.

A pack's ranking is its like rate's Wilson lower bound (studio/packs.py), so likes given to the
images a pack made here, in the Generate tab or in the Gallery move it up or down.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core import Studio
from studio.domain import CANCELED, FAILED, FINISHED
from studio.errors import InvalidInput, NotFound
from studio.families import ASPECT_RATIOS
from studio.look import COLOR_GRADINGS
from studio.packs import CLASS_NAMES, PackPromptRequest, PackRequest
from studio.prompts import MAX_IMAGES, SCHEDULERS
from studio.tune_requests import DEFAULT_TOKEN, PRESETS
from studio.ui import board
from studio.ui.common import EMPTY_PHOTO_SET, Context, forget_uploads, guard, on_show

NEW = 0  # the prompt choice meaning "a new prompt"
NONE = ""  # no preset / the scheduler's default
RESULTS = 12

PICK_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('[data-pack]');
  if (card) trigger('pick', {pack: +card.dataset.pack});
});
element.addEventListener('keydown', (event) => {
  const card = event.target.closest('[data-pack]');
  if (card && (event.key === 'Enter' || event.key === ' ')) { event.preventDefault(); trigger('pick', {pack: +card.dataset.pack}); }
});
"""

# Runs in the browser before the delete: a "no" sends no pack, which deletes nothing.
CONFIRM_DELETE = (
    "(pack) => (pack && window.confirm('Delete this pack and its prompts? Images made from it stay.')) ? pack : null"
)

PACK_CSS = """
.cards.packs { grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); }
.pack-card { cursor: pointer; }
.pack-card img { aspect-ratio: 4 / 3; }
.pack-card .mark { aspect-ratio: 3 / 1; font-size: 20px; }
.pack-card.chosen { outline: 2px solid var(--color-accent); }
.lint { margin: 0; padding-left: 18px; }
.lint .error { color: #dc2626; }
.lint .warning { color: #d97706; }
"""


def build(studio: Studio, ctx: Context) -> None:
    gr.Markdown(
        "Packs are themed prompt templates per class (man, woman, dog…). Run one on a tune to get its "
        "images; your likes rank the packs."
    )
    first = _first_pack(studio)
    cards = gr.HTML(
        _cards(studio, first),
        css_template=board.board_css() + PACK_CSS,
        js_on_load=PICK_JS,
        elem_id="pack-cards",
    )
    choice = gr.Dropdown(_pack_choices(studio), value=first, label="Pack", elem_id="pack-choice")
    summary = gr.Markdown(elem_id="pack-summary")

    gr.Markdown("### Run this pack on a tune")
    tunes = _tune_choices(studio)
    with gr.Row(equal_height=False):
        run_tune = gr.Dropdown(
            tunes, value=tunes[0][1] if tunes else None, label="Tune", scale=3, elem_id="pack-run-tune"
        )
        run = gr.Button("Run pack", variant="primary", scale=1, min_width=120, elem_id="pack-run")
    run_note = gr.Markdown(elem_id="pack-run-note")
    picked = gr.State(False)  # whether the person chose the pack: then a tune change keeps it
    with gr.Accordion("…or train a new tune from this pack", open=False, elem_id="pack-train"):
        train_note = gr.Markdown(elem_id="pack-train-note")
        with gr.Row(equal_height=False):
            train_title = gr.Textbox(label="Tune title", scale=2, min_width=160, elem_id="pack-train-title")
            train_class = gr.Dropdown(list(CLASS_NAMES), value="woman", label="Class", scale=1, min_width=120)
            train_fast = gr.Checkbox(
                label="Mock run (branch fast): the demo model and a few steps", scale=2, elem_id="pack-train-fast"
            )
            train = gr.Button(
                "Train and run the pack", variant="primary", scale=1, min_width=160, elem_id="pack-train-go"
            )
    results = gr.HTML(
        board.render(studio, [], empty=RUN_HINT),
        css_template=board.board_css(),
        js_on_load=board.BOARD_JS,
        elem_id="pack-results",
    )
    timer = gr.Timer(1.0, active=False)

    with gr.Accordion("Edit pack", open=False, elem_id="pack-editor"):
        with gr.Row():
            title = gr.Textbox(label="Title", min_width=200)
            slug = gr.Textbox(label="Slug", placeholder="made from the title when empty", min_width=160)
            token = gr.Textbox(label="Token", value=DEFAULT_TOKEN, min_width=100)
        description = gr.Textbox(label="Description", lines=2)
        with gr.Row():
            classes = gr.CheckboxGroup(list(CLASS_NAMES), label="Classes", scale=3, elem_id="pack-classes")
            model_type = gr.Radio(["lora", "faceid"], value="lora", label="Tune type", min_width=160)
        with gr.Row():
            base = gr.Dropdown(_base_choices(studio), value=NEW, label="Base model", min_width=200)
            preset = gr.Dropdown([("none", NONE), *((p, p) for p in PRESETS)], value=NONE, label="Preset")
            public = gr.Checkbox(value=True, label="Public")
            unlisted = gr.Checkbox(value=False, label="Unlisted")
        with gr.Row():
            save = gr.Button("Save changes", variant="primary", elem_id="pack-save")
            blank = gr.Button("Clear the form", elem_id="pack-blank")
            create = gr.Button("Save as a new pack", elem_id="pack-create")
            delete = gr.Button("Delete pack", variant="stop", elem_id="pack-delete")
        gr.Markdown("#### Prompts")
        prompt_list = gr.HTML(css_template=board.board_css(), elem_id="pack-prompts")
        prompt_pick = gr.Dropdown([("New prompt", NEW)], value=NEW, label="Prompt to edit", elem_id="pack-prompt")
        with gr.Row():
            class_name = gr.Dropdown(list(CLASS_NAMES), value="woman", label="Class", allow_custom_value=True)
            num_images = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
        text = gr.Textbox(
            label="Template",
            lines=2,
            placeholder="portrait of {{token}} {{name}}, {{eye_color}}, studio light",
            elem_id="pack-prompt-text",
        )
        negative = gr.Textbox(label="Negative prompt")
        with gr.Row():
            steps = gr.Number(label="Steps", precision=0, placeholder="default", min_width=100)
            cfg_scale = gr.Number(label="CFG scale", placeholder="default", min_width=100)
            scheduler = gr.Dropdown([("default", NONE), *((s, s) for s in SCHEDULERS)], value=NONE, label="Scheduler")
            width = gr.Number(label="Width", precision=0, placeholder="default", min_width=100)
            height = gr.Number(label="Height", precision=0, placeholder="default", min_width=100)
        with gr.Row():
            aspect_ratio = gr.Dropdown(
                [("default", NONE), *((r, r) for r in ASPECT_RATIOS)],
                value=NONE,
                label="Aspect ratio",
                info="The base model's native size for this shape; Width/Height win.",
                elem_id="pack-prompt-aspect-ratio",
            )
            color_grading = gr.Dropdown(
                [("none", NONE), *((g, g) for g in COLOR_GRADINGS)],
                value=NONE,
                label="Color grading",
                info="A film look applied to the finished images.",
                elem_id="pack-prompt-color-grading",
            )
            film_grain = gr.Checkbox(label="Film grain", info="Seeded grain: the same seed gives the same grain.")
        with gr.Row():
            inpaint_faces = gr.Dropdown(
                [("automatic", NONE), ("on", "on"), ("off", "off")],
                value=NONE,
                label="Face detailing",
                info="Re-draws each face with the subject's tune; automatic: on where it helps.",
                elem_id="pack-prompt-inpaint-faces",
            )
            inpaint_faces_strength = gr.Number(
                label="Face strength",
                placeholder="0.4",
                info="How much of each face is re-drawn (0.01 to 1).",
                min_width=100,
            )
            hires_fix = gr.Checkbox(
                label="Hires fix", info="Upscales, then denoises again for detail.", elem_id="pack-prompt-hires-fix"
            )
            hires_scale = gr.Number(
                label="Hires scale", placeholder="2", info="Upscale factor (1.05 to 4).", min_width=100
            )
            hires_denoising_strength = gr.Number(
                label="Hires denoising",
                placeholder="0.5",
                info="How much the upscaled image changes (0.01 to 1).",
                min_width=100,
            )
        with gr.Row():
            save_prompt = gr.Button("Save prompt", variant="primary", elem_id="pack-prompt-save")
            remove_prompt = gr.Button("Remove prompt", variant="stop", elem_id="pack-prompt-remove")
        lint = gr.HTML(css_template=PACK_CSS, elem_id="pack-lint")

    with gr.Accordion("Import or export", open=False, elem_id="pack-files"):
        with gr.Row():
            upload = gr.File(label="Pack file (.json)", file_types=[".json"], type="filepath", elem_id="pack-upload")
            exported = gr.File(label="Exported pack", interactive=False, elem_id="pack-exported")
        with gr.Row():
            import_button = gr.Button("Import pack", elem_id="pack-import")
            export_button = gr.Button("Export this pack", elem_id="pack-export")

    pack_fields = [title, slug, token, description, classes, model_type, base, preset, public, unlisted]
    prompt_fields = [class_name, num_images, text, negative, steps, cfg_scale, scheduler, width, height]
    prompt_fields += [aspect_ratio, color_grading, film_grain]
    prompt_fields += [inpaint_faces, inpaint_faces_strength, hires_fix, hires_scale, hires_denoising_strength]

    def pack_request(values: dict) -> PackRequest:
        """The one place the pack form becomes a request."""
        return PackRequest(
            title=values[title] or "",
            slug=(values[slug] or "").strip() or None,
            description=(values[description] or "").strip(),
            classes=tuple(values[classes] or ()),
            model_type=values[model_type],
            base_tune_id=values[base] or None,
            preset=values[preset] or None,
            token=values[token] or "",
            public=bool(values[public]),
            unlisted=bool(values[unlisted]),
        )

    def prompt_request(values: dict) -> PackPromptRequest:
        """The one place the prompt form becomes a request."""
        return PackPromptRequest(
            class_name=values[class_name] or "",
            text=values[text] or "",
            negative_prompt=values[negative] or "",
            num_images=int(values[num_images]),
            steps=int(values[steps]) if values[steps] else None,
            cfg_scale=float(values[cfg_scale]) if values[cfg_scale] else None,
            scheduler=values[scheduler] or None,
            w=int(values[width]) if values[width] else None,
            h=int(values[height]) if values[height] else None,
            aspect_ratio=values[aspect_ratio] or None,
            color_grading=values[color_grading] or None,
            film_grain=bool(values[film_grain]),
            inpaint_faces={"on": True, "off": False}.get(values[inpaint_faces]),
            inpaint_faces_strength=values[inpaint_faces_strength] or None,
            hires_fix=bool(values[hires_fix]),
            hires_scale=values[hires_scale] or None,
            hires_denoising_strength=values[hires_denoising_strength] or None,
        )

    def pack_form(pack: dict[str, Any] | None) -> dict:
        """The pack form filled from `pack`; a blank form for a new pack when it is None."""
        if pack is None:
            blank = {title: "", slug: "", token: DEFAULT_TOKEN, description: "", classes: [], model_type: "lora"}
            return {**blank, base: NEW, preset: NONE, public: True, unlisted: False}
        return {
            title: pack["title"],
            slug: pack["slug"],
            token: pack["token"],
            description: pack.get("description") or "",
            classes: [c for c in pack["classes"] if c in CLASS_NAMES],
            model_type: pack["model_type"],
            base: pack["base_tune_id"] or NEW,
            preset: pack["preset"] or NONE,
            public: pack["public"],
            unlisted: pack["unlisted"],
        }

    def prompt_form(pack: dict[str, Any] | None, chosen: dict[str, Any] | None) -> dict:
        """The prompt form filled from the pack prompt `chosen`; a new prompt of the pack's
        first class when it is None."""
        if chosen is None:
            default_class = (pack or {}).get("classes", ["woman"])[:1] or ["woman"]
            blank = {class_name: default_class[0], num_images: 1, text: "", negative: ""}
            looks = {aspect_ratio: NONE, color_grading: NONE, film_grain: False, inpaint_faces: NONE}
            looks |= {inpaint_faces_strength: None, hires_fix: False, hires_scale: None, hires_denoising_strength: None}
            return {**blank, steps: None, cfg_scale: None, scheduler: NONE, width: None, height: None, **looks}
        params = chosen["params"] or {}
        return {
            class_name: chosen["class_name"],
            num_images: chosen["num_images"],
            text: chosen["text"],
            negative: chosen["negative_prompt"] or "",
            steps: params.get("steps"),
            cfg_scale: params.get("cfg_scale"),
            scheduler: params.get("scheduler") or NONE,
            width: params.get("w"),
            height: params.get("h"),
            aspect_ratio: params.get("aspect_ratio") or NONE,
            color_grading: params.get("color_grading") or NONE,
            film_grain: bool(params.get("film_grain")),
            inpaint_faces: {True: "on", False: "off"}.get(params.get("inpaint_faces"), NONE),
            inpaint_faces_strength: params.get("inpaint_faces_strength"),
            hires_fix: bool(params.get("hires_fix")),
            hires_scale: params.get("hires_scale"),
            hires_denoising_strength: params.get("hires_denoising_strength"),
        }

    def prompt_editor(pack: dict[str, Any] | None, pack_prompt_id: int) -> dict:
        """The choice of the pack's prompts and the prompt form, both on `pack_prompt_id` (a new
        prompt when it is NEW or not one of the pack's)."""
        prompts, chosen = _pack_prompts(pack), _pack_prompt(pack, pack_prompt_id)
        choices = [
            ("New prompt", NEW),
            *((f"#{p['id']} {p['class_name']}: {p['text'][:60]}", p["id"]) for p in prompts),
        ]
        pick = gr.Dropdown(choices=choices, value=chosen["id"] if chosen else NEW)
        return {prompt_pick: pick, **prompt_form(pack, chosen)}

    def show_pack(pack_id: int | None) -> dict:
        """Everything that shows one pack: cards, the choice, summary, editor, prompts, lint.
        With no pack at all, the pack form is left as it is."""
        choices = _pack_choices(studio)
        if pack_id not in {value for _, value in choices}:
            pack_id = _first_pack(studio)
        if pack_id is None:
            empty = {cards: _cards(studio, None), choice: gr.Dropdown(choices=choices, value=None), summary: NO_PACK}
            return {**empty, prompt_list: "", **prompt_editor(None, NEW), lint: ""}
        pack = studio.get_pack(pack_id)
        return {
            cards: _cards(studio, pack_id),
            choice: gr.Dropdown(choices=choices, value=pack_id),
            summary: _summary(studio, pack),
            **pack_form(pack),
            prompt_list: _prompt_list(pack),
            **prompt_editor(pack, NEW),
            lint: _lint_html(studio, pack_id),
        }

    pack_view = [cards, choice, summary, *pack_fields, prompt_list, prompt_pick, *prompt_fields, lint]

    def after_prompt_edit(pack_id: int, pack_prompt_id: int) -> dict:
        """The cards, summary, prompt list, prompt editor (on `pack_prompt_id`) and lint results
        once one of the pack's prompts changed."""
        pack = studio.get_pack(pack_id)
        return {
            cards: _cards(studio, pack_id),
            summary: _summary(studio, pack),
            prompt_list: _prompt_list(pack),
            **prompt_editor(pack, pack_prompt_id),
            lint: _lint_html(studio, pack_id),
        }

    def show_results(pack_id: int | None, tune_id: int | None, browser_id: dict | None, request: gr.Request):
        """The prompts this pack made for the tune, newest first, polled while any runs."""
        if not pack_id or not tune_id:
            return {results: board.render(studio, [], empty=RUN_HINT), timer: gr.Timer(active=False)}
        items = studio.gallery(tune_id=tune_id, pack_id=pack_id, limit=RESULTS, user=board.viewer(browser_id, request))
        running = any(item["status"] not in FINISHED for item in items)
        empty = "This pack has not run on this tune yet: press Run pack."
        return {results: board.render(studio, items, empty=empty), timer: gr.Timer(active=running)}

    @guard
    def on_pick(event: gr.EventData):
        return board.event_int(event, "pack")

    @guard
    def on_run(pack_id: int | None, tune_id: int | None, browser_id: dict | None, request: gr.Request):
        if not pack_id or not tune_id:
            raise InvalidInput("Choose a pack and a tune to run it on.", field="tune_ids")
        made = studio.run_pack(pack_id, [tune_id])
        gr.Info(f"Queued {len(made)} prompt(s) from this pack.")
        return {cards: _cards(studio, pack_id), **show_results(pack_id, tune_id, browser_id, request)}

    def on_tune(pack_id: int | None, tune_id: int | None, chose: bool):
        """A new tune: unless the person chose the pack, one with prompts for its class."""
        return gr.skip() if chose else _pack_for_tune(studio, pack_id, tune_id)

    def on_tick(pack_id: int | None, tune_id: int | None, browser_id: dict | None, request: gr.Request):
        """While a run goes on: its results, and the cards, whose counts change as images finish."""
        return {cards: _cards(studio, pack_id), **show_results(pack_id, tune_id, browser_id, request)}

    @guard
    def on_train(
        pack_id: int | None,
        title: str,
        name: str,
        fast: bool,
        photo_set: dict | None,
        browser_id,
        request: gr.Request,
    ):
        """Astria's tune-from-pack: the Photos tab's set becomes a tune of the pack's type and
        base model; the pack's prompts for the class run once it is trained."""
        photo_set = photo_set or EMPTY_PHOTO_SET
        if not pack_id:
            raise InvalidInput("Choose a pack first.", field="pack")
        if not photo_set.get("ids"):
            raise InvalidInput("Upload photos of the subject in the Photos tab first.", field="photos")
        if not (title or "").strip():
            raise InvalidInput("Give the new tune a title.", field="title")
        tune = studio.tune_from_pack(
            pack_id,
            None,
            name,
            title.strip(),
            photo_set.get("characteristics") or {},
            photo_ids=list(photo_set["ids"]),
            branch="fast" if fast else None,
        )
        gr.Info(
            f"Tune '{tune['title']}' is {tune['status'].lower()}; the pack's {name} prompts run once it is trained."
        )
        tune_choice = gr.Dropdown(choices=_tune_choices(studio), value=tune["id"])
        return {run_tune: tune_choice, **on_tick(pack_id, tune["id"], browser_id, request)}

    @guard
    def on_heart(pack_id, tune_id, browser_id: dict | None, request: gr.Request, event: gr.EventData):
        board.heart(studio, ctx.like_user(browser_id, request), event)
        return on_tick(pack_id, tune_id, browser_id, request)

    @guard
    def on_save(values: dict):
        pack_id = values[choice]
        if not pack_id:
            raise InvalidInput("Choose the pack to change, or save the form as a new pack.", field="pack_id")
        request = pack_request(values)
        changes = {name: getattr(request, name) for name in CHANGEABLE}
        studio.update_pack(pack_id, **changes)
        gr.Info("Saved the pack.")
        return show_pack(pack_id)

    @guard
    def on_create(values: dict):
        pack = studio.create_pack(pack_request(values))
        gr.Info(f"Created the pack '{pack['title']}'. Add its prompts below.")
        return show_pack(pack["id"])

    @guard
    def on_delete(pack_id: int | None):
        if not pack_id:  # none chosen, or the person said no in the browser's confirm
            return gr.skip()
        studio.delete_pack(pack_id)
        return show_pack(None)

    @guard
    def on_prompt_pick(pack_id: int | None, pack_prompt_id: int | None):
        pack = studio.get_pack(pack_id) if pack_id else None
        return prompt_form(pack, _pack_prompt(pack, pack_prompt_id))

    @guard
    def on_save_prompt(values: dict):
        pack_id, pack_prompt_id = values[choice], values[prompt_pick]
        if not pack_id:
            raise InvalidInput("Choose or create a pack first.", field="pack_id")
        if pack_prompt_id:
            saved = studio.edit_pack_prompt(pack_prompt_id, prompt_request(values))
        else:
            saved = studio.add_pack_prompt(pack_id, prompt_request(values))
        return after_prompt_edit(pack_id, saved["id"])

    @guard
    def on_remove_prompt(pack_id: int | None, pack_prompt_id: int | None):
        if not pack_id or not pack_prompt_id:
            raise InvalidInput("Choose the prompt to remove.", field="pack_prompt_id")
        studio.remove_pack_prompt(pack_prompt_id)
        return after_prompt_edit(pack_id, NEW)

    @guard
    def on_import(path: str | None):
        if not path:
            raise InvalidInput("Choose a pack file (.json) to import.", field="file")
        pack = studio.import_pack(Path(path).read_bytes())
        forget_uploads(path)
        gr.Info(f"Imported the pack '{pack['title']}'.")
        return show_pack(pack["id"])

    @guard
    def on_export(pack_id: int | None) -> str:
        if not pack_id:
            raise InvalidInput("Choose the pack to export.", field="pack_id")
        document = studio.export_pack(pack_id)
        # A fresh folder per export, so the download is named after the pack's slug.
        path = Path(tempfile.mkdtemp(prefix="pack-export-")) / f"{studio.get_pack(pack_id)['slug']}.json"
        path.write_text(document, encoding="utf-8")
        return str(path)

    def on_open(pack_id: int | None, tune_id: int | None, browser_id: dict | None, chose: bool, request: gr.Request):
        tunes = _tune_choices(studio)
        known = [value for _, value in tunes]
        tune_id = tune_id if tune_id in known else (known[0] if known else None)
        if not chose:
            pack_id = _pack_for_tune(studio, pack_id, tune_id)
        return {
            **show_pack(pack_id),
            run_tune: gr.Dropdown(choices=tunes, value=tune_id),
            **show_results(pack_id, tune_id, browser_id, request),
        }

    def on_photo_set(photo_set: dict | None) -> dict:
        """What a tune from this pack would be trained on, and the class the photos were named."""
        photo_set = photo_set or EMPTY_PHOTO_SET
        count = len(photo_set.get("ids") or [])
        note = (
            f"Trains on the {count} photo(s) of the Photos tab with this pack's tune type, base model and preset."
            if count
            else "Upload photos of the subject in the Photos tab first; they are what the new tune learns."
        )
        return {train_note: note, train_class: photo_set.get("name") or "woman"}

    edited = [cards, summary, prompt_list, prompt_pick, *prompt_fields, lint]
    shown = [choice, run_tune, ctx.browser_id]
    cards.pick(on_pick, None, choice, api_visibility="private").then(
        lambda: True, None, picked, api_visibility="private"
    )
    choice.input(lambda: True, None, picked, api_visibility="private")
    choice.change(guard(show_pack), choice, pack_view, api_visibility="private", show_progress="hidden")
    choice.change(guard(show_results), shown, [results, timer], api_visibility="private", show_progress="hidden")
    run_tune.input(on_tune, [choice, run_tune, picked], choice, api_visibility="private").then(
        guard(show_results), shown, [results, timer], api_visibility="private"
    )
    # The summary changes with the pack's prompts, so a newly written prompt updates the note.
    gr.on(
        [choice.change, run_tune.change, summary.change],
        lambda pack_id, tune_id: _run_note(studio, pack_id, tune_id),
        [choice, run_tune],
        run_note,
        api_visibility="private",
        show_progress="hidden",
    )
    # Progress and error marks go on one output each (the results, the summary, the linter's
    # findings): Gradio's red "Error" badge would otherwise cover the whole editor.
    # Programs run packs through the REST API (POST /p/:id/tunes with tune_ids).
    ran = [cards, results, timer]
    run.click(on_run, shown, ran, api_visibility="private", show_progress_on=results)
    results.heart(on_heart, shown, ran, api_visibility="private", show_progress_on=results)
    timer.tick(guard(on_tick), shown, ran, api_visibility="private", show_progress="hidden")
    save.click(on_save, {choice, *pack_fields}, pack_view, api_visibility="private", show_progress_on=summary)
    create.click(on_create, set(pack_fields), pack_view, api_visibility="private", show_progress_on=summary)
    delete.click(on_delete, choice, pack_view, api_visibility="private", js=CONFIRM_DELETE, show_progress_on=summary)
    blank.click(lambda: pack_form(None), None, pack_fields, api_visibility="private")
    prompt_pick.input(
        on_prompt_pick, [choice, prompt_pick], prompt_fields, api_visibility="private", show_progress_on=lint
    )
    save_prompt.click(
        on_save_prompt,
        {choice, prompt_pick, *prompt_fields},
        edited,
        api_visibility="private",
        show_progress_on=lint,
    )
    remove_prompt.click(
        on_remove_prompt, [choice, prompt_pick], edited, api_visibility="private", show_progress_on=lint
    )
    import_button.click(on_import, upload, pack_view, api_visibility="private", show_progress_on=summary)
    export_button.click(on_export, choice, exported, api_visibility="private")
    train.click(
        on_train,
        [choice, train_title, train_class, train_fast, ctx.photo_set, ctx.browser_id],
        [run_tune, *ran],
        api_visibility="private",
        show_progress_on=results,
    )
    ctx.photo_set.change(on_photo_set, ctx.photo_set, [train_note, train_class], api_visibility="private")
    ctx.blocks.load(on_photo_set, ctx.photo_set, [train_note, train_class], api_visibility="private")
    on_show(ctx, on_open, [*shown, picked], [*pack_view, run_tune, results, timer])


CHANGEABLE = ("title", "slug", "description", "classes", "model_type", "base_tune_id", "preset", "token")
CHANGEABLE += ("public", "unlisted")
RUN_HINT = "Choose a tune: this pack's prompts for its class run on it, and their images show here."
NO_PACK = "No packs yet: fill in the editor below and save it as a new pack, or import a pack file."


def _packs_with_prompts(studio: Studio, class_name: str) -> list[dict[str, Any]]:
    """The packs with prompts for `class_name`, best ranked first."""
    return [p for p in studio.list_packs() if studio.get_pack(p["id"])["prompts_per_class"].get(class_name)]


def _tune_class(studio: Studio, tune_id: int | None) -> str | None:
    try:
        return studio.get_tune(int(tune_id))["name"] if tune_id else None
    except NotFound:  # deleted meanwhile
        return None


def _pack_for_tune(studio: Studio, pack_id: int | None, tune_id: int | None) -> int | None:
    """`pack_id` when it has prompts for the tune's class (or none does), else the best ranked
    pack that has: running a pack without them only fails."""
    class_name = _tune_class(studio, tune_id)
    if class_name is None:
        return pack_id
    fitting = [p["id"] for p in _packs_with_prompts(studio, class_name)]
    return pack_id if not fitting or pack_id in fitting else fitting[0]


def _run_note(studio: Studio, pack_id: int | None, tune_id: int | None) -> str:
    """Under the tune choice: why Run would fail, when the pack has no prompts for its class."""
    class_name = _tune_class(studio, tune_id)
    if not pack_id or class_name is None:
        return ""
    try:
        if studio.get_pack(pack_id)["prompts_per_class"].get(class_name):
            return ""
    except NotFound:
        return ""
    others = ", ".join(_plain(p["title"]) for p in _packs_with_prompts(studio, class_name))
    where = f"packs that do: {others}" if others else "no pack has any yet: add one in the editor below"
    return f"This pack has no '{_plain(class_name)}' prompts; {where}."


def _first_pack(studio: Studio) -> int | None:
    ranked = studio.list_packs()
    return ranked[0]["id"] if ranked else None


def _pack_choices(studio: Studio) -> list[tuple[str, int]]:
    return [(f"{p['title']} ({p['slug']})", p["id"]) for p in studio.list_packs()]


def _tune_choices(studio: Studio) -> list[tuple[str, int]]:
    return [
        (f"{t['title']} · {t['name']} (#{t['id']}, {t['status'].lower()})", t["id"])
        for t in studio.list_tunes(limit=200)
        if t["status"] not in (FAILED, CANCELED)
    ]


def _base_choices(studio: Studio) -> list[tuple[str, int]]:
    return [("Studio default", NEW), *((f"{m['title']} ({m['family_label']})", m["id"]) for m in studio.base_models())]


def _rate(pack: dict[str, Any]) -> str:
    if pack["rating"] == "new":
        return "new"
    rate = f"{round(100 * pack['like_rate'])}% liked"
    return f"{rate} · few ratings" if pack["rating"] else rate


def _cards(studio: Studio, chosen: int | None) -> str:
    """The packs as cards, best ranked first: cover (or initials), title, like rate, classes."""
    ranked = studio.list_packs()
    if not ranked:
        return f"<p class='empty'>{html.escape(NO_PACK)}</p>"
    cards = []
    for pack in ranked:
        cover = (
            f"<img src='{html.escape(board.file_url(studio, pack['cover_path']), quote=True)}' alt=''>"
            if pack["cover_path"]
            else f"<div class='mark' style='background: hsl({int(pack['id']) * 67 % 360} 60% 50% / 0.2)' "
            f"aria-hidden='true'>{html.escape(_initials(pack['title']))}</div>"
        )
        classes = ", ".join(pack["classes"]) or "no classes yet"
        cards.append(
            f"<div class='card pack-card{' chosen' if pack['id'] == chosen else ''}' data-pack='{int(pack['id'])}' "
            f"role='button' tabindex='0' title='Show {html.escape(pack['title'], quote=True)}'>{cover}"
            f"<div class='title'><b>{html.escape(pack['title'])}</b><span class='badge'>{_rate(pack)}</span></div>"
            f"<div class='detail'>{html.escape(classes)} · ♥ {pack['likes_count']} of {pack['images_shown']} "
            f"image(s) · {pack['runs']} run(s){_likeness(pack)}</div></div>"
        )
    return "<div class='cards packs'>" + "".join(cards) + "</div>"


def _likeness(row: dict[str, Any]) -> str:
    """' · likeness ⌀ 0.93 · 80% the subject' beside a like rate (studio/likeness.py), or ''
    before any of its images was scored."""
    if not row.get("likeness_scored"):
        return ""
    mean = f" · likeness ⌀ {row['likeness_mean']:.2f}" if row["likeness_mean"] is not None else " · no faces"
    return f"{mean} · {round(100 * row['likeness_rate'])}% the subject"


def _initials(title: str) -> str:
    return "".join(word[0] for word in title.split()[:2]).upper() or "?"


def _summary(studio: Studio, pack: dict[str, Any]) -> str:
    base = studio.base_model(pack["base_tune_id"])["title"] if pack["base_tune_id"] else "the studio's default"
    counts = {name: len(prompts) for name, prompts in pack["prompts_per_class"].items()}
    per_class = ", ".join(f"{name} ({count})" for name, count in counts.items()) or "none yet"
    return (
        f"### {_plain(pack['title'])}\n{_plain(pack.get('description') or '')}\n\n"
        f"**Prompts per class:** {per_class} · **Tune type:** {pack['model_type']} · **Token:** `{pack['token']}` "
        f"· **Base model:** {_plain(base)} · **Preset:** {pack['preset'] or 'none'}\n\n"
        f"**Ranking:** {_rate(pack)} (♥ {pack['likes_count']} of {pack['images_shown']} image(s) shown, "
        f"score {pack['score']:.3f}){_likeness(pack)}"
        + (f", blended with likeness {pack['blended_score']:.3f}" if pack["likeness_scored"] else "")
        + _consistency(pack.get("consistency") or [])
    )


def _consistency(runs: list[dict[str, Any]]) -> str:
    """The consistency of the pack's runs on your tunes (studio/likeness.py): per tune the
    spread of its images' likeness and the prompts below the tune's typical score (Markdown)."""
    if not runs:
        return ""
    lines = ["\n\n**Consistency of its runs** (how alike the person looks across the pack):"]
    for run in runs:
        if run["mean"] is None:
            figures = "no face in its images yet"
        else:
            figures = (
                f"likeness ⌀ {run['mean']:.3f}, spread ± {run['spread']:.3f} ({run['min']:.3f} to {run['max']:.3f}) "
                f"over {run['faces']} face(s); the tune's typical score {run['typical']:.3f}"
            )
        below = "; ".join(
            f"#{p['prompt_id']} {_plain(p['text'][:60])} ({'no face' if p['score'] is None else format(p['score'], '.3f')})"
            for p in run["below"]
        )
        lines.append(
            f"- **{_plain(run['tune_title'])}**: {figures}"
            + (f". Below typical: {below}" if below else ". None below typical.")
        )
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Text shown literally inside Markdown."""
    return html.escape(text, quote=False).replace("*", "\\*").replace("_", "\\_").replace("#", "\\#")


def _prompt_list(pack: dict[str, Any]) -> str:
    rows = []
    for name, prompts in pack["prompts_per_class"].items():
        items = "".join(
            f"<li><b>#{int(p['id'])}</b> {html.escape(p['text'])} <span class='detail'>· {int(p['num_images'])} "
            f"image(s){' · ' + html.escape(_params(p['params'])) if p['params'] else ''} · ♥ {p['likes_count']}"
            f"{_likeness(p)}</span></li>"
            for p in prompts
        )
        rows.append(f"<p><b>{html.escape(name)}</b></p><ol>{items}</ol>" if items else "")
    return "".join(rows) or "<p class='empty'>No prompts yet: write one below and save it.</p>"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in params.items())


def _pack_prompts(pack: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A pack's prompts, class by class."""
    return [p for per_class in (pack or {}).get("prompts_per_class", {}).values() for p in per_class]


def _pack_prompt(pack: dict[str, Any] | None, pack_prompt_id: int | None) -> dict[str, Any] | None:
    """The pack's prompt `pack_prompt_id`; None for NEW or a prompt not in the pack."""
    return next((p for p in _pack_prompts(pack) if p["id"] == pack_prompt_id), None)


def _lint_html(studio: Studio, pack_id: int) -> str:
    issues = studio.lint_pack(pack_id)
    if not issues:
        return "<p class='detail'>Linter: no problems found.</p>"
    items = "".join(
        f"<li class='{issue.level}'><b>{issue.level}</b>: {html.escape(issue.message)}</li>" for issue in issues
    )
    return f"<p class='detail'>Linter: {len(issues)} finding(s)</p><ul class='lint'>{items}</ul>"
