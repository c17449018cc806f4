"""Captions of a LoRA tune's training photos (studio/captions.py): made when the tune is created
(given with the request, else from each photo's inspection and the configured captioning model),
read and edited per photo, and read by the 'train' job."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import Store
from studio import captions
from studio.errors import InvalidInput, Unavailable
from studio.principals import LOCAL_ADMIN, Principal
from studio.runtime import Runtime
from studio.services.lookups import user_tune
from studio.services.photos import Photos
from studio.tune_requests import check_captions

log = logging.getLogger(__name__)


class Captions:
    def __init__(self, store: Store, runtime: Runtime, photos: Photos):
        self.store = store
        self.runtime = runtime
        self.photos = photos

    def caption_photos(self, tune_id: int, given: Sequence[str | None] | None = None) -> list[str]:
        """Caption each photo of the tune that has no caption yet: with `given[i]` for its i-th
        photo (upload order) when that is a text, else from its inspection, background and the
        captioning model's description (`Runtime.captioner`, when one is configured; a model
        that fails is logged and left out). Returns the captions in photo order."""
        tune = self.store.get_tune(tune_id)
        rows = self.store.tune_photos(tune_id)
        given = list(given or [])
        made: dict[int, str] = {}
        for index, row in enumerate(rows):
            if row["caption"]:
                continue
            if index < len(given) and given[index]:
                made[row["id"]] = given[index]
                continue
            image = self.photos.photo_image(row).convert("RGB")
            made[row["id"]] = captions.caption_from_inspection(
                tune["token"], tune["name"], row["inspection"], np.asarray(image), self._describe(image)
            )
        self.store.set_captions(tune_id, made)
        return [row["caption"] or made[row["id"]] for row in rows]

    def _describe(self, image) -> str:
        captioner = self.runtime.captioner
        if captioner is None:
            return ""
        try:
            return captioner.describe(image)
        except (Unavailable, OSError, ValueError, RuntimeError) as error:
            log.warning("the captioning model did not describe a photo: %s", error)
            return ""

    def tune_captions(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """Each photo of the tune with its caption: [{photo_id, filename, caption}] in photo order."""
        user_tune(self.store, tune_id, principal)
        return [
            {"photo_id": row["id"], "filename": row["filename"], "caption": row["caption"]}
            for row in self.store.tune_photos(tune_id)
        ]

    def set_captions(
        self, tune_id: int, edits: Mapping[Any, str | None], *, principal: Principal = LOCAL_ADMIN
    ) -> list[dict[str, Any]]:
        """Set the captions of some of the tune's photos ({photo id: caption}; "" or None makes it
        again from the photo), which its next training reads (a training already running keeps
        what it read). InvalidInput naming `captions` for a photo that is not the tune's or a
        caption without the tune's token. Returns `tune_captions`."""
        tune = user_tune(self.store, tune_id, principal)
        ids = {row["id"] for row in self.store.tune_photos(tune_id)}
        try:
            edits = {int(k): (v.strip() if isinstance(v, str) else v) for k, v in edits.items()}
        except (TypeError, ValueError):
            raise InvalidInput("captions maps photo ids to captions.", field="captions") from None
        unknown = sorted(set(edits) - ids)
        if unknown:
            raise InvalidInput(f"Tune {tune_id} has no photo {unknown[0]}.", field="captions")
        check_captions(list(edits.values()), tune["token"])
        self.store.set_captions(tune_id, {k: v or None for k, v in edits.items()})
        if any(not v for v in edits.values()):
            self.caption_photos(tune_id)
        return self.tune_captions(tune_id, principal=principal)
