"""Prompts: a request checked, stored and queued; its generation run on the engine with
progress, its images and likeness stored; and the prompt canceled, run again or deleted."""

from __future__ import annotations

import dataclasses
import errno
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from storage import FileStore, Store
from storage.database import now
from studio.config import Settings
from studio.domain import ADAPTER_KINDS, CANCELED, FAILED, QUEUING, RUNNING, SUCCESS, TRAINING
from studio.errors import Canceled, Conflict, InvalidInput, NotFound, StudioError, Unavailable
from studio.images import png_bytes
from studio.jobs import JobContext, check_callback_url
from studio.principals import LOCAL_ADMIN, Principal, principal_for
from studio.prompts import PromptError, PromptRequest, canonical_text, parse_prompt
from studio.runtime import Runtime
from studio.services.best_of import generate_best_of
from studio.services.likeness import Likeness
from studio.services.lookups import any_tune, named_adapter, prompt_row, still_there
from studio.services.photos import Photos
from studio.services.queue import JobQueue
from studio.services.resolution import PromptResolver
from studio.services.views import Views

log = logging.getLogger(__name__)


class Prompts:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileStore,
        runtime: Runtime,
        photos: Photos,
        resolver: PromptResolver,
        likeness: Likeness,
        queue: JobQueue,
        views: Views,
    ):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime
        self.photos = photos
        self.resolver = resolver
        self.likeness = likeness
        self.queue = queue
        self.views = views

    def create_prompt(
        self,
        tune_id: int,
        request: PromptRequest | Mapping[str, Any],
        *,
        orig_prompt_id: int | None = None,
        base_url: str | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Validate `request` (Astria's fields) for tune `tune_id` (a base model, or a tune
        `principal` may see; the tokens' tunes too), store it as a QUEUING prompt
        and queue it; the job worker runs it with `run_prompt`. Bad text, tokens, fields, images
        or base models raise a StudioError before anything is stored, and so does a full queue
        (Busy). On a tune still QUEUING or TRAINING the prompt waits, to be queued once the tune
        is trained (its tokens are resolved then). `base_url` is where the client reached the
        studio, kept for the image URLs of its callback. Returns `get_prompt`; a run that fails
        later shows as FAILED (or CANCELED) with its message."""
        from studio.engine import random_seed

        if not isinstance(request, PromptRequest):
            request = PromptRequest.from_dict(request)
        request.validate()
        check_callback_url(request.callback, allow_private=self.settings.allow_private_urls)
        owner = self._prompt_owner(tune_id, request, principal)
        if request.base_pack_id is not None:
            self._check_base_pack(request.base_pack_id, principal)
        tune = self.resolver.prompt_tune(tune_id)
        if request.lora_scale is not None and tune["model_type"] != "lora":
            why = "lora_scale was ignored: it scales the LoRA of a LoRA tune, and this prompt's tune has none."
            request = dataclasses.replace(request, warnings=(*request.warnings, why))
        image = self.photos.decode_image(request.input_image, "input_image") if request.input_image else None
        seed = request.seed if request.seed is not None else random_seed()
        references = [(role, self.photos.decode_image(data, "references")) for role, data in request.references]
        mask = self._mask(request.mask_image, image) if request.mask_image else None
        ready = tune["status"] == SUCCESS
        params = {**request.params(), "seed": seed}
        if ready:
            generate = self.resolver.generate_request(
                tune, request, seed=seed, input_image=image, owner=owner, references=references, mask_image=mask
            )
            params = what_runs(tune, params, generate)
        if image is not None:
            params["input_image_path"] = self.files.put(png_bytes(image), "photos", ".png")
        if mask is not None:
            params["mask_image_path"] = self.files.put(png_bytes(mask), "photos", ".png")
        if references:
            # Re-encoded clean (no metadata), like the input image; deleted with the prompt.
            params["reference_images"] = [
                {"role": role, "path": self.files.put(png_bytes(ref), "photos", ".png")} for role, ref in references
            ]
        # One transaction: a prompt refused by a full queue (Busy) is rolled back, so no prompt
        # waits for a job never queued, and no concurrent listing sees one that then vanishes.
        with self.store.transaction():
            prompt_id = self.store.add_prompt(
                {
                    "tune_id": tune_id,
                    # Canonical token kinds, so the API and the PNGs show one spelling (errors
                    # above name the tokens as written).
                    "text": canonical_text(request.text),
                    "negative_prompt": request.negative_prompt,
                    "params": params,
                    "status": QUEUING,
                    "callback": request.callback,
                    "orig_prompt_id": orig_prompt_id,
                    "base_url": base_url,
                    "owner": owner,
                    "warnings": list(request.warnings),
                }
            )
            self.queue.queue_prompt(prompt_id)
        return self.views.get_prompt(prompt_id)

    def _mask(self, data: bytes, image):
        """An uploaded inpainting mask as a mode-L image (from L, 1, RGB or RGBA files: white
        repaints). It must have the input image's size: a resized mask would repaint another
        part of the picture than the one drawn, so a different size is an error naming
        mask_image rather than a silent stretch."""
        mask = self.photos.decode_image(data, "mask_image").convert("L")
        if mask.size != image.size:
            raise PromptError(
                f"mask_image is {mask.width}x{mask.height} but input_image is {image.width}x{image.height}: "
                "draw the mask on the input image, at its size.",
                field="mask_image",
            )
        return mask

    def _prompt_owner(self, tune_id: int, request: PromptRequest, principal: Principal) -> str:
        """Who a new prompt belongs to: the owner of its user tune (so the tune's owner sees
        every prompt on it, an admin's included), else (a base model) `principal`. A token
        naming someone else's tune reads as one that does not exist."""
        tune = any_tune(self.store, tune_id, principal)
        owner = principal.owner if tune["model_type"] == "checkpoint" else tune["owner"]
        # Names resolve within the prompt owner's adapters (when it runs, too).
        resolves = principal_for(owner, self.settings.admins)
        for ref in parse_prompt(request.text).references:
            if ref.tune_id is not None:
                named = self.store.get_tune(ref.tune_id)
                if named is not None and named["model_type"] != "checkpoint" and not principal.sees(named["owner"]):
                    raise PromptError(f"{ref.token}: there is no tune {ref.ref}.")
            elif ref.kind in ADAPTER_KINDS:
                adapter = named_adapter(self.store, ref.kind, ref.ref, resolves)
                if adapter is None and self.store.get_adapter(ref.kind, ref.ref) is not None:
                    raise PromptError(f"{ref.token}: there is no {ref.kind} named '{ref.ref}'.")
        return owner

    def _check_base_pack(self, pack_id: int, principal: Principal) -> None:
        """Astria's `base_pack_id` records a pack the caller may read as the prompt's
        provenance; NotFound for one that does not exist or is someone else's."""
        pack = self.store.get_pack(pack_id)
        if pack is None or (pack["owner"] is not None and not principal.sees(pack["owner"])):
            raise NotFound(f"Pack {pack_id} does not exist: list packs to see their ids.", field="base_pack_id")

    def run_prompt(
        self,
        prompt_id: int,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Generate a stored prompt's images and record the outcome; returns `get_prompt`.

        Self-contained: it reads everything from the database and the file store (tokens are
        resolved again), so a job worker in any thread can call it. A prompt that already
        succeeded is returned unchanged. On success the PNGs go to the file store's "outputs"
        and the prompt becomes SUCCESS with its images in one transaction. A StudioError
        (Canceled included) is recorded as FAILED (CANCELED) with its message and re-raised; any
        other error is recorded as FAILED and propagates."""
        prompt = prompt_row(self.store, prompt_id)
        if prompt["status"] == SUCCESS:
            return self.views.get_prompt(prompt_id)
        self.store.update_prompt(prompt_id, status=TRAINING, progress=0.0, message=None, started_at=now())
        saved: list[str] = []  # the outputs this run stored, removed again if it fails
        try:
            params = prompt["params"] or {}
            known = {f.name for f in dataclasses.fields(PromptRequest)}
            request = PromptRequest(
                text=prompt["text"],
                negative_prompt=prompt["negative_prompt"] or "",
                **{k: v for k, v in params.items() if k in known},
            )
            image = None
            if params.get("input_image_path"):
                image = self.photos.decode_image(self.files.read(params["input_image_path"]), "input_image")
            references = [
                (ref["role"], self.photos.decode_image(self.files.read(ref["path"]), "references"))
                for ref in params.get("reference_images") or []
            ]
            mask = None
            if params.get("mask_image_path"):
                mask = self.photos.decode_image(self.files.read(params["mask_image_path"]), "mask_image").convert("L")
            tune = self.resolver.prompt_tune(prompt["tune_id"])
            generate = self.resolver.generate_request(
                tune,
                request,
                seed=params["seed"],
                input_image=image,
                owner=prompt["owner"],
                references=references,
                mask_image=mask,
            )
            if (ran := what_runs(tune, params, generate)) != params:
                self.store.update_prompt(prompt_id, params=ran)
            # Likeness is scored here, on the worker, so the images arrive with their scores; with
            # best_of, the most alike of each image's candidates is kept (studio/services/best_of.py).
            results, scores = generate_best_of(
                self.runtime.generate,
                lambda images: self.likeness.prompt_likeness(prompt, images),
                generate,
                request.best_of,
                on_step=self._progress_writer(prompt_id, on_step),
                should_stop=should_stop,
            )
            # The request's own warnings (fields it ignored) first, then the run's.
            warnings = list(dict.fromkeys([*(prompt["warnings"] or []), *results[0].warnings, *_black_images(results)]))
            images = self._save_outputs(results, saved)
            with self.store.transaction():
                self.store.finish_prompt(prompt_id, images, warnings=warnings)
                for index, record in enumerate(scores):
                    self.store.set_image_likeness(prompt_id, index, record)
        except StudioError as exc:
            self._forget_outputs(saved)
            status = CANCELED if isinstance(exc, Canceled) else FAILED
            self.store.update_prompt(prompt_id, status=status, message=exc.message, completed_at=now())
            raise
        except Exception as exc:
            log.exception("prompt %s failed", prompt_id)
            self._forget_outputs(saved)
            message = f"Internal error ({type(exc).__name__}); the server log has the details."
            self.store.update_prompt(prompt_id, status=FAILED, message=message, completed_at=now())
            raise
        return self.views.get_prompt(prompt_id)

    def _save_outputs(self, results: Sequence[Any], saved: list[str]) -> list[dict[str, Any]]:
        """Put a run's PNGs in the file store's outputs, appending each path to `saved` as it
        lands (so a run that fails later can remove them); returns the image records. A full
        disk raises Unavailable: the OSError itself names server paths, so only the log has it."""
        images = []
        try:
            for index, result in enumerate(results):
                saved.append(self.files.put(result.png, "outputs", ".png"))
                size = {"width": result.image.width, "height": result.image.height}
                images.append({"idx": index, "path": saved[-1], "seed": result.seed, **size})
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            log.error("the images of a prompt could not be saved: %s", exc)
            raise Unavailable(
                "The server's disk is full, so the images could not be saved: "
                "ask its operator to free some space, then run the prompt again."
            ) from None
        return images

    def _forget_outputs(self, paths: list[str]) -> None:
        """Delete the outputs of a failed run that no row refers to (the store is
        content-addressed: an identical image of another prompt shares the file)."""
        try:
            for path in self.store.unreferenced(paths):
                self.files.delete(path)
        except Exception:  # the run's own error is the one to report; this is housekeeping
            log.exception("the images of a failed run could not be removed: %s", paths)

    def list_prompts(
        self,
        tune_id: int | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """`principal`'s prompts newest first (of one tune when given), each as `get_prompt`
        returns it."""
        rows = self.store.list_prompts(
            tune_id=tune_id, limit=limit, offset=offset, before_id=before_id, owner=principal.owner_filter
        )
        return still_there(lambda prompt_id: self.views.get_prompt(prompt_id, principal=principal), rows)

    def _progress_writer(self, prompt_id: int, on_step: Callable[[int, int], None] | None):
        """An `on_step` that records progress on the prompt (at most twice a second, and the
        last step) and then calls the caller's `on_step`."""
        last = [0.0]

        def write(step: int, total: int) -> None:
            moment = time.monotonic()
            if step >= total or moment - last[0] >= 0.5:
                last[0] = moment
                self.store.update_prompt(prompt_id, progress=min(1.0, step / max(total, 1)))
            if on_step is not None:
                on_step(step, total)

        return write

    def cancel_prompt(self, prompt_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Cancel a prompt's generation: a queued (or waiting) prompt is CANCELED at once, a
        running one stops at its next step. Conflict when it already finished."""
        prompt = prompt_row(self.store, prompt_id, principal)
        job = self.store.latest_job("generate", prompt_id)
        if job is not None and job["status"] in RUNNING:
            job = self.store.cancel_job(job["id"])
            if job["status"] == CANCELED:
                self.queue.job_finished(job)
        elif prompt["status"] == QUEUING:  # waiting for its tune: no job yet
            self.store.update_prompt(prompt_id, status=CANCELED, message="canceled")
            self.queue.prompt_finished(prompt_id)
        else:
            raise Conflict(f"Prompt {prompt_id} is {prompt['status']}: there is nothing to cancel.", field="prompt_id")
        return self.views.get_prompt(prompt_id)

    def run_job(self, job: dict, context: JobContext) -> None:
        """The 'generate' job's handler."""
        self.run_prompt(job["subject_id"], on_step=context.on_step, should_stop=context.should_stop)

    def prompt_progress(self, prompt_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """`get_prompt` plus where its generation is: `queued` (its job waits in the queue; a
        QUEUING prompt that is not queued waits for its tune's training), `ahead` (unfinished
        jobs queued before it, 0 once it runs), `step` and `total` (denoising steps done and
        planned, 0 before it starts) and `eta` (ISO time, None when unknown)."""
        prompt = self.views.get_prompt(prompt_id, principal=principal)
        job = self.store.latest_job("generate", prompt_id)
        waiting = job is not None and job["status"] == QUEUING
        return {
            **prompt,
            "queued": waiting,
            "step": job["step"] if job else 0,
            "total": job["total"] if job else 0,
            "eta": job["eta"] if job and job["status"] in RUNNING else None,
            "ahead": self.store.jobs_ahead(job["id"]) if waiting else 0,
        }

    def rerun_prompt(
        self, prompt_id: int, image_idx: int | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Queue a new prompt like `prompt_id`: same tune, text, negative prompt, parameters and
        input image. With `image_idx` it makes one image with that image's seed (the same image
        again, or the effect of what changed since, e.g. another active checkpoint); without, all
        of them with the same seeds. A prompt made from a pack stays linked to its pack prompt.
        Returns the new prompt (`get_prompt`); InvalidInput for an image index out of range."""
        prompt = self.views.get_prompt(prompt_id, principal=principal)
        params = dict(prompt["params"] or {})
        if image_idx is not None:
            if not 0 <= image_idx < len(prompt["seeds"]):
                raise InvalidInput(
                    f"Prompt {prompt_id} has {len(prompt['seeds'])} image(s): pick one of them.", field="image_idx"
                )
            params.update(seed=prompt["seeds"][image_idx], num_images=1)
        known = {f.name for f in dataclasses.fields(PromptRequest)} - {"text", "negative_prompt", "callback"}
        values = {k: v for k, v in params.items() if k in known}
        if params.get("input_image_path"):
            values["input_image"] = self.files.read(params["input_image_path"])
        if params.get("mask_image_path"):
            values["mask_image"] = self.files.read(params["mask_image_path"])
        values["references"] = tuple(
            (ref["role"], self.files.read(ref["path"])) for ref in params.get("reference_images") or []
        )
        request = PromptRequest(text=prompt["text"], negative_prompt=prompt["negative_prompt"] or "", **values)
        return self.create_prompt(
            prompt["tune_id"], request, orig_prompt_id=prompt["orig_prompt_id"], principal=principal
        )

    def delete_prompt(
        self,
        prompt_id: int,
        tune_id: int | None = None,
        *,
        cancel: bool = False,
        wait: float = 30.0,
        principal: Principal = LOCAL_ADMIN,
    ) -> None:
        """Delete a prompt with its images (from disk too, unless another row shows the same
        file), likes and jobs; its pack's counts drop accordingly. NotFound unless the prompt
        belongs to `tune_id` when given. While it waits or runs: refused (Conflict: stop it
        first) unless `cancel`, which cancels it first (its callbacks fire as CANCELED) and
        gives a running one up to `wait` seconds to stop. The UI and the REST API both delete
        with `cancel` (Astria's clients have no cancel call)."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is not None and not principal.sees(prompt["owner"]):
            prompt = None
        if prompt is None or (tune_id is not None and prompt["tune_id"] != tune_id):
            where = f"Tune {tune_id} has no prompt {prompt_id}." if tune_id is not None else ""
            raise NotFound(where or f"Prompt {prompt_id} does not exist.", field="prompt_id")
        if prompt["status"] in RUNNING:
            if not cancel:
                raise Conflict(
                    f"Prompt {prompt_id} is {prompt['status']}: stop it first, then delete.", field="prompt_id"
                )
            try:
                self.cancel_prompt(prompt_id)
            except Conflict:  # it finished meanwhile: nothing to stop
                pass
            job = self.store.latest_job("generate", prompt_id)
            if job is not None and not self.queue.wait_for_job(job["id"], wait):
                raise Conflict(f"Prompt {prompt_id} is still stopping; try again shortly.", field="prompt_id")
        for path in self.store.purge_prompt(prompt_id):
            self.files.delete(path)


def _black_images(results: Sequence[Any]) -> list[str]:
    """A warning when some images came out black, InvalidInput when all did: the model computed
    NaN (a diverged LoRA, an extreme weight or cfg_scale), which the pipeline turns into zeros,
    so a black square is never a result worth a SUCCESS."""
    black = [index for index, result in enumerate(results) if not np.asarray(result.image).any()]
    if not black:
        return []
    if len(black) == len(results):
        raise InvalidInput(
            "The model drew only black images (its numbers overflowed to NaN): lower the LoRA "
            "weights or cfg_scale, or leave out a LoRA that may be broken.",
            field="text",
        )
    numbers = ", ".join(str(index + 1) for index in black)
    return [
        f"Image{'s' if len(black) > 1 else ''} {numbers} came out black (the model's numbers overflowed to NaN): run it again."
    ]


def what_runs(tune: dict[str, Any], params: dict[str, Any], generate: Any) -> dict[str, Any]:
    """A prompt's stored params with the steps and size that run: mock mode (a branch=fast tune)
    caps them whatever the request asked, and the prompt reports what its PNGs say."""
    if tune.get("branch") != "fast":
        return params
    return {**params, "steps": generate.num_inference_steps, "w": generate.width, "h": generate.height}
