"""Tunes tab: make a LoRA or FaceID tune from the Photos tab's set, follow its training, and look
after each tune (its photos, the checkpoint sample strip, the active checkpoint, the LoRA
download, cancel and delete).

Training runs on the studio's persistent job queue, never in a handler: this tab only polls the
database with a gr.Timer while something trains, so progress survives a page reload. Before a
LoRA is created the form shows how much GPU memory its training needs on the chosen base
model's family (`Studio.training_memory`), updated as the settings change.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core import Studio
from studio.domain import CANCELED, FAILED, RUNNABLE_FAMILIES, RUNNING, SUCCESS, TRAINING
from studio.errors import InvalidInput, NotFound, StudioError
from studio.families import FAMILIES
from studio.likeness import describe
from studio.packs import CLASS_NAMES
from studio.tune_requests import LEARNING_RATES, LR_SCHEDULERS, PRESETS, TuneRequest
from studio.ui.common import COPY_JS, EMPTY_PHOTO_SET, card_css, chosen_id, guard, on_show
from studio.ui.photos import photo_cards

POLL_SECONDS = 1.5
MODEL_TYPES = [
    ("LoRA: trained on the photos (minutes on a GPU)", "lora"),
    ("FaceID: no training, ready at once", "faceid"),
]
PRESET_CHOICES = [("none", "")] + [(name, name) for name in PRESETS]


def build(studio: Studio, ctx) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### New tune")
            photo_note = gr.Markdown(_photo_note(EMPTY_PHOTO_SET), elem_id="tune-photo-note")
            form = _form(studio)
            memory = gr.Markdown("", elem_id="tune-memory")
            create = gr.Button("Create tune", variant="primary", elem_id="create-tune")
        with gr.Column(scale=3, min_width=320):
            gr.Markdown("### Your tunes")
            listing = gr.HTML(
                _listing(studio), css_template=card_css(), js_on_load=COPY_JS, elem_id="tune-list", padding=False
            )
    gr.Markdown("### Tune details")
    with gr.Row():
        # Custom values: API clients name tunes made after the page was built (ids are checked).
        chosen = gr.Dropdown(_choices(studio), label="Tune", scale=3, allow_custom_value=True, elem_id="tune-choice")
        cancel = gr.Button("Cancel training", scale=1, interactive=False, elem_id="cancel-tune")
        delete = gr.Button("Delete tune", variant="stop", scale=1, elem_id="delete-tune")
    summary = gr.Markdown(elem_id="tune-summary")
    with gr.Row():
        token = gr.Textbox(
            label="Token to paste into a prompt", buttons=["copy"], interactive=False, scale=2, elem_id="tune-token"
        )
        download = gr.DownloadButton("Download LoRA (.safetensors)", visible=False, scale=1, elem_id="download-lora")
    strip = gr.Gallery(
        label="Checkpoint samples (pick the step that looks best)",
        columns=8,
        height=200,
        object_fit="contain",
        allow_preview=True,
        visible=False,
        elem_id="samples",
    )
    with gr.Row(visible=False) as step_row:
        step = gr.Dropdown(
            label="Checkpoint step to use",
            choices=[],
            scale=3,
            allow_custom_value=True,
            elem_id="checkpoint-step",
        )
        use_step = gr.Button("Use this checkpoint", scale=1, elem_id="use-checkpoint")
        use_best = gr.Button("Use the best step", scale=1, elem_id="use-best-step")
    curve = gr.LinePlot(
        x="step", y="likeness", title="Likeness by step", visible=False, height=220, elem_id="likeness-curve"
    )
    with gr.Accordion("Captions of the training photos", open=False, visible=False, elem_id="captions") as captions:
        gr.Markdown(
            "What the LoRA reads beside each photo: the token and class, then what is not the person "
            "(glasses, hat, framing, background), so it learns the person and not the clothes. Each "
            "caption must keep the token; the next training reads them.",
            elem_classes="hint",
        )
        caption_list = gr.Markdown(elem_id="caption-list")
        with gr.Row():
            caption_photo = gr.Dropdown(
                label="Photo", choices=[], scale=1, allow_custom_value=True, elem_id="caption-photo"
            )
            caption_text = gr.Textbox(label="Caption", scale=3, elem_id="caption-text")
            save_caption = gr.Button("Save caption", scale=1, elem_id="save-caption")
    photos = gr.HTML(css_template=card_css(), js_on_load=None, elem_id="tune-photos")
    timer = gr.Timer(POLL_SECONDS, active=False)
    seen = gr.State(None)  # what the details last showed, so a poll redraws them only on a change

    details = [
        summary,
        token,
        download,
        strip,
        step_row,
        step,
        photos,
        seen,
        cancel,
        curve,
        captions,
        caption_list,
        caption_photo,
        caption_text,
    ]

    def cleared() -> dict:
        """The details when no tune is chosen."""
        return {
            summary: "",
            token: "",
            download: gr.DownloadButton(visible=False),
            strip: gr.Gallery(value=[], visible=False),
            step_row: gr.Row(visible=False),
            step: gr.Dropdown(choices=[], value=None),
            photos: "",
            seen: None,
            cancel: gr.Button(interactive=False),
            curve: gr.LinePlot(value=None, visible=False),
            captions: gr.Accordion(visible=False),
            caption_list: "",
            caption_photo: gr.Dropdown(choices=[], value=None),
            caption_text: "",
        }

    def draw(tune: dict, signature: tuple, *, with_photos: bool) -> dict:
        """The details of one tune; its photos (thumbnails to render) only `with_photos`, else
        they stay as they are."""
        samples = _samples(studio, tune)
        steps = [c["step"] for c in tune["checkpoints"]]
        update = {
            summary: _summary(tune),
            token: studio.tune_token(tune["id"]) if tune["status"] == SUCCESS else "",
            download: _download(studio, tune),
            strip: gr.Gallery(value=samples, visible=bool(samples)),
            step_row: gr.Row(visible=len(steps) > 1),
            step: gr.Dropdown(choices=steps, value=tune["active_step"]),
            seen: signature,
            cancel: gr.Button(interactive=tune["status"] in RUNNING),  # a finished tune has nothing to cancel
            curve: _curve(tune),
        }
        if with_photos:
            update[photos] = _photos_html(studio, tune)
            update.update(caption_fields(tune))
        return update

    def caption_fields(tune: dict, photo_id: int | None = None) -> dict:
        """The captions editor of a LoRA tune (hidden for others), on `photo_id` or its first photo."""
        rows = tune.get("captions") or []
        if tune["model_type"] != "lora" or not rows:
            return {captions: gr.Accordion(visible=False), caption_list: "", caption_photo: gr.Dropdown(choices=[])}
        choices = [(f"photo {r['photo_id']}", r["photo_id"]) for r in rows]
        current = next((r for r in rows if r["photo_id"] == photo_id), rows[0])
        return {
            captions: gr.Accordion(visible=True),
            caption_list: _caption_list(rows),
            caption_photo: gr.Dropdown(choices=choices, value=current["photo_id"]),
            caption_text: current["caption"] or "",
        }

    def show(tune_id, last=None) -> dict:
        """The details of `tune_id`; none (an empty dict) when they did not change since `last`."""
        if tune_id is None:
            return cleared()
        try:
            tune = studio.get_tune(int(tune_id))
        except NotFound:  # deleted meanwhile (another page, the API)
            return cleared()
        signature = (
            tune["id"], tune["status"], round(tune["progress"] or 0, 2), tune["active_step"], tune["use_best_step"]
        )  # fmt: skip
        if signature == last:
            return {}
        return draw(tune, signature, with_photos=last is None or last[0] != tune["id"])

    def poll(tune_id, last):
        running = any(t["status"] in RUNNING for t in studio.list_tunes(limit=100))
        return {listing: _listing(studio), **show(tune_id, last), timer: gr.Timer(active=running)}

    @guard
    def on_create(values: dict):
        photo_set = values[ctx.photo_set] or EMPTY_PHOTO_SET
        if not photo_set.get("ids"):
            raise InvalidInput("Upload photos in the Photos tab first: the tune is made from them.", field="images")
        fields = {name: values[component] for name, component in form.items()}
        request = _tune_request(fields, photo_set.get("characteristics") or {})
        tune = studio.create_tune(request, photo_ids=list(photo_set["ids"]))
        gr.Info(f"Tune {tune['id']} '{html.escape(tune['title'])}' is {tune['status']}.")
        return {**poll(tune["id"], None), chosen: gr.Dropdown(choices=_choices(studio), value=tune["id"])}

    @guard
    def on_cancel(tune_id):
        studio.cancel_tune(_required(tune_id))
        return poll(tune_id, None)

    @guard
    def on_delete(tune_id):
        studio.delete_tune(_required(tune_id), cancel=True)
        return {listing: _listing(studio), chosen: gr.Dropdown(choices=_choices(studio), value=None), **cleared()}

    @guard
    def on_use_step(tune_id, chosen_step):
        chosen_step = chosen_id(chosen_step, "step", "Choose the checkpoint step to use.")
        studio.set_active_checkpoint(_required(tune_id), chosen_step)
        gr.Info(f"Tune {int(tune_id)} now uses the checkpoint of step {chosen_step}.")
        return show(tune_id)

    @guard
    def on_use_best(tune_id):
        tune = studio.use_best_step(_required(tune_id))
        gr.Info(f"Tune {int(tune_id)}: {tune['best_step_note'] or 'prompts will use the best step once it is scored.'}")
        return show(tune_id)

    @guard
    def on_caption_photo(tune_id, photo_id):
        if tune_id is None or photo_id is None:
            return {}
        return caption_fields(studio.get_tune(int(tune_id)), int(photo_id))

    @guard
    def on_save_caption(tune_id, photo_id, text):
        if photo_id is None:
            raise InvalidInput("Choose the photo whose caption to change.", field="captions")
        studio.set_captions(_required(tune_id), {int(photo_id): (text or "").strip()})
        gr.Info(f"Caption of photo {int(photo_id)} saved.")
        return caption_fields(studio.get_tune(int(tune_id)), int(photo_id))

    def on_estimate(values: dict):
        return _memory_estimate(studio, {name: values[component] for name, component in form.items()})

    def on_photo_set(photo_set):
        return {photo_note: _photo_note(photo_set), form["name"]: (photo_set or EMPTY_PHOTO_SET).get("name") or "woman"}

    def on_open(tune_id):
        """On load and each time the tab is shown: tunes made elsewhere (the Packs tab, the
        API) appear, and the chosen tune's details are drawn afresh."""
        choices = _choices(studio)
        tune_id = tune_id if tune_id in {value for _, value in choices} else None
        return {chosen: gr.Dropdown(choices=choices, value=tune_id), **poll(tune_id, None)}

    polled = [listing, *details, timer]
    # Progress and error marks go on one output each: Gradio's red "Error" badge would otherwise
    # cover every output of a failed action.
    create.click(
        on_create,
        {ctx.photo_set, *form.values()},
        [*polled, chosen],
        api_name="create_tune",
        concurrency_limit=1,
        show_progress_on=listing,
    )
    chosen.select(lambda tune_id: show(tune_id), chosen, details, api_visibility="private")
    cancel.click(on_cancel, chosen, polled, api_name="cancel_tune", show_progress_on=summary)
    delete.click(on_delete, chosen, [listing, chosen, *details], api_name="delete_tune", show_progress_on=summary)
    use_step.click(on_use_step, [chosen, step], details, api_name="set_active_checkpoint", show_progress_on=summary)
    use_best.click(on_use_best, chosen, details, api_name="use_best_step", show_progress_on=summary)
    timer.tick(poll, [chosen, seen], polled, api_visibility="private")
    editor = [captions, caption_list, caption_photo, caption_text]
    caption_photo.select(on_caption_photo, [chosen, caption_photo], editor, api_visibility="private")
    save_caption.click(
        on_save_caption,
        [chosen, caption_photo, caption_text],
        editor,
        api_name="set_captions",
        show_progress_on=caption_list,
    )
    ctx.photo_set.change(on_photo_set, ctx.photo_set, [photo_note, form["name"]], api_visibility="private")
    ctx.blocks.load(on_photo_set, ctx.photo_set, [photo_note, form["name"]], api_visibility="private")
    on_show(ctx, on_open, chosen, [chosen, *polled])
    # The estimate follows the fields it depends on, and is drawn afresh when the tab is shown.
    estimated = ("model_type", "base_tune_id", "preset", "branch", "rank", "resolution", "train_text_encoder")
    for name in estimated:
        form[name].change(on_estimate, set(form.values()), memory, api_visibility="private", show_progress="hidden")
    on_show(ctx, on_estimate, set(form.values()), memory)


def _form(studio: Studio) -> dict[str, Any]:
    """The request's fields by TuneRequest name; advanced training settings folded away."""
    models = [m for m in studio.base_models() if m["family"] in RUNNABLE_FAMILIES]
    fields: dict[str, Any] = {
        "model_type": gr.Radio(MODEL_TYPES, value="lora", label="Kind", elem_id="tune-kind"),
        "title": gr.Textbox(label="Title", placeholder="unique, e.g. Jane 2026-05", elem_id="tune-title"),
    }
    with gr.Row():
        fields["name"] = gr.Dropdown(list(CLASS_NAMES), value="woman", label="Class")
        fields["token"] = gr.Textbox(value="ohwx", label="Token", max_lines=1)
    with gr.Row():
        fields["base_tune_id"] = gr.Dropdown(
            [(_model_label(m), m["id"]) for m in models],
            value=studio.default_base_model()["id"],
            label="Base model",
            elem_id="tune-base",
        )
        fields["preset"] = gr.Dropdown(PRESET_CHOICES, value="", label="Preset", elem_id="tune-preset")
    fields["branch"] = gr.Checkbox(
        label="Mock run (branch fast): the demo model and a few steps, to try the flow", elem_id="tune-fast"
    )
    with gr.Accordion("Advanced training settings", open=False):
        gr.Markdown("Empty fields come from the preset, then from the studio's defaults.")
        with gr.Row():
            fields["max_train_steps"] = gr.Number(label="Steps (empty: per photo × photos)", precision=0)
            fields["steps_per_image"] = gr.Number(label="Steps per photo", precision=0)
            fields["checkpointing_steps"] = gr.Number(label="Checkpoint every (steps)", precision=0)
        with gr.Row():
            fields["learning_rate"] = gr.Dropdown(
                [("preset", "")] + [(str(v), str(v)) for v in LEARNING_RATES], value="", label="Learning rate"
            )
            fields["lr_scheduler"] = gr.Dropdown(
                [("preset", "")] + [(v, v) for v in LR_SCHEDULERS], value="", label="LR scheduler"
            )
            fields["rank"] = gr.Number(label="LoRA rank", precision=0)
        with gr.Row():
            fields["resolution"] = gr.Number(label="Resolution (px)", precision=0)
            fields["seed"] = gr.Number(label="Seed", precision=0)
            fields["face_crop_ratio"] = gr.Number(label="Face crop ratio (1 to 4)")
        with gr.Row():
            fields["face_crop"] = gr.Dropdown(
                [("preset", ""), ("yes", "yes"), ("no", "no")], value="", label="Crop to the face"
            )
            fields["train_text_encoder"] = gr.Checkbox(label="Train the text encoder too")
            fields["face_restore"] = gr.Checkbox(label="Restore faces in the photos first")
        fields["instance_prompt"] = gr.Textbox(label="Instance prompt", placeholder="a close photo of {token} {name}")
        # The face-focused loss (studio/face_loss.py) and caption dropout; empty: by class (the
        # face on for people). Made last and with defaults, so scripts calling create_tune by
        # position keep working.
        with gr.Row():
            fields["face_loss_weight"] = gr.Textbox("", label="Face loss weight (empty: 2 for people, else 1)")
            fields["background_loss_weight"] = gr.Textbox("", label="Background loss weight (empty: 0.5 / 1)")
            fields["caption_dropout"] = gr.Textbox("", label="Caption dropout, 0 to 1 (empty: 0.1)")
    return fields


def _tune_request(values: dict[str, Any], characteristics: dict[str, str]) -> TuneRequest:
    """The one place where the form becomes a TuneRequest: empty fields are None (the preset
    decides), numbers become ints, the mock-run box becomes branch 'fast', and the photo set's
    (corrected) characteristics come along for prompt templates."""
    ints = ("max_train_steps", "steps_per_image", "checkpointing_steps", "rank", "resolution", "seed")
    learning_rate = values["learning_rate"]
    return TuneRequest(
        title=(values["title"] or "").strip(),
        name=(values["name"] or "").strip(),
        token=(values["token"] or "").strip(),
        model_type=values["model_type"],
        base_tune_id=int(values["base_tune_id"]) if values["base_tune_id"] is not None else None,
        preset=values["preset"] or None,
        branch="fast" if values["branch"] else None,
        learning_rate=float(learning_rate) if learning_rate else None,
        lr_scheduler=values["lr_scheduler"] or None,
        face_crop={"yes": True, "no": False}.get(values["face_crop"]),
        face_crop_ratio=values["face_crop_ratio"],
        train_text_encoder=values["train_text_encoder"] or None,
        face_restore=values["face_restore"] or None,
        instance_prompt=(values["instance_prompt"] or "").strip() or None,
        **{name: _optional_float(values.get(name), name) for name in _FLOAT_FIELDS},
        characteristics=characteristics,
        **{name: int(values[name]) if values[name] is not None else None for name in ints},
    )


_FLOAT_FIELDS = ("face_loss_weight", "background_loss_weight", "caption_dropout")


def _optional_float(value: Any, name: str) -> float | None:
    """A number typed in a text field; empty is None (the preset or class decides)."""
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a number (got {text!r}).", field=name) from None


def _model_label(model: dict) -> str:
    note = "" if model["available"] else ", downloads on first use"
    return f"{model['title']} ({model['family_label']}{note})"


def _memory_estimate(studio: Studio, values: dict[str, Any]) -> str:
    """The GPU memory a LoRA training of the form's settings needs (Markdown); what is wrong
    with the settings instead, inline, since nobody pressed anything yet."""
    if values["model_type"] != "lora":
        return "FaceID tunes are not trained: no GPU memory is needed beyond generation's."
    try:
        estimate = studio.training_memory(_tune_request({**values, "title": values["title"] or "estimate"}, {}))
    except StudioError as error:
        return f"*Memory estimate: {error.message}*"
    parts = estimate.get("breakdown") or {}
    detail = ", ".join(
        f"{name.replace('_', ' ')} {gb:.1f} GB" for name, gb in parts.items() if isinstance(gb, int | float)
    )
    return (
        f"**GPU memory for this training: about {float(estimate['gb']):.1f} GB** on {estimate['family_label']} "
        f"at its real size" + (f" ({detail})" if detail else "") + ". The embedded demos are tiny and train on a CPU."
    )


def _required(tune_id) -> int:
    return chosen_id(tune_id, "tune_id", "Choose a tune first.")


def _photo_note(photo_set: dict | None) -> str:
    count = len((photo_set or {}).get("ids") or [])
    if not count:
        return "No photos yet: upload them in the **Photos** tab; the tune is made from that set."
    characteristics = (photo_set or {}).get("characteristics") or {}
    described = ", ".join(f"{k}: {v}" for k, v in characteristics.items())
    noun = "photo" if count == 1 else "photos"
    return f"Made from the **{count} {noun}** of the Photos tab" + (f" ({described})." if described else ".")


def _choices(studio: Studio) -> list[tuple[str, int]]:
    return [(f"#{t['id']} {t['title']} ({t['model_type']})", t["id"]) for t in studio.list_tunes(limit=100)]


def _listing(studio: Studio) -> str:
    tunes = studio.list_tunes(limit=100)
    if not tunes:
        return "<p class='empty'>No tunes yet: upload photos, then create one here.</p>"
    return "<div class='cards wide'>" + "".join(_tune_card(studio, tune) for tune in tunes) + "</div>"


def _tune_card(studio: Studio, tune: dict) -> str:
    status = tune["status"]
    percent = round(100 * (tune["progress"] or 0))
    progress = ""
    if status in RUNNING:
        left = _seconds_left(tune["eta"]) if status == TRAINING else None
        timing = f" · about {_duration(left)} left" if left is not None else ""
        progress = (
            f"<div class='bar' role='progressbar' aria-valuenow='{percent}' aria-valuemin='0' aria-valuemax='100'>"
            f"<div style='width:{percent}%'></div></div>"
            f"<div class='detail progress-text'>{percent}% · {html.escape(tune['message'] or 'waiting in the queue')}"
            f"{timing}</div>"
        )
    elif status in (FAILED, CANCELED) and tune["message"]:
        progress = f"<div class='detail'>{html.escape(tune['message'])}</div>"
    token = html.escape(studio.tune_token(tune["id"]), quote=True) if status == SUCCESS else ""
    token_line = (
        f"<div class='token'><code>{token}</code><button class='copy-token' data-token='{token}'>Copy</button></div>"
        if token
        else ""
    )
    return (
        f"<div class='card' data-id='{tune['id']}' data-status='{status}'>"
        f"<div class='title'><b>#{tune['id']} {html.escape(tune['title'])}</b>"
        f"<span class='badge {status}'>{status}</span></div>"
        f"<div class='detail'>{tune['model_type']} · {_family(tune)} · {html.escape(tune['name'] or '')} · token "
        f"{html.escape(tune['token'] or '')}</div>{progress}{token_line}</div>"
    )


def _summary(tune: dict) -> str:
    """A tune's kind, class, token and status, its message and warnings, and which checkpoint
    prompts use (Markdown)."""
    lines = [
        f"**#{tune['id']} {tune['title']}**: {tune['model_type']} tune of a {tune['name']} on {_family(tune)}, "
        f"token `{tune['token']}`, status **{tune['status']}**"
        + (f" ({round(100 * (tune['progress'] or 0))}%)" if tune["status"] in RUNNING else "")
    ]
    if tune["message"] and tune["status"] != SUCCESS:
        lines.append(f"Message: {tune['message']}")
    lines += [f"- {warning}" for warning in tune["warnings"]]
    curve = [p for p in tune.get("likeness_curve") or [] if p["score"] is not None]
    if curve:
        lines.append("Likeness by step: " + " · ".join(f"{p['step']} → {p['score']:.3f}" for p in curve))
    if tune.get("best_step_note"):
        lines.append(tune["best_step_note"])
    elif len(tune["checkpoints"]) > 1 and tune["active_step"] is not None:
        lines.append(f"Prompts use the checkpoint of step **{tune['active_step']}**.")
    return "\n\n".join(lines)


def _curve(tune: dict):
    """The likeness-by-step line of a tune's checkpoints (hidden until two were scored)."""
    import pandas as pd

    points = [p for p in tune.get("likeness_curve") or [] if p["score"] is not None]
    if len(points) < 2:
        return gr.LinePlot(value=None, visible=False)
    frame = pd.DataFrame({"step": [p["step"] for p in points], "likeness": [p["score"] for p in points]})
    return gr.LinePlot(value=frame, visible=True)


def _caption_list(rows: list[dict]) -> str:
    """Each photo's caption as a Markdown list."""
    return "\n".join(f"- photo {r['photo_id']}: {html.escape(r['caption'] or '(none yet)')}" for r in rows)


def _family(tune: dict) -> str:
    family = tune.get("family")
    return FAMILIES[family].label if family in FAMILIES else html.escape(family or "unknown family")


def _samples(studio: Studio, tune: dict) -> list[tuple[str, str]]:
    """The checkpoint sample strip: (image path, caption) per checkpoint that has a sample."""
    return [
        (str(studio.public_path(row["sample_path"])), _sample_caption(row, tune.get("best_step")))
        for row in studio.tune_checkpoints(tune["id"])
        if row["sample_path"]
    ]


def _photos_html(studio: Studio, tune: dict) -> str:
    """Cards for the photos a tune was made from, with the badges the set's inspection gave."""
    rows = studio.tune_photos(tune["id"])
    # The set's verdicts, as the Photos tab's report card gave them: a photo of a different
    # person (or a near duplicate) is fine on its own, so its own inspection says "ok".
    verdicts = {
        str(p["id"]): {"level": p["level"], "reasons": p["reasons"]}
        for p in studio.inspect_photo_set([row["id"] for row in rows], tune["name"])["photos"]
    }
    return "<p><b>The photos it was made from</b></p>" + photo_cards(studio, rows, verdicts)


def _sample_caption(checkpoint: dict, best: int | None) -> str:
    """A checkpoint sample's caption: step, loss, its likeness badge (as text) and the best mark."""
    parts = [f"step {checkpoint['step']}", f"loss {checkpoint['loss']:.3f}", describe(checkpoint["likeness"])]
    if checkpoint["step"] == best:
        parts.append("★ best likeness")
    return " · ".join(part for part in parts if part)


def _download(studio: Studio, tune: dict):
    """The download button with a copy of the LoRA outside STUDIO_HOME (Gradio serves no file
    from the studio's private areas), named after the tune; hidden when there is none."""
    if tune["model_type"] != "lora" or tune["status"] != SUCCESS:
        return gr.DownloadButton(visible=False)
    source = studio.lora_file(tune["id"])
    folder = Path(tempfile.gettempdir()) / "avatar-studio-downloads" / source.stem
    target = folder / f"{_slug(tune['title'])}-{tune['id']}.safetensors"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return gr.DownloadButton(value=str(target), visible=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40] or "lora"


def _seconds_left(eta: str | None) -> float | None:
    if not eta:
        return None
    moment = datetime.fromisoformat(eta.replace("Z", "+00:00"))
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
