"""Likeness of generated images to their subject: each tune's reference embedding (a FaceID
tune's own, a LoRA tune's made once from its photos), and the scores recorded on images and
on training checkpoints (the maths is in studio/likeness.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import FileStore, Store
from studio import likeness
from studio.errors import Unavailable
from studio.runtime import Runtime
from studio.services.checkpoints import follow_best_step
from studio.services.lookups import user_tune
from studio.services.photos import Photos
from studio.services.views import Views

log = logging.getLogger(__name__)


class Likeness:
    def __init__(self, store: Store, files: FileStore, runtime: Runtime, photos: Photos, views: Views):
        self.store = store
        self.files = files
        self.runtime = runtime
        self.photos = photos
        self.views = views
        # (tune id, backend, photo ids) -> the best face embedding of each training photo
        self._photo_faces: dict[tuple, list[np.ndarray]] = {}

    def reference(self, tune_id: int) -> tuple[np.ndarray, str] | None:
        """(unit reference embedding, face backend that made it) of a subject tune, or None when
        its images are not scored: not a LoRA/FaceID tune of a person (`likeness.scores_subject`)
        or no face in its photos. A FaceID tune's is the one it generates with; a LoRA tune's is
        computed from its photos with the studio's face analyzer the first time it is asked for
        and stored like a FaceID tune's (`face_backend` set with no `embedding_path` records that
        no photo showed a face, so it is not looked for again). Unavailable when the backend is
        not installed."""
        tune = user_tune(self.store, tune_id)
        if not likeness.scores_subject(tune):
            return None
        if tune["embedding_path"]:
            vector = np.load(io.BytesIO(self.files.read(tune["embedding_path"])), allow_pickle=False)
            return likeness.unit(vector), tune["face_backend"]
        if tune["model_type"] != "lora" or tune["face_backend"]:
            return None
        analyzer = self.runtime.face_analyzer
        photos = (np.asarray(self.photos.photo_image(row)) for row in self.store.tune_photos(tune_id))
        reference = likeness.reference_from_photos(analyzer, photos)
        path = None
        if reference is not None:
            buffer = io.BytesIO()
            np.save(buffer, reference, allow_pickle=False)
            path = self.files.put(buffer.getvalue(), "embeddings", ".npy")
        else:
            log.info("tune %s: no photo shows a face; its images get no likeness", tune_id)
        self.store.update_tune(tune_id, embedding_path=path, face_backend=analyzer.name)
        return None if reference is None else (reference, analyzer.name)

    def score(self, tune_id: int, image, crops: list[np.ndarray] | None = None) -> dict[str, Any] | None:
        """The likeness record (studio/likeness.py) of a PIL `image` against tune `tune_id`'s
        subject, scored with the backend that made its reference; None when the tune's images
        are not scored (see `likeness_reference`). The record also carries the copy-paste flag
        against the faces the tune must not copy (`crops`: their embeddings when the caller has
        them already, `reference_crops`). Unavailable when that backend is missing."""
        found = self.reference(tune_id)
        if found is None:
            return None
        reference, backend = found
        analyzer = self.runtime.analyzer_for(backend)
        if crops is None:
            crops = self.reference_crops(tune_id, backend)
        return likeness.score_image(analyzer, reference, np.asarray(image.convert("RGB")), crops)

    def reference_crops(self, tune_id: int, backend: str) -> list[np.ndarray]:
        """The embeddings (by `backend`) of the faces an image of the tune must not copy, for its
        copy flag: the face crops a reference tune passes to its model (`args["references"]`),
        else, for a scored LoRA or FaceID tune (`likeness.scores_subject`), the best face of each
        of its training photos; [] for any other tune, and no entry for a crop or photo that is
        gone or shows no face. A tune's training-photo faces are embedded once per set of photos
        and kept in memory."""
        tune = self.store.get_tune(tune_id) or {}
        crops = (tune.get("args") or {}).get("references") or []
        analyzer = self.runtime.analyzer_for(backend)
        if not crops:
            if not tune or not likeness.scores_subject(tune):
                return []
            rows = self.store.tune_photos(tune_id)
            key = (tune_id, backend, tuple(row["id"] for row in rows))
            if key not in self._photo_faces:
                photos = (np.asarray(self.photos.photo_image(row).convert("RGB")) for row in rows)
                self._photo_faces[key] = likeness.best_faces(analyzer, photos)
            return self._photo_faces[key]
        out = []
        for crop in crops:
            row = self.store.get_photo(crop["photo_id"])
            if row is None:
                continue
            rgb = np.asarray(self.photos.photo_image(row).convert("RGB").crop(tuple(crop["box"])))
            out.extend(likeness.best_faces(analyzer, [rgb]))
        return out

    def rescore_prompt(self, prompt_id: int) -> dict[str, Any]:
        """Score a prompt's stored images again (after its tune's photos changed, or for images
        made before likeness existed) and record the results; returns `get_prompt`."""
        prompt = self.views.get_prompt(prompt_id)
        stored = self.store.prompt_images(prompt_id)
        images = [self.photos.decode_image(self.files.read(row["path"]), "image") for row in stored]
        records = self.prompt_likeness(prompt, images)
        with self.store.transaction():
            for row, record in zip(stored, records):
                self.store.set_image_likeness(prompt_id, row["idx"], record)
        return self.views.get_prompt(prompt_id)

    def score_checkpoints(self, tune_id: int) -> list[dict[str, Any]]:
        """Score the sample image of each of a LoRA tune's checkpoints against its subject and
        record it on the checkpoint; returns `tune_checkpoints`. `likeness.best_step` of them
        is the step `tune_json` marks best, and the active one unless the owner picked a step
        (`use_best_step`). Unavailable when the face backend is missing."""
        tune = user_tune(self.store, tune_id)
        for checkpoint in self.store.tune_checkpoints(tune_id):
            record = None
            if checkpoint["sample_path"]:
                image = self.photos.decode_image(self.files.read(checkpoint["sample_path"]), "sample")
                record = self.score(tune["id"], image)
            self.store.update_checkpoint(checkpoint["id"], likeness=record)
        follow_best_step(self.store, self.files, self.store.get_tune(tune_id))
        return self.store.tune_checkpoints(tune_id)

    def prompt_likeness(self, prompt: Mapping[str, Any], images: Sequence) -> list[dict[str, Any] | None]:
        """Likeness records for a prompt's PIL `images` against the subject of its tune (or of
        the first FaceID/LoRA tune its text names); Nones when there is none. A missing face
        backend is logged, not raised: the images are good without a score."""
        tune = self.store.get_tune(prompt["tune_id"]) or {}
        subject = likeness.subject_tune_id(tune, prompt["text"])
        subject_tune = self.store.get_tune(subject) if subject is not None else None
        if subject_tune is None or not likeness.scores_subject(subject_tune):
            return [None] * len(images)
        try:
            found = self.reference(subject)
            crops = self.reference_crops(subject, found[1]) if found is not None and images else []
            return [self.score(subject, image, crops) for image in images]
        except Unavailable as error:
            log.warning("prompt %s: images not scored for likeness: %s", prompt["id"], error.message)
            return [None] * len(images)
