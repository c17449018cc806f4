"""Photos tab: drop many photos of one subject, see a badge on each (ok, warning, rejected; hover
for the reasons), the set's report card (near-duplicates, a possible different person, too few
photos, no variety) and the characteristics it found, which the person can correct before
training.

The set lives in the browser (`ctx.photo_set`, a BrowserState of photo ids, class, verdicts and
characteristics), so it survives a reload and the Tunes tab trains on it. Photos are private:
they appear as thumbnails rendered here, inlined as data URLs, never as file URLs.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from studio.captions import caption_from_inspection
from studio.core import Studio
from studio.errors import InvalidInput
from studio.packs import CLASS_NAMES
from studio.tune_requests import DEFAULT_TOKEN
from studio.ui.common import EMPTY_PHOTO_SET, card_css, chosen_id, data_url, guard, read_uploads

CHARACTERISTIC_HEADERS = ["attribute", "value", "confidence"]

# The set lives only in this browser: once cleared, its photos are gone from the tab.
CONFIRM_CLEAR = "(name) => window.confirm('Start a new set? The photos of this set leave the tab.') ? name : null"


def build(studio: Studio, ctx) -> None:
    gr.Markdown(
        "Upload 10 to 20 photos of one subject: different places, angles and light, the face sharp "
        "and uncovered. Each photo is checked; the report card judges the set. Then create a tune "
        "from it in the **Tunes** tab."
    )
    with gr.Row():
        name = gr.Dropdown(list(CLASS_NAMES), value="woman", label="Who is in the photos", scale=3)
        clear = gr.Button("Start a new set", scale=1, elem_id="clear-photos")
    upload = gr.File(
        label="Drop photos here (PNG, JPEG or WEBP)",
        file_count="multiple",
        file_types=["image"],
        height=150,
        elem_id="photo-upload",
    )
    summary = gr.Markdown(elem_id="photo-summary")
    cards = gr.HTML(css_template=card_css(), js_on_load=None, elem_id="photo-cards")
    gr.Markdown("### Report card")
    report = gr.HTML(css_template=card_css(), js_on_load=None, elem_id="report-card")
    characteristics = gr.Dataframe(
        headers=CHARACTERISTIC_HEADERS,
        datatype=["str", "str", "str"],
        interactive=True,
        row_count=(0, "dynamic"),
        column_count=(3, "fixed"),
        label="Characteristics (edit them if they are wrong; prompts use them as {{eye_color}} and so on)",
        elem_id="characteristics",
    )
    with gr.Row():
        # Custom values: the choices are this page's; an API client sends an id of its set.
        to_remove = gr.Dropdown([], label="Photo", scale=3, allow_custom_value=True, elem_id="photo-choice")
        remove = gr.Button("Remove from the set", scale=1, elem_id="remove-photo")

    shown = [ctx.photo_set, summary, cards, report, characteristics, to_remove]

    def render(photo_set: dict, rejected: list[dict]) -> dict:
        """What shows a photo set: the summary line, the cards (refused uploads last), the report
        card, the characteristics table and the choice of photos to remove."""
        rows = studio.get_photos(photo_set["ids"])
        verdicts = photo_set.get("verdicts") or {}
        choices = [(f"{n + 1}. {row['filename'] or 'photo'}", row["id"]) for n, row in enumerate(rows)]
        return {
            summary: _summary(rows, verdicts, rejected),
            cards: photo_cards(studio, rows, verdicts, rejected),
            report: _report_html(photo_set) if rows else "",
            characteristics: _table_rows(photo_set),
            to_remove: gr.Dropdown(choices=choices, value=None),
        }

    def inspected(ids: list[int], class_name: str, current: dict, rejected: list[dict]) -> dict:
        """The set `ids` inspected for `class_name`: the browser's new photo set and what shows it."""
        photo_set = _inspect(studio, ids, class_name, current)
        return {ctx.photo_set: photo_set, **render(photo_set, rejected)}

    @guard
    def on_upload(paths: list[str] | None, class_name: str, photo_set: dict | None = None):
        if not paths:
            raise InvalidInput("Choose one or more photos to upload.", field="images")
        rows, rejections = studio.add_photos(read_uploads(paths))
        current = photo_set or EMPTY_PHOTO_SET
        ids = list(dict.fromkeys([*current["ids"], *(row["id"] for row in rows)]))
        rejected = [{"filename": r.filename, "reason": r.reason} for r in rejections]
        return {**inspected(ids, class_name, current, rejected), upload: None}

    @guard
    def on_class(class_name: str, photo_set: dict | None):
        current = photo_set or EMPTY_PHOTO_SET
        return inspected(current["ids"], class_name, current, [])

    @guard
    def on_remove(photo_id, photo_set: dict | None):
        photo_id = chosen_id(photo_id, "photo_id", "Choose the photo to remove from the set.")
        current = photo_set or EMPTY_PHOTO_SET
        if photo_id not in current["ids"]:
            raise InvalidInput(f"Photo {photo_id} is not in the set.", field="photo_id")
        ids = [i for i in current["ids"] if i != photo_id]
        return inspected(ids, current["name"], current, [])

    def on_edit(table, photo_set: dict | None):
        """Keep the person's corrections: they win over what a later inspection finds."""
        current = photo_set or EMPTY_PHOTO_SET
        edited = _table_values(table)
        detected = current.get("detected") or {}
        corrections = {k: v for k, v in edited.items() if detected.get(k) != v}
        removed = [k for k in detected if k not in edited]
        return {**current, "characteristics": edited, "corrections": corrections, "removed": removed}

    def on_clear(class_name: str | None):
        if class_name is None:  # the person said no in the browser's confirm
            return gr.skip()
        return {ctx.photo_set: dict(EMPTY_PHOTO_SET), **render(EMPTY_PHOTO_SET, [])}

    def on_load(photo_set: dict | None):
        current = photo_set or EMPTY_PHOTO_SET
        return {name: current["name"], **render(current, [])}

    # Progress and error marks go on the summary line only: Gradio's red "Error" badge would
    # otherwise cover every output, the class box and the photo choice included.
    upload.upload(
        on_upload,
        [upload, name, ctx.photo_set],
        [*shown, upload],
        api_name="upload_photos",
        concurrency_limit=2,
        show_progress_on=summary,
    )
    name.input(on_class, [name, ctx.photo_set], shown, api_visibility="private", show_progress_on=summary)
    remove.click(on_remove, [to_remove, ctx.photo_set], shown, api_name="remove_photo", show_progress_on=summary)
    clear.click(on_clear, name, shown, api_name="clear_photos", js=CONFIRM_CLEAR)
    characteristics.input(on_edit, [characteristics, ctx.photo_set], ctx.photo_set, api_visibility="private")
    ctx.blocks.load(on_load, ctx.photo_set, [name, *shown[1:]], api_visibility="private")


def _inspect(studio: Studio, ids: list[int], class_name: str, current: dict) -> dict[str, Any]:
    """The photo set `ids` inspected for `class_name` (see EMPTY_PHOTO_SET): the verdicts,
    report and characteristics found, with the person's corrections in `current` kept."""
    result = studio.inspect_photo_set(ids, class_name)
    detected = dict(result["characteristics"])
    characteristics = {k: v for k, v in detected.items() if k not in (current.get("removed") or [])}
    characteristics.update(current.get("corrections") or {})
    photo_set = {
        **current,
        "ids": [photo["id"] for photo in result["photos"]],
        "name": class_name,
        "detected": detected,
        "confidence": result["confidence"],
        "characteristics": characteristics,
        "verdicts": {str(p["id"]): {"level": p["level"], "reasons": p["reasons"]} for p in result["photos"]},
        "report": {"warnings": result["report"]["warnings"], "usable": len(result["report"]["usable"])},
    }
    return photo_set


def _summary(rows: list[dict], verdicts: dict[str, Any], rejected: list[dict]) -> str:
    """The line over the cards: how many photos the set has, how many warned, how many refused."""
    if not (rows or rejected):
        return "No photos yet."
    warned = sum(1 for row in rows if (verdicts.get(str(row["id"])) or {}).get("level") == "warning")
    refused = f"; {len(rejected)} refused." if rejected else "."
    return f"**{_plural(len(rows), 'photo')} in the set**: {len(rows) - warned} ok, {warned} with warnings{refused}"


def _table_rows(photo_set: dict) -> list[list[str]]:
    """The characteristics table: attribute, value and the detector's confidence in it."""
    confidence = photo_set.get("confidence") or {}
    corrected = photo_set.get("corrections") or {}
    # The detector's confidence is about its own value: a corrected one is the person's.
    return [
        [key, str(value), f"{confidence[key]:.0%}" if key in confidence and key not in corrected else "edited"]
        for key, value in (photo_set.get("characteristics") or {}).items()
    ]


def photo_cards(
    studio: Studio, rows: list[dict], verdicts: dict[str, Any] | None = None, rejected: list[dict] | None = None
) -> str:
    """Cards for stored photos (a thumbnail, the file name, a badge whose tooltip lists the
    reasons) followed by cards for refused uploads. Without `verdicts`, each photo's own
    inspection (stored when it was uploaded) decides its badge. Each card also shows the
    photo's training caption: a tune photo's own (`caption`), else the one its inspection
    gives (studio/captions.py, with the default token; the Tunes tab edits a tune's)."""
    cards = []
    for number, row in enumerate(rows, start=1):
        verdict = (verdicts or {}).get(str(row["id"]))
        reasons = verdict["reasons"] if verdict else list((row.get("inspection") or {}).get("warnings") or [])
        level = verdict["level"] if verdict else ("warning" if reasons else "ok")
        thumbnail = data_url(studio.photo_thumbnail(row["id"], side=192))
        caption = row.get("caption")
        if caption is None and row.get("inspection"):
            inspection = row["inspection"]
            caption = caption_from_inspection(DEFAULT_TOKEN, inspection.get("name") or "person", inspection)
        cards.append(
            _card(
                f"<img src='{thumbnail}' alt=''>",
                f"{number}. {row['filename'] or 'photo'}",
                level,
                reasons,
                caption,
            )
        )
    for item in rejected or []:
        cards.append(_card("<div class='mark'>✕</div>", item["filename"], "rejected", [item["reason"]]))
    return "<div class='cards'>" + "".join(cards) + "</div>" if cards else ""


def _card(picture: str, title: str, level: str, reasons: list[str], caption: str | None = None) -> str:
    tooltip = html.escape("\n".join(reasons) or "No problems found.", quote=True)
    listed = "".join(f"<li>{html.escape(reason)}</li>" for reason in reasons)
    return (
        f"<div class='card photo' data-level='{level}' title='{tooltip}'>{picture}"
        f"<div class='title'><span>{html.escape(title)}</span><span class='badge {level}'>{level}</span></div>"
        + (f"<div class='detail'><ul>{listed}</ul></div>" if listed else "")
        + (f"<div class='detail caption' title='training caption'>“{html.escape(caption)}”</div>" if caption else "")
        + "</div>"
    )


def _report_html(photo_set: dict) -> str:
    report = photo_set.get("report") or {}
    warnings = report.get("warnings") or []
    usable = report.get("usable", 0)
    head = f"<p><b>{usable} of {len(photo_set['ids'])} photos are usable for training.</b></p>"
    if not warnings:
        return head + "<p>The set looks good: no duplicates, one person, enough variety.</p>"
    return head + "<ul class='report'>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>"


def _table_values(table) -> dict[str, str]:
    """{attribute: value} from the characteristics table (a pandas DataFrame or rows)."""
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    return {
        str(row[0]).strip(): str(row[1]).strip() for row in rows if row and str(row[0]).strip() and str(row[1]).strip()
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
