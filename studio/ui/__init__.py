"""The Gradio UI: `build_ui(studio)` returns the Blocks; one module per tab, thin handlers.

Only this package imports gradio. Handlers turn their inputs into one request and call `Studio`;
`common.guard` turns a StudioError into a Gradio error toast.
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


def build_ui(studio: Studio) -> gr.Blocks:
    import gradio as gr

    from studio.ui import status

    with gr.Blocks(title="Avatar Studio") as demo:
        gr.Markdown("# Avatar Studio")
        if studio.status()["demo_model"]:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        with gr.Tabs(), gr.Tab("Settings & status", id="status"):
            status.build(studio)
    return demo
