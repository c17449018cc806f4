"""The 'train' job: a LoRA tune's photos prepared (face-corrected, face-cropped), trained with
`studio.training.train_lora`, resumed from its latest checkpoint after an interruption, and its
checkpoints stored and scored for likeness as they come."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from storage import FileStore, Store
from studio import face_loss, zerogpu
from studio.config import Settings
from studio.errors import Canceled, InvalidInput, Unavailable
from studio.inspection import face_crop
from studio.jobs import JobContext
from studio.runtime import Runtime
from studio.services.captions import Captions
from studio.services.likeness import Likeness
from studio.services.lookups import user_tune
from studio.services.models import BaseModels
from studio.services.photos import Photos
from studio.training import (
    RESUME_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    ResumeStateError,
    TrainedLora,
    TrainingStopped,
)
from studio.tune_requests import TrainSettings

log = logging.getLogger(__name__)


class TrainingJob:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileStore,
        runtime: Runtime,
        models: BaseModels,
        photos: Photos,
        likeness: Likeness,
        captions: Captions,
    ):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime
        self.models = models
        self.photos = photos
        self.likeness = likeness
        self.captions = captions

    def run(self, job: dict, context: JobContext) -> None:
        """The 'train' job: a LoRA from the tune's photos, with its checkpoints and kohya copy
        stored as they are written."""
        # 1. The tune, its settings, its base model and its photos (face-cropped if asked).
        tune = user_tune(self.store, job["subject_id"])
        if self.runtime.zero_gpu:  # queued before the studio moved to ZeroGPU
            raise InvalidInput(zerogpu.TRAINING_REFUSED, field="model_type")
        args = tune["args"] or {}
        settings = TrainSettings.from_json(args["training"])
        base = self.models.prompt_base(tune)
        images = self._training_images(tune, settings)
        # 2. What the text encoder reads beside each photo, and the loss weights by region.
        captions = self.captions.caption_photos(tune["id"])
        masks = self._loss_masks(images, settings)
        self.runtime.unload_engine()  # free the engine's model for the training

        def keep(checkpoint: Checkpoint) -> None:
            self.store.add_checkpoint(
                {
                    "tune_id": tune["id"],
                    "step": checkpoint.step,
                    "weights_path": self.files.put_file(checkpoint.weights, "weights"),
                    "sample_path": self.files.put_file(checkpoint.sample, "samples") if checkpoint.sample else None,
                    "resume_path": self.files.put_file(checkpoint.resume, "weights") if checkpoint.resume else None,
                    "loss": checkpoint.loss,
                }
            )

        def train(resume_from: Path | None) -> TrainedLora:
            return self.runtime.train_lora(
                self.models.model_path(base),
                base["family"],
                images,
                settings,
                scratch,
                title=tune["title"],
                trigger=tune["token"],
                device=self.settings.device,
                on_step=context.on_step,
                should_stop=context.should_stop,
                on_checkpoint=keep,
                resume_from=resume_from,
                masks=masks,
                captions=captions,
            )

        scratch = self.files.scratch_dir()
        try:
            # 3. An earlier attempt that was killed or stopped goes on from its latest checkpoint
            #    (losing at most `checkpointing_steps` steps); without one, its checkpoints go.
            resume_from = self._resume_folder(tune["id"], scratch)
            if resume_from is None:
                self._forget_checkpoints(tune["id"])
            # 4. Train in the scratch folder (from scratch when the checkpoint turns out damaged);
            #    keep the final weights and the kohya copy.
            try:
                result = train(resume_from)
            except ResumeStateError as error:
                log.warning("tune %s: the training starts again from step 0: %s", tune["id"], error)
                self._forget_checkpoints(tune["id"])
                result = train(None)
            self.store.update_tune(
                tune["id"],
                weights_path=self.files.put_file(result.weights, "weights"),
                kohya_path=self.files.put_file(result.kohya, "weights"),
                active_step=settings.max_train_steps,
            )
        except TrainingStopped as stopped:
            raise Canceled(f"Training {stopped}.") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # 5. Score each checkpoint's sample for likeness, so the best step shows when it is done;
        #    without a face backend the tune is still good, only unscored.
        #    A tune follows its best step by default: scoring makes that checkpoint the active one.
        try:
            self.likeness.score_checkpoints(tune["id"])
        except Unavailable as error:
            log.warning("tune %s: checkpoints not scored for likeness: %s", tune["id"], error.message)

    def _resume_folder(self, tune_id: int, scratch: Path) -> Path | None:
        """Where an interrupted training of the tune goes on from: its latest checkpoint stored
        with a resume state, the two files copied into `scratch` as `train_lora(resume_from=)`
        reads them. Earlier checkpoints stay in the strip; later ones (the final weights of a
        run killed while finishing) are forgotten. None when there is none or a file is gone."""
        rows = [row for row in self.store.tune_checkpoints(tune_id) if row["resume_path"]]
        if not rows:
            return None
        latest = rows[-1]
        folder = scratch / f"resume-{latest['step']}"
        try:
            folder.mkdir()
            shutil.copyfile(self.files.path(latest["weights_path"]), folder / WEIGHTS_NAME)
            shutil.copyfile(self.files.path(latest["resume_path"]), folder / RESUME_NAME)
        except OSError as error:
            log.warning("tune %s: the training starts again from step 0: its checkpoint is gone: %s", tune_id, error)
            return None
        self._forget_checkpoints(tune_id, after_step=latest["step"])
        log.info("tune %s: resuming the interrupted training from its checkpoint at step %s", tune_id, latest["step"])
        return folder

    def _forget_checkpoints(self, tune_id: int, *, after_step: int = 0) -> None:
        for path in self.store.clear_checkpoints(tune_id, after_step=after_step):
            self.files.delete(path)

    def _loss_masks(self, images: list, settings: TrainSettings) -> list[np.ndarray] | None:
        """The face-focused loss's mask of each training image (studio/face_loss.py) from its
        best face, or None when the settings weigh every region alike. Without a face backend
        the tune trains on the plain loss (logged)."""
        if not face_loss.masked(settings.face_loss_weight, settings.background_loss_weight):
            return None
        try:
            analyzer = self.runtime.face_analyzer
        except Unavailable as error:
            log.warning("training on the plain loss: no face backend for the face mask: %s", error.message)
            return None
        masks = []
        for image in images:
            faces = analyzer.detect(np.asarray(image.convert("RGB")))
            box = faces[0].bbox if faces else None
            masks.append(
                face_loss.loss_mask(image.size, box, settings.face_loss_weight, settings.background_loss_weight)
            )
        return masks

    def _training_images(self, tune: dict, settings: TrainSettings) -> list:
        """The tune's photos as PIL images: face-corrected when it asked for `face_restore` and
        the plug-in is installed (else a warning on the tune), then cut around the face at its
        crop ratio when it asked for face crops (a photo without a detected face is used whole)."""
        from studio.postprocess import PostContext

        args = tune["args"] or {}
        images = [self.photos.photo_image(row) for row in self.store.tune_photos(tune["id"])]
        if args.get("face_restore"):
            plugin, context = (
                self.runtime.engine.postprocessors["face_correct"],
                PostContext(device=self.runtime.engine.device),
            )
            missing = plugin.missing(context)
            warnings = args.get("warnings", [])
            if missing and f"face_restore was skipped: {missing}" not in warnings:
                warnings = [*warnings, f"face_restore was skipped: {missing}"]
                self.store.update_tune(tune["id"], args={**args, "warnings": warnings})
            elif not missing:
                images = [plugin.apply(image, context) for image in images]
        if not args.get("face_crop"):
            return images
        analyzer = self.runtime.face_analyzer
        cropped = []
        for image in images:
            faces = analyzer.detect(np.asarray(image))
            if faces:
                image = face_crop(image, faces[0], args["face_crop_ratio"], settings.size)
            else:
                log.info("tune %s: a photo shows no face; it is trained on whole", tune["id"])
            cropped.append(image)
        return cropped
