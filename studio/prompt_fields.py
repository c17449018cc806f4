"""Every field of Astria's prompt-create reference (POST /tunes/:id/prompts) and what the
studio does with it, in one place. A field is either honoured (a PromptRequest field, or read
by the API layer before the request is built) or accepted and answered with a warning on the
prompt saying it was ignored and why: never silently dropped, never a server error.
tests/test_prompt_fields.py reads the field list from the reference and checks each is here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Read by the API layer (studio/api/forms.py) and turned into PromptRequest fields.
API_FIELDS = ("input_image", "input_image_url", "input_image_base64", "mask_image_url")

_VIDEO = "this studio makes still images only (it has no video model), so the image was made from text alone"

#: Fields accepted and ignored, with the reason the prompt's warning gives.
IGNORED: dict[str, str] = {
    "workspace_id": "this studio has no workspaces: the prompt belongs to the caller (or the tune's owner)",
    "community": "this studio has no community feed: share images from the Gallery instead",
    "backend_version": "this studio has one engine; Astria's backend versions do not apply",
    "style": (
        "Astria's style presets are its own hosted prompt templates: write the look into the text, "
        "or use a <style:NAME> token or color_grading"
    ),
    "prompt_expansion": "no prompt-expansion language model runs here (offline): the text is used as written",
    "pack_id": (
        "a prompt becomes a pack template once it has images: add it with 'Add to pack' on the Packs tab "
        "(or a pack prompt of POST /p/:id/prompts)"
    ),
    "image_references": (
        f"{_VIDEO}; on FLUX.2 [klein] give reference images with a role instead (references[][role] with a file or url)"
    ),
    "image_reference_urls": (
        f"{_VIDEO}; on FLUX.2 [klein] give reference images with a role instead (references[][role] with a file or url)"
    ),
    **{
        name: _VIDEO
        for name in (
            "video_model",
            "video_prompt",
            "video_duration",
            "video_first_frame",
            "video_first_frame_url",
            "video_last_frame",
            "video_last_frame_url",
            "source_image_url",
            "input_video",
            "input_video_url",
            "audio_reference",
            "audio_reference_url",
            "video_audio",
            "video_upscale_model",
            "video_upscale_target_resolution",
            "video_fps_model",
        )
    },
}


def ignored_warnings(data: Mapping[str, Any]) -> list[str]:
    """A warning for each field of `data` the studio accepts but does not use, saying why.
    A false or empty value asks for nothing, so it gets none."""
    out = []
    for name, value in data.items():
        reason = IGNORED.get(name)
        if reason and value not in (None, "", False, "false", "0", [], {}):
            out.append(f"{name} was ignored: {reason}.")
    return out
