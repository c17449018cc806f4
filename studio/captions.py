"""Captions of training photos: what a LoRA reads beside each photo.

A caption names the subject with the tune's token and class, then what in the photo is not the
person, so the LoRA ties those to their words rather than to the token: glasses, a hat, the
framing (a selfie, a long shot, a close-up) and the background, as the photo's inspection found
them (studio/inspection.py), plus, where a captioning model is configured (STUDIO_CAPTIONER: a
vision-language model folder that transformers loads with `AutoModelForImageTextToText`, e.g.
BLIP), that model's description of the photo:

    "ohwx woman, wearing glasses, close-up, plain white background, a woman sitting on a bench"

Captions are stored per tune photo, shown and edited in the Photos and Tunes tabs and through the
API, and used by `studio.training.train_lora` (with `caption_dropout`).

transformers is imported inside `TransformersCaptioner`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

#: Named colours for the background (the mean colour of the photo's border), nearest wins.
COLOURS = {
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
    "red": (190, 40, 40),
    "green": (60, 140, 60),
    "blue": (50, 90, 190),
    "yellow": (220, 200, 60),
    "brown": (120, 80, 50),
    "beige": (210, 190, 160),
}
#: Border pixels whose spread (mean channel std) is under this are a plain background.
PLAIN_SPREAD = 30.0
#: Share of the photo's side taken as its border.
BORDER = 0.08


class Captioner(Protocol):
    """Describes a photo in a few words (a vision-language model)."""

    def describe(self, image) -> str: ...


def caption_from_inspection(
    token: str, name: str, inspection: Mapping[str, Any] | None, rgb: np.ndarray | None = None, description: str = ""
) -> str:
    """The caption of a photo of `token name` from its inspection JSON (`PhotoInspection.to_json`)
    and, when given, its pixels (for the background) and a captioning model's `description`."""
    parts = [f"{token} {name}"]
    found = inspection or {}
    if found.get("wearing_sunglasses"):
        parts.append("wearing sunglasses")
    elif found.get("glasses"):
        parts.append("wearing glasses")
    if found.get("wearing_hat") or found.get("headcover"):
        parts.append("wearing a hat")
    if found.get("selfie"):
        parts.append("selfie")
    elif found.get("full_body_image_or_longshot"):
        parts.append("full body shot")
    elif found.get("faces"):
        parts.append("close-up")
    if rgb is not None:
        parts.append(background(rgb))
    description = " ".join(description.split())
    if description:
        parts.append(description)
    return ", ".join(parts)


def background(rgb: np.ndarray) -> str:
    """'plain <colour> background' when the photo's border is one flat colour, else 'busy
    background'."""
    height, width = rgb.shape[:2]
    band = max(1, int(round(min(height, width) * BORDER)))
    border = np.concatenate(
        [
            rgb[:band].reshape(-1, 3),
            rgb[-band:].reshape(-1, 3),
            rgb[:, :band].reshape(-1, 3),
            rgb[:, -band:].reshape(-1, 3),
        ]
    ).astype(np.float32)
    if float(border.std(axis=0).mean()) >= PLAIN_SPREAD:
        return "busy background"
    mean = border.mean(axis=0)
    colour = min(COLOURS, key=lambda c: float(np.sum((mean - np.asarray(COLOURS[c], np.float32)) ** 2)))
    return f"plain {colour} background"


class TransformersCaptioner:
    """A vision-language model in `folder` (transformers' `AutoProcessor` and
    `AutoModelForImageTextToText`: BLIP, GIT, a vision encoder-decoder…) describing photos in at
    most `max_new_tokens` tokens, greedily (the same photo always gets the same words). Loaded on
    first use; one description at a time."""

    def __init__(self, folder: str | Path, *, device: str = "cpu", max_new_tokens: int = 20):
        self.folder, self.device, self.max_new_tokens = str(folder), device, max_new_tokens
        self._model = self._processor = None
        self._lock = threading.Lock()

    def describe(self, image) -> str:
        import torch

        with self._lock:
            if self._model is None:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                self._processor = AutoProcessor.from_pretrained(self.folder, local_files_only=True)
                self._model = AutoModelForImageTextToText.from_pretrained(self.folder, local_files_only=True)
                self._model.to(self.device).eval()
            inputs = self._processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
            with torch.no_grad():
                ids = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            text = self._processor.batch_decode(ids, skip_special_tokens=True)[0]
        return " ".join(text.replace(",", " ").split())
