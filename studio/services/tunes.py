"""Tunes: made from uploads, stored photos or image URLs (a LoRA queued for training, or a
FaceID tune ready at once with its reference embedding), listed, canceled, deleted with
everything they made, expired, and their checkpoints and files."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from storage import FileStore, Store
from storage.database import now
from studio import families, packs, zerogpu
from studio.config import Settings
from studio.domain import CANCELED, QUEUING, RUNNABLE_FAMILIES, RUNNING, SUCCESS, TRAINING
from studio.errors import Conflict, InvalidInput, ModelNotAvailable, NotFound, TooLarge
from studio.jobs import check_callback_url
from studio.likeness import reference_embedding
from studio.principals import LOCAL_ADMIN, Principal
from studio.prompts import PromptRequest, make_token, parse_prompt
from studio.runtime import Runtime
from studio.services.captions import Captions
from studio.services.checkpoints import activate_checkpoint, follow_best_step
from studio.services.lookups import still_there, timestamp, user_tune
from studio.services.models import DEMO_SOURCE, BaseModels, runnable_labels
from studio.services.photos import Photos
from studio.services.prompts import Prompts
from studio.services.queue import JobQueue
from studio.services.views import Views
from studio.tune_requests import (
    BRANCH_FAMILY,
    PromptSpec,
    TuneRequest,
    check_request,
    plan_training,
    resolved_values,
)

log = logging.getLogger(__name__)

#: The branch a tune records for its base model's family (Astria's names).
FAMILY_BRANCH = {family: branch for branch, family in BRANCH_FAMILY.items()}


class Tunes:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileStore,
        runtime: Runtime,
        models: BaseModels,
        photos: Photos,
        prompts: Prompts,
        queue: JobQueue,
        views: Views,
        captions: Captions,
    ):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime
        self.models = models
        self.photos = photos
        self.prompts = prompts
        self.queue = queue
        self.views = views
        self.captions = captions

    def create_tune(
        self,
        request: TuneRequest,
        photos: list[tuple[str, bytes]] | None = None,
        photo_ids: list[int] | None = None,
        *,
        image_urls: Sequence[str] | str | None = None,
        base_url: str | None = None,
        detect_characteristics: bool = False,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Create `principal`'s LoRA or FaceID tune from photos: uploads as (filename, bytes), ids of photos
        already stored, and/or `image_urls` to fetch. Returns the tune as `tune_json` shows it
        plus `rejections` (the uploads refused, each with a reason). A title in use returns that
        tune unchanged (Astria's idempotency). A LoRA tune is queued for training; a FaceID tune
        is SUCCESS at once. The request's prompts are created with the tune and run when it is
        ready. `base_url` is where the client reached the studio (the API request's), kept for
        the URLs in callbacks. With `detect_characteristics` (the API's tunes: nobody reviewed
        them in the Photos tab) the photos' characteristics fill what the request left out.
        Everything that can be checked — the fields, the class (`name`,
        one of packs.CLASS_NAMES), the number of photos (at most max_photos, else TooLarge) —
        is checked before a photo is fetched or anything is stored. Raises InvalidInput naming
        the field, NotFound (base model, photo), Busy (queue full)."""
        # 1. Check the request; a title in use answers with its tune.
        check_request(request)
        if request.name not in packs.CLASS_NAMES:
            raise InvalidInput(
                f"name {request.name!r} is not a class the studio knows: use one of {', '.join(packs.CLASS_NAMES)}.",
                field="name",
            )
        urls = self.photos.photo_urls(image_urls, len(photos or []) + len(photo_ids or []))
        if request.model_type == "lora" and self.runtime.zero_gpu:
            raise InvalidInput(zerogpu.TRAINING_REFUSED, field="model_type")
        private = self.settings.allow_private_urls
        for url, field_name in [(request.callback, "callback"), (request.prompts_callback, "prompts_callback")]:
            check_callback_url(url, field_name, allow_private=private)
        for spec in request.prompts:
            check_callback_url(spec.callback, "prompts_attributes.callback", allow_private=private)
            PromptRequest.from_dict(_prompt_fields(spec)).validate()
        existing = self.store.find_tune_by_title(request.title.strip(), principal.owner)
        if existing is not None:
            return self._same_title(existing["id"], principal)
        # 2. The base model and the photos.
        base = self._tune_base_model(request)
        if urls:
            photos = [*(photos or []), *self.photos.fetch_photos(urls)]
        # A request that fails stores nothing: the photos it added go with it.
        added: list[int] = []
        try:
            tune_id, created, rejections = self._store_tune(
                request, base, photos, photo_ids, base_url, added, principal, detect_characteristics
            )
        except BaseException:
            self.photos.discard_photos(added)
            raise
        if not created:  # the same title was created meanwhile
            self.photos.discard_photos(added)
            return self._same_title(tune_id, principal)
        # 4. Its prompts: they run when the tune is ready (at once for FaceID).
        prompt_ids = [self._create_tune_prompt(tune_id, spec, principal) for spec in request.prompts]
        if request.model_type == "lora":  # the other photos' captions, shown before it trains
            self.captions.caption_photos(tune_id)
        tune = self.store.get_tune(tune_id)
        self.store.update_tune(tune_id, args={**tune["args"], "prompt_ids": prompt_ids})
        self.queue.send_prompts_callback(tune_id)
        if request.model_type == "faceid":
            self.queue.tune_finished(tune_id)
        return {**self.views.tune_json(tune_id, principal=principal), "rejections": [r.to_json() for r in rejections]}

    def _same_title(self, tune_id: int, principal: Principal) -> dict[str, Any]:
        """Astria's idempotency: a title in use answers with its tune. Titles are unique per
        owner, so it is the caller's own; a base model's title (the local admin's) is a conflict."""
        tune = self.store.get_tune(tune_id)
        if tune is None or tune["model_type"] == "checkpoint" or not principal.sees(tune["owner"]):
            raise Conflict("That title is taken: give the tune another title.", field="title")
        return {**self.views.tune_json(tune_id, principal=principal), "rejections": []}

    def _store_tune(
        self,
        request: TuneRequest,
        base: dict[str, Any],
        photos: list[tuple[str, bytes]] | None,
        photo_ids: list[int] | None,
        base_url: str | None,
        added: list[int],
        principal: Principal,
        detect: bool = False,
    ) -> tuple[int, bool, list]:
        """Store the photos (their new ids appended to `added`) and `principal`'s tune with
        them, its characteristics found in them when `detect`. Returns (tune id, whether it
        was created, the uploads refused)."""
        rows, rejections = self._tune_photos(photos, photo_ids, request.name, added, principal)
        characteristics = dict(request.characteristics or {})
        if detect:
            ids = [row["id"] for row in rows]
            detected = self.photos.detected_characteristics(request.name, photo_ids=ids, principal=principal)
            characteristics = {**detected, **characteristics}
        # 3. The tune: FaceID is ready now; a LoRA tune is queued for training.
        record = {
            "title": request.title.strip(),
            "name": request.name,
            "token": request.token,
            "model_type": request.model_type,
            "base_tune_id": base["id"],
            "family": base["family"],
            "branch": request.branch or FAMILY_BRANCH.get(base["family"]),
            "characteristics": characteristics,
            "callback": request.callback,
            "prompts_callback": request.prompts_callback,
            "base_url": base_url,
            "expires_at": self._expiry(),
            "owner": principal.owner,
        }
        if request.model_type == "faceid":
            limit = families.FAMILIES[base["family"]].reference_images
            tune_id, created = self._create_faceid_tune(record, rows, request, keep=limit)
        else:
            tune_id, created = self._create_lora_tune(record, rows, request, base)
        return tune_id, created, rejections

    def _tune_base_model(self, request: TuneRequest) -> dict[str, Any]:
        """The base model a tune trains on (or a FaceID tune generates on). branch=fast is the
        mock mode: the embedded demo model whatever base_tune_id says."""
        if request.branch == "fast":
            return next(m for m in self.models.base_models() if m["source"] == DEMO_SOURCE)
        base = (
            self.models.default_base_model()
            if request.base_tune_id is None
            else self.models.base_model(request.base_tune_id)
        )
        if base["family"] not in RUNNABLE_FAMILIES:
            raise InvalidInput(
                f"{base['title']} ({base['family']}) cannot be trained or used here; pick a {runnable_labels()} "
                "base model, or use branch=fast for the mock mode.",
                field="base_tune_id",
            )
        facts = families.FAMILIES[base["family"]]
        if request.model_type == "faceid" and not facts.identity_adapters and not facts.reference_images:
            raise InvalidInput(
                f"{base['title']} is a {facts.label} model, and diffusers has no FaceID adapter for {facts.label} "
                "nor a multi-reference pipeline: train a LoRA tune on it (model_type=lora), or make the FaceID "
                "tune on an SD 1.5 or SDXL base model (IP-Adapter-FaceID) or a FLUX.2 [klein] one (reference tune).",
                field="model_type",
            )
        wanted = BRANCH_FAMILY.get(request.branch or "")
        if wanted and wanted != base["family"]:
            raise InvalidInput(
                f"branch {request.branch} does not match the base model {base['title']} ({base['family']}).",
                field="branch",
            )
        # A LoRA trains on the base model, and prompts made with any tune run on it: one that
        # cannot load here is refused now rather than failing in the queue. (A FaceID tune
        # alone never loads it: Astria clients pass 690204 there by habit.)
        if (request.model_type == "lora" or request.prompts) and (reason := self.models.why_not_here(base)):
            raise ModelNotAvailable(f"{reason}, or use branch=fast for the mock mode.", field="base_tune_id")
        return base

    def training_memory(self, request: TuneRequest, *, num_images: int = 10) -> dict[str, Any]:
        """What a LoRA training of `request` would need on a GPU, before it starts:
        `families.estimate_training_memory` of its base model's family at the settings the
        training would use ({"gb": …, "breakdown": …}), with `family` and `family_label`.
        The estimate is for the GPU a real training runs on: mixed precision 'auto' is bf16
        there and gradient checkpointing is on unless the request turned it off."""
        if request.branch == "fast":
            base = next(m for m in self.models.base_models() if m["source"] == DEMO_SOURCE)
        elif request.base_tune_id is None:
            base = self.models.default_base_model()
        else:
            base = self.models.base_model(request.base_tune_id)
        if base["family"] not in RUNNABLE_FAMILIES:
            raise InvalidInput(f"{base['title']} cannot be trained here.", field="base_tune_id")
        settings = plan_training(request, num_images=num_images, native_resolution=self.models.native_resolution(base))
        precision = "bf16" if settings.mixed_precision == "auto" else settings.mixed_precision
        estimate = families.estimate_training_memory(
            base["family"],
            resolution=max(settings.size),
            rank=settings.rank,
            batch_size=settings.train_batch_size,
            gradient_checkpointing=settings.gradient_checkpointing is not False,
            mixed_precision=precision,
            train_text_encoder=settings.train_text_encoder,
        )
        return {**estimate, "family": base["family"], "family_label": families.FAMILIES[base["family"]].label}

    def _tune_photos(
        self,
        photos: list[tuple[str, bytes]] | None,
        photo_ids: list[int] | None,
        name: str,
        added: list[int],
        principal: Principal,
    ) -> tuple[list[dict], list]:
        rows, rejections = [], []
        if photos:
            rows, rejections = self.photos.add_photos(photos, added=added, principal=principal)
        for photo_id in photo_ids or []:
            row = self.store.get_photo(photo_id)
            if row is None or not self.photos.may_see(photo_id, principal):
                raise NotFound(f"Photo {photo_id} does not exist; upload it again.", field="photo_ids")
            rows.append(row)
        rows = list({row["id"]: row for row in rows}.values())
        if not rows:
            reasons = "; ".join(f"{r.filename}: {r.reason}" for r in rejections)
            raise InvalidInput(
                f"A tune needs at least one usable photo of the {name}." + (f" Refused: {reasons}" if reasons else ""),
                field="images",
            )
        if len(rows) > self.settings.max_photos:
            raise TooLarge(f"At most {self.settings.max_photos} photos per tune (got {len(rows)}).", field="images")
        return rows, rejections

    def _create_lora_tune(self, record: dict, rows: list[dict], request: TuneRequest, base: dict) -> tuple[int, bool]:
        settings = plan_training(
            request,
            num_images=len(rows),
            native_resolution=self.models.native_resolution(base),
            family=base["family"],
        )
        values = resolved_values(request)
        args = {
            "preset": request.preset,
            "training": settings.to_json(),
            "face_crop": bool(values["face_crop"]),
            "face_crop_ratio": float(values["face_crop_ratio"]),
            "face_restore": bool(values["face_restore"]),
            "warnings": [],
        }
        with self.store.transaction():
            tune_id, created = self.store.add_tune_unless_titled({**record, "status": QUEUING, "args": args})
            if created:
                self.store.link_photos(tune_id, [row["id"] for row in rows])
                # the captions given, in the order of the photos kept, before the job can start
                given = zip(rows, request.captions or ())
                self.store.set_captions(tune_id, {row["id"]: caption for row, caption in given if caption})
                self.queue.enqueue("train", tune_id)
        return tune_id, created

    def _create_faceid_tune(
        self, record: dict, rows: list[dict], request: TuneRequest, *, keep: int = 0
    ) -> tuple[int, bool]:
        """A FaceID tune: the reference embedding of the photos that show a face, stored as .npy;
        no training. On a base model that takes reference images (`keep` > 0, FLUX.2 [klein]) it
        is a reference tune too: `args["references"]` keeps the `keep` best face crops (see
        `best_reference_crops`). InvalidInput when no photo shows a face."""
        analyzer = self.runtime.face_analyzer
        embeddings, faceless, found = [], [], []
        for row in rows:
            rgb = np.asarray(self.photos.photo_image(row))
            faces = analyzer.detect(rgb)
            if faces:
                embeddings.append(analyzer.embed(rgb, faces[0]))
                found.append((row, rgb))
            else:
                faceless.append(row.get("filename") or f"photo {row['id']}")
        if not embeddings:
            raise InvalidInput(
                f"FaceID needs photos that show a face clearly; none was found in {len(rows)} photo(s). "
                "Upload well-lit photos where the face is at least 100 pixels wide.",
                field="images",
            )
        buffer = io.BytesIO()
        np.save(buffer, reference_embedding(embeddings), allow_pickle=False)
        warnings = [f"no face found in {name}; not used" for name in faceless]
        stamp = now()
        tune = {
            **record,
            "status": SUCCESS,
            "progress": 1.0,
            "embedding_path": self.files.put(buffer.getvalue(), "embeddings", ".npy"),
            "face_backend": analyzer.name,
            "started_training_at": stamp,
            "trained_at": stamp,
            "args": {"faces": len(embeddings), "warnings": warnings},
        }
        if keep and found:
            tune["args"]["references"] = _reference_crops(found, analyzer, keep)
        with self.store.transaction():
            tune_id, created = self.store.add_tune_unless_titled(tune)
            if created:
                self.store.link_photos(tune_id, [row["id"] for row in rows])
        return tune_id, created

    def _create_tune_prompt(self, tune_id: int, spec: PromptSpec, principal: Principal) -> int:
        return self.prompts.create_prompt(
            tune_id, _prompt_fields(spec), orig_prompt_id=spec.orig_prompt_id, principal=principal
        )["id"]

    def get_tune(
        self, tune_id: int, base_url: str | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        return self.views.tune_json(tune_id, base_url, principal=principal)

    def list_tunes(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
        base_url: str | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """`principal`'s user tunes (an admin's: all), newest first (those with an id under
        `before_id` when given), as `tune_json` shows them."""
        rows = self.store.list_tunes(limit=limit, offset=offset, before_id=before_id, owner=principal.owner_filter)
        return still_there(lambda tune_id: self.views.tune_json(tune_id, base_url, principal=principal), rows)

    def tune_checkpoints(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """The tune's checkpoints (rows with weights_path, sample_path, loss), by step; the UI
        shows their samples as a strip to pick the best step."""
        user_tune(self.store, tune_id, principal)
        return self.store.tune_checkpoints(tune_id)

    def cancel_tune(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Cancel a tune's training: a queued tune is CANCELED at once, a running one stops at its
        next step. Conflict when there is nothing to cancel (FaceID, already finished)."""
        tune = user_tune(self.store, tune_id, principal)
        job = self.store.latest_job("train", tune_id)
        if job is None or job["status"] not in RUNNING:
            raise Conflict(f"Tune {tune_id} is {tune['status']}: there is no training to cancel.", field="tune_id")
        job = self.store.cancel_job(job["id"])
        if job["status"] == CANCELED:
            self.queue.job_finished(job)
        return self.views.tune_json(tune_id)

    def delete_tune(
        self, tune_id: int, *, cancel: bool = False, wait: float = 30.0, principal: Principal = LOCAL_ADMIN
    ) -> None:
        """Delete a tune with its photos (unless another tune uses them), crops, weights,
        embeddings, checkpoints, prompts, images and likes, on disk too. While its training or
        one of its prompts runs: refused (Conflict: cancel it first) unless `cancel`, which
        cancels the tune's training and unfinished prompts first. A run that was asked to stop
        is given up to `wait` seconds to do so. The UI and the REST API both delete with
        `cancel` (Astria's clients have no cancel call); base models are not deletable
        (NotFound), nor someone else's.

        Other tunes' prompts that name this one in a token (`<faceid:ID:1>` posted to a base
        model) cannot run without it: a running one is stopped like the tune's own, and those
        not started end FAILED with "tune ID was deleted". Finished ones keep their images; ids
        are never reused, so running one again names no tune and is refused."""
        user_tune(self.store, tune_id, principal)
        naming = self._prompts_naming(tune_id)
        if cancel:
            for job in self._jobs_to_stop(tune_id, naming):
                self.store.cancel_job(job["id"])
        for job in self._jobs_to_stop(tune_id, naming):
            if job["status"] != TRAINING:
                continue
            if job["kind"] == "train":
                what = f"tune {tune_id} is training"
            elif job["subject_id"] in naming:
                what = f"prompt {job['subject_id']} uses tune {tune_id} and is running"
            else:
                what = f"prompt {job['subject_id']} is running"
            if not job["cancel_requested"]:
                raise Conflict(f"Cannot delete: {what}. Cancel it first, then delete.", field="tune_id")
            if not self.queue.wait_for_job(job["id"], wait):
                raise Conflict(f"Cannot delete yet: {what} and is still stopping; try again shortly.", field="tune_id")
        for path in self.store.purge_tune(tune_id):
            self.files.delete(path)
        for prompt_id in self.store.fail_unstarted_prompts(sorted(naming), f"tune {tune_id} was deleted"):
            self.queue.prompt_finished(prompt_id)

    def _prompts_naming(self, tune_id: int) -> set[int]:
        """Ids of other tunes' unfinished prompts whose text names tune `tune_id` in a token."""
        named = set()
        for prompt in self.store.unfinished_prompts_naming(tune_id):
            try:
                references = parse_prompt(prompt["text"]).references
            except InvalidInput:  # stored before a grammar change; it cannot run anyway
                continue
            if any(ref.kind in ("lora", "faceid") and ref.tune_id == tune_id for ref in references):
                named.add(prompt["id"])
        return named

    def _jobs_to_stop(self, tune_id: int, naming: set[int]) -> list[dict]:
        """The unfinished jobs of the tune and its prompts, and the running ones of other tunes'
        prompts that name it (those queued are failed instead, once it is gone)."""
        others = [self.store.latest_job("generate", prompt_id) for prompt_id in sorted(naming)]
        return [*self.store.tune_jobs(tune_id), *(job for job in others if job and job["status"] == TRAINING)]

    def _expiry(self) -> str | None:
        """`expires_at` for a tune made now: STUDIO_TUNE_EXPIRY_DAYS from now, None when 0."""
        days = self.settings.tune_expiry_days
        return timestamp(datetime.now(UTC) + timedelta(days=days)) if days else None

    def sweep_expired(self, now: datetime | None = None) -> list[int]:
        """Delete every tune whose `expires_at` has passed at `now` (default: now, UTC) with
        everything it made, as Astria's DELETE does (`delete_tune(cancel=True)`: its jobs are canceled
        first). Returns the ids deleted. A tune whose run does not stop in time stays for the next
        sweep. The job worker runs this daily (Worker housekeeping); a date a tune was given is
        kept even if STUDIO_TUNE_EXPIRY_DAYS changes later, since its owner was shown it."""
        deleted = []
        for tune_id in self.store.expired_tunes(timestamp(now or datetime.now(UTC))):
            try:
                self.delete_tune(tune_id, cancel=True)
            except (Conflict, NotFound) as error:
                log.warning("expired tune %s not deleted yet: %s", tune_id, error.message)
                continue
            deleted.append(tune_id)
        if deleted:
            log.info("deleted %d expired tune(s): %s", len(deleted), ", ".join(map(str, deleted)))
        return deleted

    def set_active_checkpoint(self, tune_id: int, step: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Use the weights saved at `step` for generation (and as the kohya copy) from now on:
        the owner's choice, so the tune stops following its best step (`use_best_step`)."""
        tune = user_tune(self.store, tune_id, principal)
        if self.store.get_checkpoint(tune_id, step) is None:
            steps = ", ".join(str(c["step"]) for c in self.store.tune_checkpoints(tune_id)) or "none yet"
            raise NotFound(f"Tune {tune_id} has no checkpoint at step {step} (steps: {steps}).", field="step")
        activate_checkpoint(self.store, self.files, tune, step)
        self.store.update_tune(tune_id, use_best_step=0)
        return self.views.tune_json(tune_id)

    def use_best_step(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Follow the best step by likeness again (the default): its checkpoint becomes active
        now when the samples are scored, and after a training that scores them otherwise."""
        tune = user_tune(self.store, tune_id, principal)
        self.store.update_tune(tune_id, use_best_step=1)
        follow_best_step(self.store, self.files, {**tune, "use_best_step": 1})
        return self.views.tune_json(tune_id)

    def tune_photos(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """The photos a tune was made from, in upload order."""
        user_tune(self.store, tune_id, principal)
        return self.store.tune_photos(tune_id)

    def tune_photo_file(self, tune_id: int, photo_id: int, *, principal: Principal = LOCAL_ADMIN) -> Path:
        """The stored file of one of the tune's photos (what `orig_images` links to). NotFound
        unless the photo belongs to that tune, so a URL cannot be bent to another tune's photo."""
        photo = next((p for p in self.tune_photos(tune_id, principal=principal) if p["id"] == photo_id), None)
        if photo is None:
            raise NotFound(f"Tune {tune_id} has no photo {photo_id}.", field="photo_id")
        return self.files.path(photo["path"])

    def tune_token(self, tune_id: int, weight: float = 1.0, *, principal: Principal = LOCAL_ADMIN) -> str:
        """The prompt token that uses a LoRA or FaceID tune, e.g. `<lora:12:1>`."""
        tune = user_tune(self.store, tune_id, principal)
        return make_token(tune["model_type"], tune["id"], weight)

    def lora_file(self, tune_id: int, *, principal: Principal = LOCAL_ADMIN) -> Path:
        """The trained tune's LoRA in kohya/A1111 layout (what other tools load), at its active
        checkpoint. Conflict when the tune has no LoRA (FaceID, or not trained yet)."""
        tune = user_tune(self.store, tune_id, principal)
        if not tune.get("kohya_path"):
            what = "a FaceID tune: it has no LoRA" if tune["model_type"] == "faceid" else f"{tune['status']}"
            raise Conflict(f"Tune {tune_id} is {what}; download its LoRA once it is trained.", field="tune_id")
        return self.files.path(tune["kohya_path"])


def _reference_crops(found: list[tuple[dict, np.ndarray]], analyzer, keep: int) -> list[dict[str, Any]]:
    """A reference tune's face crops: the `keep` best photos (`best_references`), each as its
    photo id and the head-and-shoulders box to crop from it (twice the face's size), so the
    crops go with the photos when the tune is deleted."""
    from studio.inspection import analyze_photo, face_crop_region
    from studio.inspection_report import best_references

    inspections = [analyze_photo(rgb, analyzer) for _row, rgb in found]
    chosen = best_references(inspections, analyzer.same_person_distance, keep)
    out = []
    for index in chosen:
        (row, rgb), face = found[index], inspections[index].subject
        if face is not None:
            box = face_crop_region(face, (rgb.shape[1], rgb.shape[0]), ratio=2.0)
            out.append({"photo_id": row["id"], "box": list(box)})
    return out


def _prompt_fields(spec: PromptSpec) -> dict[str, Any]:
    """A tune's prompt spec as the fields `create_prompt` takes."""
    fields = {**spec.params, "text": spec.text, "negative_prompt": spec.negative_prompt, "callback": spec.callback}
    return {k: v for k, v in fields.items() if v is not None}
