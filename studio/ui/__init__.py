"""The Gradio UI: `build_ui(studio)` returns the Blocks; one module per tab, thin handlers.

Only this package imports gradio. Each tab module has `build(studio, ctx)`; handlers turn their
inputs into one request and call `Studio`, and return `{component: value}` dicts (a component
left out keeps its value); `common.guard` turns a StudioError into an error toast. Tabs get
the studio as the person behind each event may use it (`common.ActingStudio`): the same owners
and admins as the REST API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

    from studio.core import Studio

DEMO_BANNER = (
    "**Demo model.** The studio is running on its embedded tiny model: images are textures, not "
    "photographs, but every feature works. For real pictures pick a real model in the gallery "
    "(it downloads on first use) or start with `STUDIO_BASE_MODEL=690204 make run` on a GPU machine."
)

# (label, tab id, module under studio.ui) in the order they appear.
TABS = [
    ("Photos", "photos", "photos"),
    ("Tunes", "tunes", "tunes"),
    ("Packs", "packs", "packs"),
    ("Avatars & LoRAs", "avatars", "avatars"),
    ("Generate", "generate", "generate"),
    ("Gallery", "gallery", "gallery"),
    ("Settings & status", "status", "status"),
]


def build_ui(studio: Studio) -> gr.Blocks:
    import importlib

    import gradio as gr

    from studio.throttle import Throttle
    from studio.ui.common import EMPTY_PHOTO_SET, ActingStudio, Context

    with gr.Blocks(title="Avatar Studio") as demo:
        # Top level, not inside a tab: a BrowserState in an unselected tab is not mounted at load.
        browser_id = gr.BrowserState(None, storage_key="avatar_studio_browser", secret="avatar-studio")
        photo_set = gr.BrowserState(EMPTY_PHOTO_SET, storage_key="avatar_studio_photos", secret="avatar-studio")
        last_prompt = gr.BrowserState(None, storage_key="avatar_studio_last_prompt", secret="avatar-studio")
        likes = Throttle(studio.settings.likes_per_minute)
        ctx = Context(browser_id=browser_id, photo_set=photo_set, last_prompt=last_prompt, blocks=demo, likes=likes)
        acting = ActingStudio(studio)
        gr.Markdown("# Avatar Studio")
        if studio.status()["demo_model"]:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        with gr.Tabs():
            for label, tab_id, module in TABS:
                with gr.Tab(label, id=tab_id):
                    importlib.import_module(f"studio.ui.{module}").build(acting, ctx)
        demo.load(Context.ensure_browser_id, browser_id, browser_id, api_visibility="private")
    return demo
