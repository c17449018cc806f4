"""Settings & status tab: what the studio runs on and where its data lives."""

from __future__ import annotations

import gradio as gr

from studio.core import Studio


def build(studio: Studio) -> None:
    gr.Markdown(_describe(studio), elem_id="status-text")
    models = gr.Dataframe(
        headers=["id", "title", "family", "source", "available"],
        value=_gallery_rows(studio),
        interactive=False,
        label="Base models",
    )
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(lambda: _gallery_rows(studio), None, models, api_visibility="private")


def _describe(studio: Studio) -> str:
    s = studio.status()
    return "\n".join(
        [
            f"- **Base model:** {s['base_model']}{' (embedded demo)' if s['demo_model'] else ''}",
            f"- **Device:** {s['device']}",
            f"- **Data folder:** `{s['home']}`",
            f"- **API keys configured:** {s['api_keys']}",
            f"- **Login required:** {'yes' if s['auth'] else 'no'}",
        ]
    )


def _gallery_rows(studio: Studio) -> list[list]:
    return [
        [m["id"], m["title"], m["family"], m["source"], "yes" if m["available"] else "no"] for m in studio.base_models()
    ]
