"""Avatars & LoRAs tab: upload LoRA `.safetensors` files with their trigger words, save face,
style and pose avatars from images, and show for each the exact token to paste into a prompt
(`<be-style:cartoon1:0.5>`) with a copy button.

The studio checks every upload (safetensors header, size limit, family, image format, a face in
a face avatar); this tab only gathers the fields and shows what came back.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from studio.core import Studio
from studio.domain import ADAPTER_KINDS, RUNNABLE_FAMILIES
from studio.errors import InvalidInput
from studio.ui.common import COPY_JS, card_css, data_url, forget_uploads, guard

AUTO = "auto"  # the family choice meaning "read it from the file"
IMAGE_KINDS = [kind for kind in ADAPTER_KINDS if kind != "lora"]  # avatars saved from an image
KIND_HELP = {
    "face": "a face to keep (IP-Adapter-FaceID, like a FaceID tune)",
    "style": "a look to copy (IP-Adapter)",
    "pose": "a body pose to follow (ControlNet)",
    "lora": "an uploaded LoRA",
}


def build(studio: Studio, ctx) -> None:
    gr.Markdown(
        "Save the pieces prompts can use. Each shows the token to paste into a prompt; change the "
        "number at the end to use it stronger or weaker."
    )
    with gr.Row(equal_height=False):
        with gr.Column(min_width=300):
            gr.Markdown("### Upload a LoRA")
            lora_file = gr.File(
                label="LoRA file (.safetensors)", file_types=[".safetensors"], height=150, elem_id="lora-file"
            )
            lora_name = gr.Textbox(label="LoRA name", placeholder="one word, e.g. toy", elem_id="lora-name")
            trigger_words = gr.Textbox(
                label="Trigger words", placeholder="comma-separated, e.g. toy style", elem_id="lora-triggers"
            )
            with gr.Row():
                lora_weight = gr.Slider(-2, 2, value=1, step=0.05, label="Default weight", min_width=160)
                family = gr.Dropdown([AUTO, *RUNNABLE_FAMILIES], value=AUTO, label="Family", min_width=120)
            upload = gr.Button("Upload LoRA", variant="primary", elem_id="upload-lora")
        with gr.Column(min_width=300):
            gr.Markdown("### Save a face, style or pose avatar")
            image = gr.Image(
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
                label="Image",
                height=260,
                elem_id="avatar-image",
            )
            kind = gr.Radio(IMAGE_KINDS, value="style", label="Kind", elem_id="avatar-kind")
            with gr.Row():
                avatar_name = gr.Textbox(
                    label="Avatar name", placeholder="one word, e.g. cartoon1", elem_id="avatar-name"
                )
                avatar_weight = gr.Slider(0, 2, value=0.5, step=0.05, label="Default weight", min_width=160)
            save = gr.Button("Save avatar", variant="primary", elem_id="save-avatar")

    gr.Markdown("### Your avatars and LoRAs")
    listing = gr.HTML(_listing(studio), css_template=card_css(), js_on_load=COPY_JS, elem_id="adapter-list")
    with gr.Row():
        # Custom values (`kind:name`): API clients name adapters saved after the page was built.
        chosen = gr.Dropdown(
            _choices(studio), label="Avatar or LoRA", scale=3, allow_custom_value=True, elem_id="adapter-choice"
        )
        delete = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-adapter")

    def refresh():
        return {listing: _listing(studio), chosen: gr.Dropdown(choices=_choices(studio), value=None)}

    @guard
    def add_lora(file: str | None, name: str, words: str, weight: float, family_choice: str):
        if not file:
            raise InvalidInput("Choose a .safetensors LoRA file to upload.", field="file")
        adapter = studio.add_adapter(
            "lora",
            (name or "").strip(),
            Path(file).read_bytes(),
            weight=float(weight),
            trigger_words=[w.strip() for w in (words or "").split(",")],
            family=None if family_choice == AUTO else family_choice,
        )
        _saved(studio, adapter)
        forget_uploads(file)
        return {**refresh(), lora_file: None, lora_name: "", trigger_words: ""}

    @guard
    def add_avatar(file: str | None, kind_choice: str, name: str, weight: float):
        if not file:
            raise InvalidInput("Choose an image (PNG, JPEG or WEBP) for the avatar.", field="file")
        adapter = studio.add_adapter(kind_choice, (name or "").strip(), Path(file).read_bytes(), weight=float(weight))
        _saved(studio, adapter)
        forget_uploads(file)  # stored re-encoded; the original (GPS and all) goes
        return {**refresh(), image: None, avatar_name: ""}

    @guard
    def remove(choice: str | None):
        if not choice:
            raise InvalidInput("Choose the avatar or LoRA to delete.", field="name")
        kind_name, _, name = choice.partition(":")
        studio.delete_adapter(kind_name, name)
        return refresh()

    # Progress and error marks go on the listing only: Gradio's red "Error" badge would
    # otherwise cover the file, name and trigger words the person has to correct.
    upload.click(
        add_lora,
        [lora_file, lora_name, trigger_words, lora_weight, family],
        [listing, chosen, lora_file, lora_name, trigger_words],
        api_name="add_lora",
        show_progress_on=listing,
    )
    save.click(
        add_avatar,
        [image, kind, avatar_name, avatar_weight],
        [listing, chosen, image, avatar_name],
        api_name="add_avatar",
        show_progress_on=listing,
    )
    delete.click(remove, chosen, [listing, chosen], api_name="delete_adapter", show_progress_on=listing)
    # Another tab or an API client may have added some since the page was built.
    ctx.blocks.load(refresh, None, [listing, chosen], api_visibility="private")


def _saved(studio: Studio, adapter: dict) -> None:
    # Toasts render HTML: the token's angle brackets must be escaped to show.
    token = html.escape(studio.adapter_token(adapter), quote=False)
    kind = "LoRA" if adapter["kind"] == "lora" else adapter["kind"]
    gr.Info(f"Saved the {kind} '{adapter['name']}'. Paste {token} into a prompt.")


def _choices(studio: Studio) -> list[tuple[str, str]]:
    return [(f"{a['name']} ({a['kind']})", f"{a['kind']}:{a['name']}") for a in studio.list_adapters()]


def _listing(studio: Studio) -> str:
    """The adapters as cards: image (or a LoRA mark), name, kind, token with a copy button."""
    adapters = sorted(studio.list_adapters(), key=lambda a: (ADAPTER_KINDS.index(a["kind"]), a["name"]))
    if not adapters:
        return "<p class='empty'>Nothing saved yet: upload a LoRA or save an avatar above.</p>"
    return "<div class='cards tokens'>" + "".join(_card(studio, adapter) for adapter in adapters) + "</div>"


def _card(studio: Studio, adapter: dict) -> str:
    token = studio.adapter_token(adapter)
    thumbnail = studio.adapter_thumbnail(adapter["kind"], adapter["name"], side=160)
    picture = (
        f"<img src='{data_url(thumbnail)}' alt=''>"
        if thumbnail is not None
        else "<div class='mark' aria-hidden='true'>LoRA</div>"
    )
    metadata = adapter["metadata"] or {}
    details = [KIND_HELP[adapter["kind"]]]
    if adapter["family"]:
        details.append(adapter["family"])
    if metadata.get("trigger_words"):
        details.append("trigger: " + ", ".join(metadata["trigger_words"]))
    escaped = html.escape(token, quote=True)
    return (
        f"<div class='card' data-kind='{adapter['kind']}' data-name='{html.escape(adapter['name'], quote=True)}'>"
        f"{picture}<div class='title'><b>{html.escape(adapter['name'])}</b>"
        f"<span class='badge'>{adapter['kind']}</span></div>"
        f"<div class='token'><code>{escaped}</code>"
        f"<button class='copy-token' data-token='{escaped}' title='Copy the token'>Copy</button></div>"
        f"<div class='detail'>{html.escape(' · '.join(details))}</div></div>"
    )
