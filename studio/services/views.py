"""What the studio shows of its records: a prompt with its images, and the Astria JSON shapes
of tunes, prompts and packs (the REST API returns them and callbacks post them), with the
absolute URLs of public files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storage import FileStore, Store
from studio import likeness
from studio.config import Settings
from studio.domain import RUNNING
from studio.errors import NotFound
from studio.principals import LOCAL_ADMIN, Principal
from studio.services.lookups import any_tune, prompt_row, still_there
from studio.services.models import BaseModels, is_embedded

# A pack's or pack prompt's ranking fields (see studio/packs.py), as the API shows them.
_RANKING = ("likes_count", "images_shown", "runs", "score", "like_rate", "rating")
# ... and its likeness beside it (studio/likeness.py: the mean, the rate, the blend).
_RANKING += ("likeness_mean", "likeness_rate", "likeness_score", "blended_score")
# Generation fields a prompt's JSON shows from its stored params (Astria's names).
_PROMPT_PARAMS = (
    "num_images",
    "seed",
    "steps",
    "cfg_scale",
    "w",
    "h",
    "scheduler",
    "denoising_strength",
    "controlnet",
    "controlnet_conditioning_scale",
    "super_resolution",
    "face_correct",
    "face_swap",
    "aspect_ratio",
    "ar",
    "resolution",
    "use_lpw",
    "lora_scale",
    "base_pack_id",
    "theme",
    "color_grading",
    "film_grain",
    "best_of",
)


class Views:
    def __init__(self, settings: Settings, store: Store, files: FileStore, models: BaseModels):
        self.settings = settings
        self.store = store
        self.files = files
        self.models = models

    def get_prompt(self, prompt_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """The prompt row plus `images` (file-store paths, in order) and, parallel to them,
        `seeds` and `likeness` (studio/likeness.py records; None: not scored)."""
        prompt = prompt_row(self.store, prompt_id, principal)
        images = self.store.prompt_images(prompt_id)
        return {
            **prompt,
            "warnings": prompt.get("warnings") or [],
            "images": [i["path"] for i in images],
            "seeds": [i["seed"] for i in images],
            "likeness": [i["likeness"] for i in images],
        }

    def tune_json(
        self, tune_id: int, base_url: str | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """A tune as the API returns it and callbacks post it: Astria's fields (id, title, name,
        token, base_tune_id, args, steps, face_crop, training_face_correct, ckpt_url(s), eta,
        trained_at, started_training_at, expires_at, created_at, branch, model_type, updated_at,
        url, orig_images) plus status, progress, message, characteristics, warnings and the
        checkpoints (step, loss, sample URL, its likeness, whether it is active, whether it is
        the `best_step`: the sample that looks most like the subject) with the active step,
        `use_best_step` (prompts follow the best step, the default; false once the owner picked
        a step) and `best_step_note` (why no step is marked best, or which one prompts use).
        Also each training photo's `captions`, the face-focused loss's weights and the caption
        dropout of a LoRA tune, and its `likeness_curve` (each checkpoint's step and score).
        `orig_images` (the tune's photos) and `ckpt_url` (its LoRA in kohya layout, once trained)
        are URLs of keyed API routes, not of the public image area: photos and weights are
        private (`tune_photo_file`, `lora_file`)."""
        tune = any_tune(self.store, tune_id, principal)
        if tune["model_type"] == "checkpoint":
            # Astria's clients post prompts to gallery base tunes (690204…): they read as tunes.
            model = self.models.base_model(tune_id)
            extra = {"embedded": model["embedded"], "available": model["available"]}
        else:
            extra = {}
        args = tune["args"] or {}
        training = args.get("training") or {}
        job = self.store.latest_job("train", tune_id)
        base = self.public_base_url(base_url or tune.get("base_url"))
        checkpoints = self.store.tune_checkpoints(tune_id)
        photos = self.store.tune_photos(tune_id)
        best = likeness.best_step(checkpoints)
        ckpt_url = f"{base}/tunes/{tune_id}/lora.safetensors" if tune.get("kohya_path") else None
        return {
            "id": tune["id"],
            "title": tune["title"],
            "name": tune["name"],
            "token": tune["token"],
            "base_tune_id": tune["base_tune_id"],
            "model_type": tune["model_type"],
            "branch": tune["branch"],
            "family": tune["family"],
            "args": args or None,
            "steps": training.get("max_train_steps"),
            "face_crop": args.get("face_crop"),
            "training_face_correct": bool(args.get("face_restore")),
            "characteristics": tune["characteristics"] or {},
            "callback": tune["callback"],
            "status": tune["status"],
            "progress": tune["progress"],
            "message": tune["message"],
            "warnings": args.get("warnings", []),
            "eta": job["eta"] if job and job["status"] in RUNNING else tune["trained_at"],
            # Photos and weights are private: these routes need the API key (studio/api/routes.py).
            "ckpt_url": ckpt_url,
            "ckpt_urls": [ckpt_url] if ckpt_url else [],
            "orig_images": [f"{base}/tunes/{tune_id}/photos/{p['id']}" for p in photos],
            # each training photo's caption (studio/captions.py): what the LoRA reads beside it
            "captions": [{"photo_id": p["id"], "caption": p["caption"]} for p in photos],
            "face_loss_weight": training.get("face_loss_weight"),
            "background_loss_weight": training.get("background_loss_weight"),
            "caption_dropout": training.get("caption_dropout"),
            "trained_at": tune["trained_at"],
            "started_training_at": tune["started_training_at"],
            "expires_at": tune["expires_at"],
            "created_at": tune["created_at"],
            "updated_at": tune["updated_at"],
            "url": f"{base}/tunes/{tune['id']}",
            "active_step": tune["active_step"],
            "best_step": best,
            "use_best_step": bool(tune.get("use_best_step", 1)),
            "best_step_note": best_step_note(tune, checkpoints, best, demo=self._on_demo(tune)),
            # likeness by step, for choosing a checkpoint (None: its sample showed no face)
            "likeness_curve": [{"step": c["step"], "score": (c["likeness"] or {}).get("score")} for c in checkpoints],
            "checkpoints": [
                {
                    "step": c["step"],
                    "loss": c["loss"],
                    "sample": self.file_url(c["sample_path"], base) if c["sample_path"] else None,
                    "likeness": c["likeness"],
                    "active": c["step"] == tune["active_step"],
                    "best": c["step"] == best,
                }
                for c in checkpoints
            ],
            **extra,
        }

    def _on_demo(self, tune: Mapping[str, Any]) -> bool:
        """Whether a tune's base model is an embedded demo (its samples are textures)."""
        if tune.get("branch") == "fast":
            return True
        base_id = tune.get("base_tune_id")
        try:
            base = self.models.base_model(base_id) if base_id else self.models.default_base_model()
        except NotFound:
            return False
        return is_embedded(base)

    def prompt_json(
        self,
        prompt_id: int,
        base_url: str | None = None,
        user: str | None = None,
        *,
        tune_id: int | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """A prompt as the API returns it and callbacks post it: Astria's fields (id, tune_id,
        text, negative_prompt, callback, cfg_scale, steps, seed, num_images, w, h, scheduler…,
        trained_at, started_training_at, created_at, updated_at, url, and `images` as absolute
        URLs) plus status, progress, message, warnings, and per image `seeds` and `likeness`,
        with `likes_count` and whether `user` liked it (`liked`). NotFound unless the prompt
        belongs to `tune_id` when given (`GET /tunes/:tune_id/prompts/:id`)."""
        prompt = self.get_prompt(prompt_id, principal=principal)
        if tune_id is not None and prompt["tune_id"] != tune_id:
            raise NotFound(f"Tune {tune_id} has no prompt {prompt_id}.", field="prompt_id")
        params = prompt["params"] or {}
        images = self.store.prompt_images(prompt_id)
        # A prompt created with its tune (prompts_attributes, packs) has the tune's base URL.
        tune = self.store.get_tune(prompt["tune_id"]) or {}
        base = self.public_base_url(base_url or prompt.get("base_url") or tune.get("base_url"))
        return {
            "id": prompt["id"],
            "tune_id": prompt["tune_id"],
            "text": prompt["text"],
            "negative_prompt": prompt["negative_prompt"],
            "callback": prompt["callback"],
            **{name: params.get(name) for name in _PROMPT_PARAMS},
            "orig_prompt_id": prompt["orig_prompt_id"],
            "status": prompt["status"],
            "progress": prompt["progress"],
            "message": prompt["message"],
            "warnings": prompt["warnings"],
            "images": [self.file_url(image["path"], base) for image in images],
            "seeds": [image["seed"] for image in images],
            "likeness": [image["likeness"] for image in images],
            "likes_count": prompt.get("likes_count") or 0,
            "liked": bool(user and self.store.liked_by(prompt_id, user)),
            "trained_at": prompt["completed_at"],
            "started_training_at": prompt["started_at"],
            "created_at": prompt["created_at"],
            "updated_at": prompt["updated_at"],
            "url": f"{base}/tunes/{prompt['tune_id']}/prompts/{prompt['id']}",
        }

    def pack_json(
        self, pack: Mapping[str, Any], base_url: str | None = None, *, with_prompts: bool = False
    ) -> dict[str, Any]:
        """A pack (as `get_pack` or `list_packs` give it) in Astria's shape: id, slug, title,
        token, base_tune_id, model_type, preset, created_at, updated_at, public_at, unlisted_at
        and cover_url, plus description, classes and the ranking (likes_count, images_shown,
        runs, score, like_rate, rating). `with_prompts` adds `costs` ({class: {cost, num_images}},
        cost 0: nothing is billed here) and `prompts_per_class`: each class's templates in
        order with id, text, negative_prompt, num_images, `images` (the example image's URL)
        and their own ranking."""
        base = self.public_base_url(base_url)
        keys = ("id", "slug", "title", "description", "token", "base_tune_id", "model_type", "preset", "classes")
        out = {key: pack[key] for key in (*keys, *_RANKING)}
        out.update(
            created_at=pack["created_at"],
            updated_at=pack["updated_at"],
            public_at=pack["created_at"] if pack["public"] else None,
            unlisted_at=pack["updated_at"] if pack["unlisted"] else None,
            cover_url=self.file_url(pack["cover_path"], base) if pack["cover_path"] else None,
        )
        if not with_prompts:
            return out
        per_class = pack["prompts_per_class"]
        out["costs"] = {
            name: {"cost": 0, "num_images": sum(p["num_images"] for p in ps)} for name, ps in per_class.items()
        }
        out["prompts_per_class"] = {
            name: [
                {
                    **{key: p[key] for key in ("id", "text", "negative_prompt", "num_images", "params", *_RANKING)},
                    "images": [self.file_url(p["image_path"], base)] if p["image_path"] else [],
                }
                for p in prompts
            ]
            for name, prompts in per_class.items()
        }
        return out

    def public_base_url(self, base_url: str | None = None) -> str:
        """Where clients reach this studio: STUDIO_PUBLIC_URL when set, else `base_url` (that
        of the request that asked, or that created the tune/prompt), else the host and port it
        listens on."""
        if self.settings.public_url:
            return self.settings.public_url
        if base_url:
            return base_url.rstrip("/")
        return f"http://{self.settings.host}:{self.settings.port}"

    def file_url(self, relative: str, base_url: str | None = None) -> str:
        """The absolute URL of a stored file in a public area (outputs, covers, samples):
        `/images/<sha256><suffix>`, served by the REST API without a key (the content hash is
        the unguessable part, as on Astria's storage); ValueError for a private area (photos,
        weights…)."""
        path = self.files.path(relative)
        if not any(path.is_relative_to(folder) for folder in self.files.public_dirs()):
            raise ValueError(f"{relative} is not in a public file area")
        return f"{self.public_base_url(base_url)}/images/{path.name}"

    def public_path(self, relative: str) -> Path:
        """The absolute path of a stored file in a public area (outputs, covers, samples), for
        a UI that shows it; ValueError for a private area (photos, weights…)."""
        path = self.files.path(relative)
        if not any(path.is_relative_to(folder) for folder in self.files.public_dirs()):
            raise ValueError(f"{relative} is not in a public file area")
        return path

    def public_image(self, name: str) -> Path:
        """The stored file that `file_url` named `/images/<name>`: only a content-hash name
        (`<sha256>.png|.jpg|.webp`) in a public area (outputs, covers, samples), else NotFound."""
        if not re.fullmatch(r"[0-9a-f]{64}\.(png|jpg|jpeg|webp)", name):
            raise NotFound("There is no such image.", field="name")
        for folder in self.files.public_dirs():
            path = folder / name[:2] / name
            if path.is_file():
                return path
        raise NotFound("There is no such image (it may have been deleted with its tune).", field="name")

    def prompts_json(
        self,
        tune_id: int | None = None,
        *,
        limit: int = 20,
        offset: int = 0,
        before_id: int | None = None,
        base_url: str | None = None,
        user: str | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """Prompts newest first (of one tune, or all) that `principal` may see, as `prompt_json`
        shows them to `user`."""
        if tune_id is not None:
            any_tune(self.store, tune_id, principal)
        rows = self.store.list_prompts(
            tune_id=tune_id, limit=limit, offset=offset, before_id=before_id, owner=principal.owner_filter
        )
        return still_there(lambda prompt_id: self.prompt_json(prompt_id, base_url, user, principal=principal), rows)


def best_step_note(tune: Mapping[str, Any], checkpoints: list[dict[str, Any]], best: int | None, *, demo: bool) -> str:
    """One sentence on the tune's best step for people: which step prompts use and why, or why
    no step is marked best (no sample showed a face, or the samples were not scored); "" for a
    tune without checkpoint samples."""
    if not any(c["sample_path"] for c in checkpoints):
        return ""
    active = tune["active_step"]
    if best is not None:
        if tune.get("use_best_step", 1):
            return f"Prompts use the best step by likeness, {best}."
        return f"Prompts use step {active}, chosen by hand; the best step by likeness is {best}."
    textures = " (the embedded demo models draw textures, not faces)" if demo else ""
    if any(c["likeness"] is not None for c in checkpoints):
        why = f"no checkpoint sample shows a face{textures}"
    elif not likeness.scores_subject(tune):
        why = f"samples of a {tune['name']} are not scored (the face backends find human faces only)"
    else:
        why = "the samples were not scored for likeness (no face found in the tune's photos to compare with)"
    return f"No step is marked best: {why}; prompts use step {active}."
