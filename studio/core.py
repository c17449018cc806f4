"""Studio: the one application layer. The UI and the REST API call only this.

A `Studio` owns the store, the file store and (lazily) the engine. It is built once in
`app.py` with `Studio.open(settings)` and passed to whatever needs it; nothing here is global.
Domain logic lives in the modules named after it (prompts, inspection, training, packs, jobs);
the methods here tie those to storage and turn bad input into `StudioError`s.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import io
import json
import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from storage import FileStore, Store
from storage.db import CANCELED, FAILED, FINISHED, QUEUING, SUCCESS, TRAINING, now
from studio import likeness, packs, zerogpu
from studio.config import Settings
from studio.domain import ADAPTER_KINDS
from studio.errors import (
    Busy,
    Canceled,
    Conflict,
    InvalidInput,
    ModelNotAvailable,
    NotFound,
    StudioError,
    TooLarge,
    Unavailable,
)
from studio.faces import open_analyzer, resolve_backend
from studio.inspection import decode_photo, face_crop
from studio.jobs import CallbackSender, JobContext, JobRunner, Worker, check_callback_url
from studio.likeness import reference_embedding
from studio.packs import PackPromptRequest, PackRequest
from studio.prompts import (
    ParsedPrompt,
    PromptError,
    PromptRequest,
    Reference,
    add_trigger_words,
    format_weight,
    parse_prompt,
)
from studio.training import (
    KOHYA_NAME,
    RESUME_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    ResumeStateError,
    TrainedLora,
    TrainingStopped,
    export_kohya,
    train_lora,
)
from studio.tune_requests import (
    BRANCH_FAMILY,
    PromptSpec,
    TrainSettings,
    TuneRequest,
    check_request,
    plan_training,
    resolved_values,
    tune_request_from_fields,
)

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_SOURCE = "embedded:demo"
PHOTO_SET_CACHE = 32  # photo sets whose inspection is kept in memory (inspect_photo_set)
MOCK_STEPS = 4  # inference steps of prompts on branch=fast (mock mode) tunes, at most
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
)


class Studio:
    def __init__(self, settings: Settings, store: Store, files: FileStore):
        self.settings = settings
        self.store = store
        self.files = files
        self._engine = None
        self._engine_lock = threading.Lock()
        self._face_analyzer = None
        self._face_analyzer_lock = threading.Lock()
        self._likeness_analyzers: dict[str, Any] = {}  # other backends that made tune references
        self._inspection_pool = None  # worker processes for inspecting sets (inspect_set)
        # Stored photos never change, so a set's inspection is kept by (photo ids, class): the
        # Photos and Tunes tabs redraw the same sets often, and each photo costs ~0.3 s of CPU.
        self._photo_set_cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._photo_set_lock = threading.Lock()
        # The job worker's thread starts only in `start_worker`; until then `run_pending` runs
        # queued jobs in the caller's thread (tests, scripts).
        self.worker: JobRunner = Worker(
            store,
            {"train": self._train_tune, "generate": self._generate_prompt},
            on_finished=self._job_finished,
            housekeeping=self.sweep_expired,
        )
        # On a ZeroGPU Space generations run through spaces.GPU (studio/zerogpu.py).
        self.zero_gpu = zerogpu.active(settings.zero_gpu)
        self._gpu_generate = None  # the engine's generate, wrapped for ZeroGPU when it is on
        self.callbacks = CallbackSender(allow_private=settings.allow_private_urls)

    @classmethod
    def open(cls, settings: Settings) -> Studio:
        """Open (creating if needed) the studio under `settings.home`: the database, the file
        store and the base-model gallery. Cheap: no model is loaded here."""
        home = settings.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        store = Store(home / "db" / "studio.db")
        files = FileStore(home / "files")
        studio = cls(settings, store, files)
        studio._sync_gallery()
        studio._load_starter_packs()
        return studio

    def close(self) -> None:
        """Stop the job worker (a running job goes back to the queue), send the callbacks
        already queued, then close the database."""
        self.worker.stop()
        self.callbacks.close()
        if self._inspection_pool is not None:
            self._inspection_pool.close()
        self.store.close()

    # -- paths -------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    @property
    def demo_model_dir(self) -> Path:
        return self.home / "models" / "demo"

    def private_paths(self) -> list[Path]:
        """Everything under STUDIO_HOME that must never be served (database, photos, weights…)."""
        public = {p.name for p in self.files.public_dirs()}
        private = [p for p in self.home.iterdir() if p != self.files.root]
        private += [p for p in self.files.root.iterdir() if p.name not in public]
        return private

    # -- base models -------------------------------------------------------------------------

    def _sync_gallery(self) -> None:
        for model in json.loads((ASSETS / "base_models.json").read_text()):
            self.store.upsert_base_model(model)

    def prepare(self) -> None:
        """Do the slow start-up work: build the embedded demo model on first start. A default
        base model (STUDIO_BASE_MODEL) that cannot load here is logged, not raised: the studio
        still serves the demo model and the gallery, and prompts on it fail with the reason."""
        from studio.demo_model import ensure_demo_model

        ensure_demo_model(self.demo_model_dir)
        base = self.default_base_model()
        reason = self._why_not_here(base) if base["source"] != DEMO_SOURCE else None
        if reason:
            log.warning(
                "STUDIO_BASE_MODEL=%s cannot be used: %s, or set it to 'demo'.", self.settings.base_model, reason
            )

    def base_models(self) -> list[dict[str, Any]]:
        """The gallery, each entry with `available`: usable now without a download."""
        return [
            {**m, "embedded": bool(m["embedded"]), "available": self._available(m)}
            for m in self.store.list_base_models()
        ]

    def base_model(self, model_id: int) -> dict[str, Any]:
        for model in self.base_models():
            if model["id"] == model_id:
                return model
        raise NotFound(f"Base model {model_id} is not in the gallery.", field="base_tune_id")

    def default_base_model(self) -> dict[str, Any]:
        """The model STUDIO_BASE_MODEL names: 'demo', a gallery id, or a hub id / local path."""
        wanted = self.settings.base_model
        models = self.base_models()
        for model in models:
            if wanted == "demo" and model["source"] == DEMO_SOURCE:
                return model
            if wanted in (str(model["id"]), model["source"]):
                return model
        model = {"id": None, "title": wanted, "family": "sd15", "source": wanted, "embedded": False}
        return {**model, "available": self._available(model)}

    def model_path(self, model: dict[str, Any]) -> str:
        """What the engine loads for a base model: the demo folder, or the model's own source."""
        return str(self.demo_model_dir) if model["source"] == DEMO_SOURCE else model["source"]

    def _available(self, model: dict[str, Any]) -> bool:
        source = model["source"]
        if source == DEMO_SOURCE:
            return True
        if model["family"] not in ("sd15", "sdxl"):
            return False
        if Path(source).exists():
            return True
        if _local_source(source):
            return False
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(source, "model_index.json")
        except ValueError:  # not a valid hub id either
            return False
        return isinstance(cached, str)

    def _why_not_here(self, model: dict[str, Any]) -> str | None:
        """Why base model `model` cannot be loaded on this machine now, or None when it can (or
        the hub may still send it): a local path that does not exist, or a hub model that is not
        downloaded while the hub is switched off."""
        from huggingface_hub import constants

        if model["available"]:
            return None
        source = model["source"]
        name = source if model["title"] == source else f"{model['title']} ({source})"
        if _local_source(source):
            return f"{name} does not exist on this machine: check the path"
        if constants.HF_HUB_OFFLINE:
            return (
                f"{name} is not downloaded and the hub is switched off (HF_HUB_OFFLINE): "
                "download it on a connected machine"
            )
        return None

    # -- api keys ----------------------------------------------------------------------------

    def create_api_key(self, owner: str) -> str:
        """Make a new API key for `owner` and return it; only its hash is kept, so this is the
        one time it can be shown."""
        import secrets

        from studio.api import key_hash

        owner = owner.strip()
        if not owner or len(owner) > 64:
            raise InvalidInput("Give the key an owner name of 1 to 64 characters.", field="owner")
        key = "sk_" + secrets.token_urlsafe(32)
        self.store.add_api_key(f"key:{owner}", key_hash(key))
        return key

    def list_api_keys(self) -> list[dict[str, Any]]:
        return self.store.list_api_keys()

    def revoke_api_key(self, key_id: int) -> None:
        self.store.delete_api_key(key_id)

    # -- packs and likes ---------------------------------------------------------------------

    def create_pack(self, request: PackRequest) -> dict[str, Any]:
        """Create a pack without prompts yet. Raises InvalidInput for a bad field, NotFound for
        a base model not in the gallery, Conflict when the slug is taken."""
        request = packs.check_pack(request)
        self._check_pack_base(request.base_tune_id)
        if self.store.find_pack_by_slug(request.slug):
            raise Conflict(f"A pack with the slug '{request.slug}' exists: choose another slug.", field="slug")
        return self.get_pack(self.store.add_pack(packs.pack_columns(request)))

    def update_pack(self, pack_id: int | str, **changes: Any) -> dict[str, Any]:
        """Change some of a pack's own fields (those of `PackRequest`); returns the pack."""
        pack = self._pack_row(pack_id)
        pack_id = pack["id"]
        unknown = set(changes) - {f.name for f in dataclasses.fields(PackRequest)}
        if unknown:
            raise InvalidInput(f"Packs have no field(s) {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
        request = packs.check_pack(dataclasses.replace(packs.pack_request(pack), **changes))
        self._check_pack_base(request.base_tune_id)
        other = self.store.find_pack_by_slug(request.slug)
        if other and other["id"] != pack_id:
            raise Conflict(f"Another pack has the slug '{request.slug}': choose another slug.", field="slug")
        self.store.update_pack(pack_id, **packs.pack_columns(request))
        return self.get_pack(pack_id)

    def delete_pack(self, pack_id: int | str) -> None:
        """Delete a pack and its prompts. Prompts already made from it keep their images and
        likes; they no longer count for any pack."""
        pack = self._pack_row(pack_id)
        pack_id = pack["id"]
        paths = [p["image_path"] for p in self.store.list_pack_prompts(pack_id)] + [pack["cover_path"]]
        self.store.delete_pack(pack_id)
        self._forget_pack_images(paths)

    def add_pack_prompt(
        self, pack_id: int | str, request: PackPromptRequest, image: bytes | None = None
    ) -> dict[str, Any]:
        """Add a template at the end of its class, with an optional example image (PNG, JPEG or
        WEBP bytes). The pack's cover becomes the image of the last prompt added that has one,
        and the class joins the pack's classes. Returns the pack prompt."""
        pack = self._pack_row(pack_id)
        pack_id = pack["id"]
        columns = packs.check_pack_prompt(request)
        image_path = self._store_pack_image(image) if image is not None else None
        with self.store.transaction():
            pack_prompt_id = self.store.add_pack_prompt({"pack_id": pack_id, **columns, "image_path": image_path})
            if columns["class_name"] not in pack["classes"]:
                self.store.update_pack(pack_id, classes=[*pack["classes"], columns["class_name"]])
            self.store.update_pack(pack_id, cover_path=self.store.pack_cover(pack_id))
        return self.get_pack_prompt(pack_prompt_id)

    def add_prompt_to_pack(self, pack_id: int | str, prompt_id: int, image_idx: int = 0) -> dict[str, Any]:
        """Astria's way of authoring a pack: turn an existing prompt into a template of its
        tune's class. The tune's "token class" words become `{{token}} {{name}}`, its generation
        parameters (not its seed) are kept, and its image `image_idx` becomes the example image,
        so the pack's cover becomes that image. Returns the pack prompt."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        tune = self.store.get_tune(prompt["tune_id"])
        images = self.store.prompt_images(prompt_id)
        if not 0 <= image_idx < len(images):
            raise InvalidInput(
                f"Prompt {prompt_id} has {len(images)} image(s) to take the example from.", field="image_idx"
            )
        subject = rf"\b{re.escape(tune['token'] or 'ohwx')}\s+{re.escape(tune['name'] or '')}\b"
        params = {k: v for k, v in (prompt["params"] or {}).items() if k in packs.PARAM_NAMES and k != "seed"}
        request = PackPromptRequest(
            class_name=tune["name"],
            text=re.sub(subject, "{{token}} {{name}}", prompt["text"]),
            negative_prompt=prompt["negative_prompt"] or "",
            num_images=(prompt["params"] or {}).get("num_images", len(images)),
            **{k: v for k, v in params.items() if v is not None},
        )
        return self.add_pack_prompt(pack_id, request, image=self.files.read(images[image_idx]["path"]))

    def edit_pack_prompt(
        self, pack_prompt_id: int, request: PackPromptRequest, image: bytes | None = None
    ) -> dict[str, Any]:
        """Replace a template's class, text and parameters (and its example image when `image`
        is given). A prompt moved to another class goes to the end of it."""
        current = self._pack_prompt_row(pack_prompt_id)
        pack = self._pack_row(current["pack_id"])
        columns = packs.check_pack_prompt(request)
        if image is not None:
            columns["image_path"] = self._store_pack_image(image)
        with self.store.transaction():
            if columns["class_name"] != current["class_name"]:
                last = [p["position"] for p in self.store.list_pack_prompts(pack["id"], columns["class_name"])]
                columns["position"] = max(last, default=-1) + 1
                if columns["class_name"] not in pack["classes"]:
                    self.store.update_pack(pack["id"], classes=[*pack["classes"], columns["class_name"]])
            self.store.update_pack_prompt(pack_prompt_id, **columns)
            self.store.update_pack(pack["id"], cover_path=self.store.pack_cover(pack["id"]))
        if image is not None:
            self._forget_pack_images([current["image_path"]])
        return self.get_pack_prompt(pack_prompt_id)

    def reorder_pack_prompts(
        self, pack_id: int | str, class_name: str, pack_prompt_ids: list[int]
    ) -> list[dict[str, Any]]:
        """Put one class's prompts in the order given; `pack_prompt_ids` must name each of them
        once. Returns the class's prompts in their new order."""
        pack_id = self._pack_row(pack_id)["id"]
        current = {p["id"] for p in self.store.list_pack_prompts(pack_id, class_name)}
        if len(pack_prompt_ids) != len(current) or set(pack_prompt_ids) != current:
            raise InvalidInput(
                f"Give each of the {len(current)} '{class_name}' prompts of pack {pack_id} once: {sorted(current)}.",
                field="pack_prompt_ids",
            )
        self.store.reorder_pack_prompts(pack_id, class_name, pack_prompt_ids)
        return [packs.scored(p) for p in self.store.list_pack_prompts(pack_id, class_name)]

    def remove_pack_prompt(self, pack_prompt_id: int) -> None:
        """Remove a template; its likes leave the pack's counts and the cover is chosen again."""
        pack_prompt = self._pack_prompt_row(pack_prompt_id)
        with self.store.transaction():
            self.store.delete_pack_prompt(pack_prompt_id)
            self.store.update_pack(pack_prompt["pack_id"], cover_path=self.store.pack_cover(pack_prompt["pack_id"]))
        self._forget_pack_images([pack_prompt["image_path"]])

    def get_pack(self, pack_id: int | str) -> dict[str, Any]:
        """A pack by id or slug, scored, with `prompts_per_class`: each class's templates in
        order, each scored by its own likes and images shown (and its likeness figures)."""
        pack = self._pack_row(pack_id)
        per_class: dict[str, list[dict[str, Any]]] = {name: [] for name in pack["classes"]}
        for prompt in self.store.list_pack_prompts(pack["id"]):
            per_class.setdefault(prompt["class_name"], []).append(likeness.with_stats(packs.scored(prompt)))
        return {**likeness.with_stats(packs.scored(packs.pack_view(pack))), "prompts_per_class": per_class}

    def get_pack_prompt(self, pack_prompt_id: int) -> dict[str, Any]:
        return likeness.with_stats(packs.scored(self._pack_prompt_row(pack_prompt_id)))

    def list_packs(
        self, *, public: bool | None = None, listed: bool | None = None, blend: bool = False
    ) -> list[dict[str, Any]]:
        """Packs ranked by their like rate's Wilson lower bound (see studio/packs.py), each with
        `score`, `like_rate` and `rating` ('new', 'few ratings' or None), and its likeness
        figures (`likeness_mean`, `likeness_rate`, `likeness_score`, `blended_score`; see
        studio/likeness.py); `blend` ranks by `blended_score` instead."""
        rows = [packs.pack_view(p) for p in self.store.list_packs(public=public, listed=listed)]
        return likeness.rank_blended(map(packs.scored, rows)) if blend else _with_likeness(packs.rank(rows))

    def pack_prompt_rankings(
        self, pack_id: int | None = None, class_name: str | None = None, *, blend: bool = False
    ) -> list[dict[str, Any]]:
        """Pack prompts (of one pack, or of all) ranked like packs, by their own likes (`blend`:
        by likes and likeness), each with its likeness figures."""
        if pack_id is not None:
            self._pack_row(pack_id)
        rows = self.store.list_pack_prompts(pack_id, class_name)
        return likeness.rank_blended(map(packs.scored, rows)) if blend else _with_likeness(packs.rank(rows))

    def prompt_rankings(self, tune_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Prompts by number of likes, most first (ties: newest first)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be 1 to 1000.", field="limit")
        return self.store.top_prompts(tune_id=tune_id, limit=limit)

    def lint_pack(self, pack_id: int | str, characteristics: dict[str, Any] | None = None) -> list[packs.LintIssue]:
        """What would go wrong running the pack (see `packs.lint`), errors first."""
        pack = self._pack_row(pack_id)
        issues = packs.lint(pack, self.store.list_pack_prompts(pack["id"]), characteristics)
        return sorted(issues, key=lambda issue: issue.level != "error")

    def like_prompt(self, prompt_id: int, user: str, image_idx: int | None = None) -> dict[str, Any]:
        """Record `user`'s like of a prompt (or of one of its images). Liking twice changes
        nothing. A prompt made from a pack also counts for its pack prompt and pack. `user` is
        an opaque id: the API key's owner, the login name, or a browser id. Returns
        {prompt_id, image_idx, liked, likes_count}."""
        user, index = self._like_target(prompt_id, user, image_idx)
        self.store.add_like(prompt_id, user, index)
        return {"prompt_id": prompt_id, "image_idx": image_idx, "liked": True, "likes_count": self._likes(prompt_id)}

    def unlike_prompt(self, prompt_id: int, user: str, image_idx: int | None = None) -> dict[str, Any]:
        """Take back `user`'s like (a no-op when there is none); returns what like_prompt does."""
        user, index = self._like_target(prompt_id, user, image_idx)
        self.store.remove_like(prompt_id, user, index)
        return {"prompt_id": prompt_id, "image_idx": image_idx, "liked": False, "likes_count": self._likes(prompt_id)}

    def export_pack(self, pack_id: int | str) -> str:
        """The pack as one JSON document (format in `packs.pack_document`), its cover and
        example images embedded as base64 data URLs."""
        pack = self._pack_row(pack_id)
        prompts = self.store.list_pack_prompts(pack["id"])
        images = {}
        for path in {pack["cover_path"], *(p["image_path"] for p in prompts)} - {None}:
            try:
                images[path] = packs.data_url(self.files.read(path), Path(path).suffix)
            except FileNotFoundError:
                log.warning("pack %s: image %s is missing from the file store; exported without it", pack["id"], path)
        return json.dumps(packs.pack_document(pack, prompts, images), indent=2, ensure_ascii=False)

    def import_pack(self, source: str | bytes | Path | dict, *, slug: str | None = None) -> dict[str, Any]:
        """Create a pack from a pack file: a Path (its images may be sibling files named in
        it), JSON text or bytes, or the parsed object. `slug` imports it under another slug.
        Raises InvalidInput for a bad file, Conflict when the slug is taken."""
        folder = source.parent if isinstance(source, Path) else None
        document = packs.read_document(source)
        request, prompts, prompt_images, cover = packs.parse_document(document)
        request = packs.check_pack(dataclasses.replace(request, slug=slug)) if slug else request
        self._check_pack_base(request.base_tune_id)
        if self.store.find_pack_by_slug(request.slug):
            raise Conflict(f"A pack with the slug '{request.slug}' exists: import with another slug.", field="slug")
        # Read and check every image before storing any, so a bad file leaves nothing behind.
        blobs = {ref: packs.image_bytes(ref, folder) for ref in {*prompt_images, cover} - {None}}
        for data in blobs.values():
            packs.image_suffix(data, "image")
        stored = {ref: self._store_pack_image(data) for ref, data in blobs.items()}
        with self.store.transaction():
            pack_id = self.store.add_pack(packs.pack_columns(request))
            for prompt, ref in zip(prompts, prompt_images):
                columns = packs.check_pack_prompt(prompt)
                self.store.add_pack_prompt({"pack_id": pack_id, **columns, "image_path": stored.get(ref)})
            self.store.update_pack(pack_id, cover_path=stored[cover] if cover else self.store.pack_cover(pack_id))
        return self.get_pack(pack_id)

    def tune_from_pack(
        self,
        pack_id: int | str,
        photos: list[tuple[str, bytes]] | None,
        name: str,
        title: str,
        characteristics: Mapping[str, Any] | None = None,
        *,
        photo_ids: list[int] | None = None,
        prompt_ids: Sequence[int] | None = None,
        callback: str | None = None,
        prompt_callback: str | None = None,
        prompts_callback: str | None = None,
        branch: str | None = None,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """Astria's `POST /p/:id/tunes`: a tune of class `name` from `photos` ((filename, bytes)
        uploads) and/or stored `photo_ids`, with the pack's model_type, base model, preset, token
        and training args, queued to train (`create_tune`, so a title in use returns that tune);
        its prompts
        (one per pack prompt of that class, or of `prompt_ids`, templates filled from the token,
        class and `characteristics`) are created with it and run once it is trained, each
        remembering its pack prompt; `prompts_callback` is called once they are all done.
        Raises InvalidInput when the pack has no prompts for the class or its prompts have lint
        errors, before anything is stored. Returns the tune."""
        pack = self._pack_row(pack_id)
        name = packs.check_class_name(name)
        runs = self._pack_runs(pack, name, pack["token"], characteristics, prompt_ids)
        specs = tuple(
            PromptSpec(
                text=request.text,
                negative_prompt=request.negative_prompt or None,
                params={k: v for k, v in request.params().items() if v is not None},
                callback=prompt_callback,
                orig_prompt_id=pack_prompt_id,
            )
            for pack_prompt_id, request in runs
        )
        request = TuneRequest(
            **{**pack["args"], "title": title, "name": name, "token": pack["token"]},
            model_type=pack["model_type"],
            base_tune_id=pack["base_tune_id"],
            preset=pack["preset"],
            branch=branch,
            characteristics=dict(characteristics or {}),
            callback=callback,
            prompts=specs,
            prompts_callback=prompts_callback,
        )
        tune = self.create_tune(request, photos=photos, photo_ids=photo_ids, base_url=base_url)
        if self.store.get_tune(tune["id"])["pack_id"] is None:  # not when the title named an older tune
            self.store.update_tune(tune["id"], pack_id=pack["id"])
        return tune

    def run_pack(
        self,
        pack_id: int | str,
        tune_ids: Sequence[int],
        *,
        prompt_ids: Sequence[int] | None = None,
        prompt_callback: str | None = None,
        prompts_callback: str | None = None,
        base_url: str | None = None,
    ) -> list[dict[str, Any]]:
        """Astria's `POST /p/:id/tunes` with `tune_ids`: for each existing tune, one prompt per
        pack prompt of the tune's class (or of `prompt_ids`), filled from the tune's token and
        characteristics and remembering its pack prompt. Every tune is checked before any prompt
        is made. Prompts on a tune still training wait for it. Each prompt posts to
        `prompt_callback` when done, and `prompts_callback` gets them all (a list of prompt
        JSON, as with `tune_from_pack`) once every one is done. Returns the prompts."""
        pack = self._pack_row(pack_id)
        if not tune_ids:
            raise InvalidInput("Give the ids of the tunes to run the pack on.", field="tune_ids")
        check_callback_url(prompts_callback, "prompts_callback")
        plans = []
        for tune_id in dict.fromkeys(tune_ids):
            tune = self.store.get_tune(tune_id)
            if tune is None or tune["model_type"] == "checkpoint":
                raise NotFound(f"Tune {tune_id} does not exist: list tunes to see their ids.", field="tune_ids")
            token = tune["token"] or pack["token"]
            plans.append((tune, self._pack_runs(pack, tune["name"], token, tune["characteristics"], prompt_ids)))
        made = [
            self.create_prompt(
                tune["id"],
                dataclasses.replace(request, callback=prompt_callback),
                orig_prompt_id=pp_id,
                base_url=base_url,
            )
            for tune, runs in plans
            for pp_id, request in runs
        ]
        if prompts_callback:
            # Grouped once all exist; prompts that finished meanwhile are caught by the check.
            run_id = self.store.add_prompt_run(prompts_callback, [p["id"] for p in made])
            self._send_run_callback(run_id)
        return made

    def _pack_runs(
        self,
        pack: dict[str, Any],
        class_name: str,
        token: str,
        characteristics: Mapping[str, Any] | None,
        prompt_ids: Sequence[int] | None,
    ) -> list[tuple[int, PromptRequest]]:
        """The prompt requests a pack makes for one tune: (pack prompt id, request) for each
        pack prompt of the class (or of `prompt_ids`), in order, templates filled. Raises
        InvalidInput for a class without prompts, foreign prompt ids or lint errors."""
        templates = self.store.list_pack_prompts(pack["id"], class_name)
        if prompt_ids is not None:
            known = {p["id"] for p in self.store.list_pack_prompts(pack["id"])}
            foreign = sorted(set(prompt_ids) - known)
            if foreign:
                raise InvalidInput(f"Prompt ids {foreign} are not prompts of pack {pack['id']}.", field="prompt_ids")
            templates = [p for p in templates if p["id"] in set(prompt_ids)]
        if not templates:
            classes = ", ".join(sorted({p["class_name"] for p in self.store.list_pack_prompts(pack["id"])})) or "none"
            raise InvalidInput(
                f"Pack '{pack['slug']}' has no '{class_name}' prompts to run (its classes: {classes}).", field="name"
            )
        errors = [i.message for i in packs.lint(pack, templates, characteristics or {}) if i.level == "error"]
        if errors:
            raise InvalidInput("Fix the pack first: " + " ".join(errors), field="pack_id")
        values = packs.pack_values({"token": token, "name": class_name, "characteristics": characteristics or {}})
        return [
            (
                template["id"],
                PromptRequest(
                    text=packs.fill_template(template["text"], values)[0],
                    negative_prompt=template["negative_prompt"] or "",
                    num_images=template["num_images"],
                    **(template["params"] or {}),
                ).validate(),
            )
            for template in templates
        ]

    def _load_starter_packs(self) -> None:
        """Import each starter pack in assets/packs/ whose slug is not in the studio yet."""
        for path in sorted((ASSETS / "packs").glob("*.json")):
            slug = json.loads(path.read_text()).get("slug")
            if not self.store.find_pack_by_slug(slug):
                self.import_pack(path)
                log.info("added the starter pack %s", slug)

    def _pack_row(self, pack_id: int | str) -> dict[str, Any]:
        pack = self.store.find_pack_by_slug(pack_id) if isinstance(pack_id, str) else self.store.get_pack(pack_id)
        if pack is None:
            raise NotFound(f"Pack {pack_id!r} does not exist: list packs to see their ids and slugs.", field="pack_id")
        return pack

    def _pack_prompt_row(self, pack_prompt_id: int) -> dict[str, Any]:
        prompt = self.store.get_pack_prompt(pack_prompt_id)
        if prompt is None:
            raise NotFound(f"Pack prompt {pack_prompt_id} does not exist.", field="pack_prompt_id")
        return prompt

    def _check_pack_base(self, base_tune_id: int | None) -> None:
        if base_tune_id is not None:
            self.base_model(base_tune_id)

    def _store_pack_image(self, data: bytes) -> str:
        if len(data) > self.settings.max_upload_mb * 2**20:
            raise TooLarge(f"The image is over {self.settings.max_upload_mb} MB: use a smaller one.", field="image")
        return self.files.put(data, "covers", packs.image_suffix(data, "image"))

    def _forget_pack_images(self, paths: list[str | None]) -> None:
        """Delete stored pack images nothing shows any more (files are shared by content)."""
        for path in set(paths) - {None}:
            if not self.store.pack_image_in_use(path):
                self.files.delete(path)

    def _like_target(self, prompt_id: int, user: str, image_idx: int | None) -> tuple[str, int]:
        """Check a like's prompt, user and image; returns (user, stored image index)."""
        user = (user or "").strip()
        if not user or len(user) > 200:
            raise InvalidInput("A like needs a user id of 1 to 200 characters.", field="user")
        if self.store.get_prompt(prompt_id) is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        if image_idx is None:
            return user, -1
        count = len(self.store.prompt_images(prompt_id))
        if not 0 <= image_idx < count:
            raise InvalidInput(
                f"Prompt {prompt_id} has {count} image(s): image_idx must be 0 to {count - 1}.", field="image_idx"
            )
        return user, image_idx

    def _likes(self, prompt_id: int) -> int:
        prompt = self.store.get_prompt(prompt_id)
        return prompt["likes_count"] if prompt else 0

    # -- prompts: generation on the engine (issue 3) -----------------------------------------

    @property
    def engine(self):
        """The studio's one `Engine`, made on first use (it loads no model until a request)."""
        with self._engine_lock:
            if self._engine is None:
                from studio.engine import Engine

                self._engine = Engine(self.settings.device, postprocess_dir=self.home / "models" / "postprocess")
            return self._engine

    def create_prompt(
        self,
        tune_id: int,
        request: PromptRequest | Mapping[str, Any],
        *,
        orig_prompt_id: int | None = None,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """Validate `request` (Astria's fields) for tune `tune_id`, store it as a QUEUING prompt
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
        check_callback_url(request.callback)
        tune = self._prompt_tune(tune_id)
        image = self._decode_image(request.input_image, "input_image") if request.input_image else None
        seed = request.seed if request.seed is not None else random_seed()
        ready = tune["status"] == SUCCESS
        if ready:
            self._generate_request(tune, request, seed=seed, input_image=image)
        params = {**request.params(), "seed": seed}
        if image is not None:
            params["input_image_path"] = self.files.put(_png_bytes(image), "photos", ".png")
        # One transaction: a prompt refused by a full queue (Busy) is rolled back, so no prompt
        # waits for a job never queued, and no concurrent listing sees one that then vanishes.
        with self.store.transaction():
            prompt_id = self.store.add_prompt(
                {
                    "tune_id": tune_id,
                    "text": request.text,
                    "negative_prompt": request.negative_prompt,
                    "params": params,
                    "status": QUEUING,
                    "callback": request.callback,
                    "orig_prompt_id": orig_prompt_id,
                    "base_url": base_url,
                }
            )
            self.queue_prompt(prompt_id)
        return self.get_prompt(prompt_id)

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
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        if prompt["status"] == SUCCESS:
            return self.get_prompt(prompt_id)
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
                image = self._decode_image(self.files.read(params["input_image_path"]), "input_image")
            generate = self._generate_request(
                self._prompt_tune(prompt["tune_id"]), request, seed=params["seed"], input_image=image
            )
            if self._gpu_generate is None:
                self._gpu_generate = zerogpu.gpu_generate(self.engine, enabled=self.zero_gpu)
            results = self._gpu_generate(
                generate, on_step=self._progress_writer(prompt_id, on_step), should_stop=should_stop
            )
            images = self._save_outputs(results, saved)
            # Likeness is scored here, on the worker, so the images arrive with their scores.
            scores = self._prompt_likeness(prompt, [result.image for result in results])
            with self.store.transaction():
                self.store.finish_prompt(prompt_id, images, warnings=list(results[0].warnings))
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
        return self.get_prompt(prompt_id)

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

    def get_prompt(self, prompt_id: int) -> dict[str, Any]:
        """The prompt row plus `images` (file-store paths, in order) and, parallel to them,
        `seeds` and `likeness` (studio/likeness.py records; None: not scored)."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        images = self.store.prompt_images(prompt_id)
        return {
            **prompt,
            "warnings": prompt.get("warnings") or [],
            "images": [i["path"] for i in images],
            "seeds": [i["seed"] for i in images],
            "likeness": [i["likeness"] for i in images],
        }

    def list_prompts(
        self, tune_id: int | None = None, *, limit: int = 100, offset: int = 0, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Prompts newest first (of one tune when given), each as `get_prompt` returns it."""
        rows = self.store.list_prompts(tune_id=tune_id, limit=limit, offset=offset, before_id=before_id)
        return _still_there(self.get_prompt, rows)

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

    def _prompt_tune(self, tune_id: int) -> dict[str, Any]:
        tune = self.store.get_tune(tune_id)
        if tune is None:
            raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
        if tune["status"] in (FAILED, CANCELED):
            raise Conflict(f"Tune {tune_id} is {tune['status']}: it cannot make images; train a new one.")
        return tune

    def _prompt_base(self, tune: dict[str, Any]) -> dict[str, Any]:
        """The gallery base model a prompt on `tune` runs on; Unavailable when it cannot run
        here (a family other than SD 1.5/SDXL, a local path that is gone, or not downloaded
        while the hub is off)."""
        if tune["model_type"] == "checkpoint":
            model = self.base_model(tune["id"])
        elif tune.get("base_tune_id"):
            model = self.base_model(tune["base_tune_id"])
        else:
            model = self.default_base_model()
        if model["family"] not in ("sd15", "sdxl"):
            raise ModelNotAvailable(
                f"{model['title']} is a {model['family']} model; this studio runs SD 1.5 and SDXL only. "
                "Pick another base model (or use branch=fast for the demo model).",
                field="tune_id",
            )
        if model["source"] == DEMO_SOURCE:
            from studio.demo_model import ensure_demo_model

            ensure_demo_model(self.demo_model_dir)
        elif reason := self._why_not_here(model):
            raise ModelNotAvailable(f"{reason}, or pick the demo model.", field="tune_id")
        return model

    def _generate_request(self, tune: dict[str, Any], request: PromptRequest, *, seed: int, input_image) -> Any:
        """Resolve a prompt's tokens and defaults into the engine's request.

        The tune's own LoRA or FaceID applies when the text does not name it. Raises
        PromptError (unknown LoRA, a faceid tune used as a LoRA, one face/style/pose at most…),
        Conflict for a tune that is not trained, Unavailable for a base model that cannot run."""
        from studio.engine import GenerateRequest

        # 1. The base model, and where the adapters for its family live.
        base = self._prompt_base(tune)
        sources = self._adapter_sources(base)
        # 2. Tokens: LoRAs stack; a prompt has at most one face, one style and one pose.
        parsed = parse_prompt(request.text)
        references = [*parsed.references, *self._implicit_references(tune, parsed)]
        loras, triggers, single = [], [], {}
        for ref in references:
            if ref.kind == "lora":
                name, path, weight, words = self._resolve_lora(ref, base)
                loras.append((name, path, weight))
                triggers += words
                continue
            slot = "face" if ref.kind in ("face", "faceid") else ref.kind
            if slot in single:
                raise PromptError(f"{ref.token}: a prompt takes one {slot} token; remove {single[slot].token} or it.")
            single[slot] = ref
        if "pose" in single and request.controlnet:
            raise PromptError(f"{single['pose'].token} and controlnet both set a pose: keep one.", field="controlnet")
        # 3. Defaults the request left to the base model.
        family = base["family"]
        size = self.settings.demo_size if base["source"] == DEMO_SOURCE else {"sd15": 512, "sdxl": 1024}[family]
        scheduler = request.scheduler or base.get("scheduler") or "euler_a"
        fast = scheduler in ("lcm", "tcd")
        steps = request.steps or (8 if fast else 30)
        width, height = request.w or size, request.h or size
        if tune.get("branch") == "fast":
            # Mock mode (Astria's free test mode): few steps and at most the demo model's size,
            # whatever the request asks, so a client's end-to-end test takes seconds.
            steps = min(steps, MOCK_STEPS)
            width, height = min(width, self.settings.demo_size), min(height, self.settings.demo_size)
        # 4. Adapters with their inputs; an input image is a control image, a start image or both.
        options: dict[str, Any] = {}
        if "face" in single:
            embedding, adapter, scale = self._resolve_face(single["face"], base, sources)
            options.update(faceid_embedding=embedding, faceid_adapter=adapter, faceid_scale=scale)
        if "style" in single:
            image, scale = self._adapter_image("style", single["style"])
            options.update(style_image=image, style_adapter=sources["style"], style_scale=scale)
            options["image_encoder"] = sources["image_encoder"]
        if "pose" in single:
            image, scale = self._adapter_image("pose", single["pose"])
            options.update(control_image=image, controlnet=sources["controlnet"]["pose"])
            options["controlnet_conditioning_scale"] = scale
        if input_image is not None and request.controlnet:
            options.update(
                control_image=input_image,
                controlnet=sources["controlnet"][request.controlnet],
                controlnet_conditioning_scale=request.controlnet_conditioning_scale,
                control_mode="canny" if request.controlnet == "canny" else "auto",
            )
        if input_image is not None and not (request.controlnet and request.controlnet_txt2img):
            options.update(init_image=input_image, strength=request.denoising_strength)
        # 5. The engine's request; the PNGs record the text as written, tokens included.
        return GenerateRequest(
            model=self.model_path(base),
            family=family,
            prompt=add_trigger_words(parsed.text, triggers),
            negative_prompt=request.negative_prompt,
            num_images=request.num_images,
            seed=seed,
            num_inference_steps=steps,
            guidance_scale=request.cfg_scale if request.cfg_scale is not None else (1.5 if fast else 7.0),
            width=width,
            height=height,
            scheduler=scheduler,
            loras=tuple(loras),
            super_resolution=request.super_resolution,
            face_correct=request.face_correct,
            face_swap=request.face_swap,
            model_name=base["title"],
            parameters_prompt=request.text,
            **options,
        )

    def _implicit_references(self, tune: dict[str, Any], parsed: ParsedPrompt) -> list[Reference]:
        """A prompt posted to a LoRA or FaceID tune uses that tune unless its text names it."""
        kind = tune["model_type"]
        if kind not in ("lora", "faceid"):
            return []
        if any(r.kind == kind and r.tune_id == tune["id"] for r in parsed.references):
            return []
        return [Reference(kind, str(tune["id"]), 1.0, f"<{kind}:{tune['id']}:1>")]

    def _referenced_tune(self, ref: Reference, kind: str) -> dict[str, Any]:
        """The trained tune of `kind` that `ref` names, or the error saying what is wrong."""
        if ref.tune_id is None:
            raise PromptError(f"{ref.token}: '{ref.ref}' is not a tune id.")
        tune = self.store.get_tune(ref.tune_id)
        if tune is None:
            raise PromptError(f"{ref.token}: there is no tune {ref.ref}.")
        if tune["model_type"] != kind:
            hint = {
                "lora": f"use <lora:{ref.ref}:{format_weight(ref.weight)}>",
                "faceid": f"use <faceid:{ref.ref}:{format_weight(ref.weight)}>",
                "checkpoint": "it is a base model: post the prompt to it instead",
            }.get(tune["model_type"], "use a token of its kind")
            raise PromptError(f"{ref.token}: {ref.kind} {ref.ref} is a {tune['model_type']} tune; {hint}.")
        if tune["status"] != SUCCESS:
            raise Conflict(f"{ref.token}: tune {ref.ref} is {tune['status']}; use it once it is trained.", field="text")
        return tune

    def _resolve_lora(self, ref: Reference, base: dict[str, Any]) -> tuple[str, str, float, list[str]]:
        """(name, absolute weights path, weight, trigger words) for a LoRA token."""
        if ref.tune_id is not None:
            tune = self._referenced_tune(ref, "lora")
            if not tune.get("weights_path"):
                raise Conflict(f"{ref.token}: tune {ref.ref} has no weights yet.", field="text")
            family = tune.get("family") or self._tune_base_family(tune)
            name, path, words = tune["title"], tune["weights_path"], [tune.get("token") or "ohwx"]
            weight = ref.weight
        else:
            adapter = self.store.get_adapter("lora", ref.ref)
            if adapter is None:
                raise PromptError(f"{ref.token}: unknown LoRA '{ref.ref}'; upload it under Adapters or use a tune id.")
            family, name, path = adapter["family"], ref.ref, adapter["path"]
            words = list((adapter["metadata"] or {}).get("trigger_words") or [])
            weight = _weight(ref, adapter)
        if family and family != base["family"]:
            raise PromptError(
                f"{ref.token}: LoRA '{name}' is for {family} but {base['title']} is {base['family']}; "
                "use a LoRA made for this base model."
            )
        return name, str(self.files.path(path)), weight, words

    def _tune_base_family(self, tune: dict[str, Any]) -> str:
        base_id = tune.get("base_tune_id")
        base = self.store.get_tune(base_id) if base_id else None
        return (base or self.default_base_model())["family"]

    def _resolve_face(
        self, ref: Reference, base: dict[str, Any], sources: dict
    ) -> tuple[tuple[float, ...], str, float]:
        """(unit face embedding, FaceID adapter for its size, scale) for a faceid or face token."""
        if ref.kind == "faceid":
            tune = self._referenced_tune(ref, "faceid")
            if not tune.get("embedding_path"):
                raise Conflict(f"{ref.token}: tune {ref.ref} has no reference embedding yet.", field="text")
            path, weight = tune["embedding_path"], ref.weight
        else:
            adapter = self.store.get_adapter("face", ref.ref)
            if adapter is None:
                raise PromptError(f"{ref.token}: unknown face '{ref.ref}'; save it under Adapters first.")
            path, weight = adapter["metadata"]["embedding_path"], _weight(ref, adapter)
        vector = np.load(io.BytesIO(self.files.read(path)), allow_pickle=False).astype(np.float64)
        if vector.ndim == 2:
            vector = vector.mean(axis=0)
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        adapters = sources["faceid"]
        if str(vector.size) not in adapters:
            sizes = ", ".join(adapters) or "none"
            raise PromptError(
                f"{ref.token}: the face embedding has {vector.size} values but {base['title']}'s FaceID "
                f"adapter expects {sizes}; make the face with the matching face backend "
                "(insightface gives 512, dlib 128)."
            )
        return tuple(float(v) for v in vector), adapters[str(vector.size)], weight

    def _adapter_image(self, kind: str, ref: Reference) -> tuple[Any, float]:
        """(image, scale) of a saved style or pose."""
        adapter = self.store.get_adapter(kind, ref.ref)
        if adapter is None:
            raise PromptError(f"{ref.token}: unknown {kind} '{ref.ref}'; save it under Adapters first.")
        return self._decode_image(self.files.read(adapter["path"]), kind), _weight(ref, adapter)

    def _adapter_sources(self, base: dict[str, Any]) -> dict[str, Any]:
        """Where the IP-Adapters, image encoder and ControlNets for `base`'s family live: the
        demo model's own files, or hub files (`hf://…`) for real models."""
        if base["source"] != DEMO_SOURCE:
            return HUB_ADAPTERS[base["family"]]
        from studio.demo_model import read_manifest

        folder = self.demo_model_dir
        manifest = read_manifest(folder)
        return {
            "style": str(folder / manifest["style"]),
            "image_encoder": None,
            "faceid": {dim: str(folder / path) for dim, path in manifest["faceid"].items()},
            "controlnet": {name: str(folder / path) for name, path in manifest["controlnet"].items()},
        }

    def _decode_image(self, data: bytes, field: str):
        """An upload as an upright RGB PIL image; only PNG/JPEG/WEBP are opened. Raises
        TooLarge over max_upload_mb and InvalidInput for anything unreadable."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        if len(data) > self.settings.max_upload_mb * 2**20:
            raise TooLarge(f"{field} is over {self.settings.max_upload_mb} MB: use a smaller image.", field=field)
        try:
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"])
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGB")
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
            raise InvalidInput(f"{field} is not a readable PNG, JPEG or WEBP image.", field=field) from None
        if min(image.size) < 16:
            raise InvalidInput(f"{field} is {image.width}x{image.height}: use at least 16 px a side.", field=field)
        return image

    # -- adapters: saved LoRAs and face/style/pose avatars (issue 3) -------------------------

    def add_adapter(
        self,
        kind: str,
        name: str,
        data: bytes,
        *,
        weight: float = 1.0,
        trigger_words: Sequence[str] = (),
        family: str | None = None,
    ) -> dict[str, Any]:
        """Save an asset that prompt tokens name: a LoRA (`data` is a .safetensors file, header
        checked, at most max_lora_mb; its family read from its shapes when it can be) or a
        face/style/pose image (PNG/JPEG/WEBP). A face gets its embedding now from the studio's
        face backend, so `<face:NAME>` works like a FaceID tune. Raises InvalidInput naming
        the field, TooLarge, Conflict when the kind already has that name."""
        if kind not in ADAPTER_KINDS:
            raise InvalidInput(f"kind '{kind}' is not one of {', '.join(ADAPTER_KINDS)}.", field="kind")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
            raise InvalidInput(
                "name must be one word: a letter, then letters, digits, '_' or '-' (64 at most).", field="name"
            )
        low = -2.0 if kind == "lora" else 0.0
        if not (isinstance(weight, (int, float)) and low <= weight <= 2.0):
            raise InvalidInput(f"weight {weight!r} is out of range: use {low:g} to 2.", field="weight")
        if self.store.get_adapter(kind, name) is not None:
            raise Conflict(f"There is already a {kind} named '{name}': pick another name or delete it.", field="name")
        metadata: dict[str, Any] = {"trigger_words": [w.strip() for w in trigger_words if w and w.strip()]}
        if kind == "lora":
            path, family = self._store_lora(data, family)
        else:
            image = self._decode_image(data, "file")
            path = self.files.put(_png_bytes(image), "photos", ".png")
            metadata.update(width=image.width, height=image.height)
            if kind == "face":
                metadata.update(self._face_embedding(image))
        self.store.add_adapter(
            {"name": name, "kind": kind, "path": path, "family": family, "weight": float(weight), "metadata": metadata}
        )
        return self.get_adapter(kind, name)

    def get_adapter(self, kind: str, name: str) -> dict[str, Any]:
        adapter = self.store.get_adapter(kind, name)
        if adapter is None:
            raise NotFound(f"There is no {kind} named '{name}'.", field="name")
        return adapter

    def list_adapters(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self.store.list_adapters(kind)

    def delete_adapter(self, kind: str, name: str) -> None:
        """Delete the adapter and its files unless another adapter shares them."""
        adapter = self.get_adapter(kind, name)
        self.store.delete_adapter(adapter["id"])
        paths = [adapter["path"], (adapter["metadata"] or {}).get("embedding_path")]
        in_use = {a["path"] for a in self.store.list_adapters()}
        in_use |= {(a["metadata"] or {}).get("embedding_path") for a in self.store.list_adapters()}
        for path in paths:
            if path and path not in in_use:
                self.files.delete(path)

    def _store_lora(self, data: bytes, family: str | None) -> tuple[str, str | None]:
        from studio.engine_models import safetensors_header

        if len(data) > self.settings.max_lora_mb * 2**20:
            raise TooLarge(f"The LoRA is over {self.settings.max_lora_mb} MB (STUDIO_MAX_LORA_MB).", field="file")
        try:
            header = safetensors_header(data, label="The LoRA file")
        except ValueError as exc:
            raise InvalidInput(f"{exc}: upload a .safetensors LoRA (pickle files are refused).", field="file") from None
        keys = [k for k in header if k != "__metadata__"]
        if not any("lora" in k.lower() for k in keys):
            raise InvalidInput(
                "The file holds no LoRA weights (no 'lora' keys): is it a full checkpoint?", field="file"
            )
        inferred = _lora_family(header)
        if family is not None and inferred is not None and family != inferred:
            raise InvalidInput(f"The LoRA's shapes say {inferred}, not {family}.", field="family")
        if (family or inferred) not in (None, "sd15", "sdxl"):
            raise InvalidInput(f"family '{family}' is not sd15 or sdxl.", field="family")
        return self.files.put(data, "weights", ".safetensors"), family or inferred

    def _face_embedding(self, image) -> dict[str, Any]:
        """The largest-scoring face's unit embedding, stored as .npy; InvalidInput when the
        image has no face."""
        from studio.faces import open_analyzer

        analyzer = open_analyzer(self.settings.face_backend)
        rgb = np.asarray(image)
        faces = analyzer.detect(rgb)
        if not faces:
            raise InvalidInput("No face was found in the image: use a clear photo of one face.", field="file")
        vector = analyzer.embed(rgb, max(faces, key=lambda f: f.score)).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, vector, allow_pickle=False)
        return {
            "embedding_path": self.files.put(buffer.getvalue(), "embeddings", ".npy"),
            "face_backend": analyzer.name,
            "embedding_dim": int(vector.size),
        }

    # -- jobs: the persistent queue and its follow-ups (issue 5) -------------------------------

    def start_worker(self) -> None:
        """Recover the jobs a previous process left running, then run queued jobs in a
        background thread until `close()`. app.py calls this once at start-up."""
        # Scratch folders are training runs of the process that owns the queue; at its start
        # none runs, so any left are from a process that was killed.
        for folder in self.files.scratch_dir().parent.iterdir():
            shutil.rmtree(folder, ignore_errors=True)
        self.worker.start()

    def run_pending(self) -> int:
        """Run every queued job in the calling thread; returns how many ran (tests, scripts)."""
        return self.worker.run_pending()

    def enqueue(self, kind: str, subject_id: int) -> int:
        """Queue a 'train' (tune) or 'generate' (prompt) job and wake the worker. Raises Busy
        when STUDIO_QUEUE_LIMIT jobs are already waiting or running."""
        job_id = self.store.enqueue_job(kind, subject_id, limit=self.settings.queue_limit)
        if job_id is None:
            raise Busy(f"The job queue is full ({self.settings.queue_limit} jobs waiting or running); try again later.")
        self.worker.notify()
        return job_id

    def queue_prompt(self, prompt_id: int) -> None:
        """Queue a stored prompt for generation: now when its tune is ready, else it waits
        (QUEUING, no job) and is queued when the tune reaches SUCCESS, or fails with the tune."""
        prompt = self.store.get_prompt(prompt_id)
        tune = self.store.get_tune(prompt["tune_id"])
        if tune["status"] == SUCCESS:
            self.enqueue("generate", prompt_id)
        elif tune["status"] in (FAILED, CANCELED):
            self._fail_waiting_prompt(prompt_id, tune)

    def cancel_prompt(self, prompt_id: int) -> dict[str, Any]:
        """Cancel a prompt's generation: a queued (or waiting) prompt is CANCELED at once, a
        running one stops at its next step. Conflict when it already finished."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        job = self.store.latest_job("generate", prompt_id)
        if job is not None and job["status"] in (QUEUING, TRAINING):
            job = self.store.cancel_job(job["id"])
            if job["status"] == CANCELED:
                self._job_finished(job)
        elif prompt["status"] == QUEUING:  # waiting for its tune: no job yet
            self.store.update_prompt(prompt_id, status=CANCELED, message="canceled")
            self._prompt_finished(prompt_id)
        else:
            raise Conflict(f"Prompt {prompt_id} is {prompt['status']}: there is nothing to cancel.", field="prompt_id")
        return self.get_prompt(prompt_id)

    def _generate_prompt(self, job: dict, context: JobContext) -> None:
        self.run_prompt(job["subject_id"], on_step=context.on_step, should_stop=context.should_stop)

    def _job_finished(self, job: dict) -> None:
        if job["kind"] == "train":
            self._tune_finished(job["subject_id"])
        else:
            self._prompt_finished(job["subject_id"])

    def _tune_finished(self, tune_id: int) -> None:
        """A tune reached SUCCESS, FAILED or CANCELED: its checkpoints' resume states are dropped,
        its waiting prompts are queued (or end with it) and its callback is posted."""
        tune = self.store.get_tune(tune_id)
        if tune is None:
            return
        # Resume states only serve an unfinished training; they are a few times the LoRA's size.
        for path in self.store.drop_resume_states(tune_id):
            self.files.delete(path)
        for prompt in self.store.waiting_prompts(tune_id):
            if tune["status"] != SUCCESS:
                self._fail_waiting_prompt(prompt["id"], tune)
                continue
            try:
                self.enqueue("generate", prompt["id"])
            except Busy as error:
                self.store.update_prompt(prompt["id"], status=FAILED, message=error.message)
                self._prompt_finished(prompt["id"])
        if tune["callback"]:
            self.callbacks.send(tune["callback"], {"tune": self.tune_json(tune_id)})

    def _fail_waiting_prompt(self, prompt_id: int, tune: dict) -> None:
        status = CANCELED if tune["status"] == CANCELED else FAILED
        reason = f": {tune['message']}" if tune["message"] else ""
        self.store.update_prompt(prompt_id, status=status, message=f"tune {tune['id']} {tune['status']}{reason}")
        self._prompt_finished(prompt_id)

    def _prompt_finished(self, prompt_id: int) -> None:
        """Post the prompt's callback, and the tune's prompts callback once all the prompts
        created with the tune are done."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            return
        if prompt["callback"]:
            self.callbacks.send(prompt["callback"], {"prompt": self.prompt_json(prompt_id)})
        self._send_prompts_callback(prompt["tune_id"])
        if prompt.get("run_id"):
            self._send_run_callback(prompt["run_id"])

    def _send_run_callback(self, run_id: int) -> None:
        """Post a pack run's prompts callback (`run_pack`) once all its prompts are done."""
        prompts = self.store.run_prompts(run_id)
        if prompts and all(p["status"] in FINISHED for p in prompts):
            url = self.store.claim_run_callback(run_id)
            if url:
                self.callbacks.send(url, [self.prompt_json(p["id"]) for p in prompts])

    def _send_prompts_callback(self, tune_id: int) -> None:
        tune = self.store.get_tune(tune_id)
        if tune is None or not tune["prompts_callback"] or tune["prompts_callback_sent_at"]:
            return
        ids = (tune["args"] or {}).get("prompt_ids")
        if not ids:  # no prompts, or they are still being created
            return
        prompts = [p for p in (self.store.get_prompt(i) for i in ids) if p is not None]
        if all(p["status"] in FINISHED for p in prompts):
            url = self.store.claim_prompts_callback(tune_id)
            if url:
                self.callbacks.send(url, [self.prompt_json(p["id"]) for p in prompts])

    # -- tunes (issue 5) -----------------------------------------------------------------------

    def create_tune(
        self,
        request: TuneRequest,
        photos: list[tuple[str, bytes]] | None = None,
        photo_ids: list[int] | None = None,
        *,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """Create a LoRA or FaceID tune from photos: uploads as (filename, bytes) and/or ids of
        photos already stored. Returns the tune as `tune_json` shows it plus `rejections` (the
        uploads refused, each with a reason). A title in use returns that tune unchanged
        (Astria's idempotency). A LoRA tune is queued for training; a FaceID tune is SUCCESS at
        once. The request's prompts are created with the tune and run when it is ready.
        `base_url` is where the client reached the studio (the API request's), kept for the
        URLs in callbacks. Raises InvalidInput naming the field, NotFound (base model, photo),
        Busy (queue full)."""
        # 1. Check the request; a title in use answers with its tune.
        check_request(request)
        if request.model_type == "lora" and self.zero_gpu:
            raise InvalidInput(zerogpu.TRAINING_REFUSED, field="model_type")
        for url, field_name in [(request.callback, "callback"), (request.prompts_callback, "prompts_callback")]:
            check_callback_url(url, field_name)
        for spec in request.prompts:
            check_callback_url(spec.callback, "prompts")
            PromptRequest.from_dict(_prompt_fields(spec)).validate()
        existing = self.store.find_tune_by_title(request.title.strip())
        if existing is not None:
            return {**self.tune_json(existing["id"]), "rejections": []}
        # 2. The base model and the photos.
        base = self._tune_base_model(request)
        rows, rejections = self._tune_photos(photos, photo_ids, request.name)
        # 3. The tune: FaceID is ready now; a LoRA tune is queued for training.
        record = {
            "title": request.title.strip(),
            "name": request.name,
            "token": request.token,
            "model_type": request.model_type,
            "base_tune_id": base["id"],
            "family": base["family"],
            "branch": request.branch or {"sd15": "sd15", "sdxl": "sdxl1"}.get(base["family"]),
            "characteristics": dict(request.characteristics or {}),
            "callback": request.callback,
            "prompts_callback": request.prompts_callback,
            "base_url": base_url,
            "expires_at": self._expiry(),
        }
        if request.model_type == "faceid":
            tune_id, created = self._create_faceid_tune(record, rows, request)
        else:
            tune_id, created = self._create_lora_tune(record, rows, request, base)
        if not created:  # the same title was created meanwhile
            return {**self.tune_json(tune_id), "rejections": []}
        # 4. Its prompts: they run when the tune is ready (at once for FaceID).
        prompt_ids = [self._create_tune_prompt(tune_id, spec) for spec in request.prompts]
        tune = self.store.get_tune(tune_id)
        self.store.update_tune(tune_id, args={**tune["args"], "prompt_ids": prompt_ids})
        self._send_prompts_callback(tune_id)
        if request.model_type == "faceid":
            self._tune_finished(tune_id)
        return {**self.tune_json(tune_id), "rejections": [r.to_json() for r in rejections]}

    def _tune_base_model(self, request: TuneRequest) -> dict[str, Any]:
        """The base model a tune trains on (or a FaceID tune generates on). branch=fast is the
        mock mode: the embedded demo model whatever base_tune_id says."""
        if request.branch == "fast":
            return next(m for m in self.base_models() if m["source"] == DEMO_SOURCE)
        base = self.default_base_model() if request.base_tune_id is None else self.base_model(request.base_tune_id)
        if base["family"] not in ("sd15", "sdxl"):
            raise InvalidInput(
                f"{base['title']} ({base['family']}) cannot be trained or used here; pick an SD 1.5 or SDXL "
                "base model, or use branch=fast for the mock mode.",
                field="base_tune_id",
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
        if (request.model_type == "lora" or request.prompts) and (reason := self._why_not_here(base)):
            raise ModelNotAvailable(f"{reason}, or use branch=fast for the mock mode.", field="base_tune_id")
        return base

    def _tune_photos(
        self, photos: list[tuple[str, bytes]] | None, photo_ids: list[int] | None, name: str
    ) -> tuple[list[dict], list]:
        rows, rejections = [], []
        if photos:
            rows, rejections = self.add_photos(photos)
        for photo_id in photo_ids or []:
            row = self.store.get_photo(photo_id)
            if row is None:
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
        settings = plan_training(request, num_images=len(rows), native_resolution=self._native_resolution(base))
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
                self.enqueue("train", tune_id)
        return tune_id, created

    def _create_faceid_tune(self, record: dict, rows: list[dict], request: TuneRequest) -> tuple[int, bool]:
        """A FaceID tune: the reference embedding of the photos that show a face, stored as .npy;
        no training. InvalidInput when no photo shows a face."""
        analyzer = self.face_analyzer
        embeddings, faceless = [], []
        for row in rows:
            rgb = np.asarray(self._photo_image(row))
            faces = analyzer.detect(rgb)
            if faces:
                embeddings.append(analyzer.embed(rgb, faces[0]))
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
        with self.store.transaction():
            tune_id, created = self.store.add_tune_unless_titled(tune)
            if created:
                self.store.link_photos(tune_id, [row["id"] for row in rows])
        return tune_id, created

    def _create_tune_prompt(self, tune_id: int, spec: PromptSpec) -> int:
        return self.create_prompt(tune_id, _prompt_fields(spec), orig_prompt_id=spec.orig_prompt_id)["id"]

    def _native_resolution(self, base: dict) -> int:
        """The image side the base model was trained at: its UNet's sample size times 8 for a
        local folder, else the family's (512 for SD 1.5, 1024 for SDXL)."""
        config = Path(self.model_path(base)) / "unet" / "config.json"
        if config.is_file():
            return int(json.loads(config.read_text())["sample_size"]) * 8
        return 1024 if base["family"] == "sdxl" else 512

    def _photo_image(self, row: dict):
        """A stored photo as an upright RGB PIL image."""
        return decode_photo(self.files.read(row["path"]), row.get("filename") or "photo").image

    def get_tune(self, tune_id: int, base_url: str | None = None) -> dict[str, Any]:
        return self.tune_json(tune_id, base_url)

    def list_tunes(
        self, *, limit: int = 100, offset: int = 0, before_id: int | None = None, base_url: str | None = None
    ) -> list[dict[str, Any]]:
        """User tunes, newest first (those with an id under `before_id` when given), as
        `tune_json` shows them."""
        rows = self.store.list_tunes(limit=limit, offset=offset, before_id=before_id)
        return _still_there(lambda tune_id: self.tune_json(tune_id, base_url), rows)

    def tune_json(self, tune_id: int, base_url: str | None = None) -> dict[str, Any]:
        """A tune as the API returns it and callbacks post it: Astria's fields (id, title, name,
        token, base_tune_id, args, steps, face_crop, training_face_correct, ckpt_url(s), eta,
        trained_at, started_training_at, expires_at, created_at, branch, model_type, updated_at,
        url, orig_images) plus status, progress, message, characteristics, warnings and the
        checkpoints (step, loss, sample URL, its likeness, whether it is active, whether it is
        the `best_step`: the sample that looks most like the subject) with the active step.
        `orig_images` (the tune's photos) and `ckpt_url` (its LoRA in kohya layout, once trained)
        are URLs of keyed API routes, not of the public image area: photos and weights are
        private (`tune_photo_file`, `lora_file`)."""
        tune = self.store.get_tune(tune_id)
        if tune is None:
            raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
        args = tune["args"] or {}
        training = args.get("training") or {}
        job = self.store.latest_job("train", tune_id)
        base = self.public_base_url(base_url or tune.get("base_url"))
        checkpoints = self.store.tune_checkpoints(tune_id)
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
            "eta": job["eta"] if job and job["status"] in (QUEUING, TRAINING) else tune["trained_at"],
            # Photos and weights are private: these routes need the API key (studio/api.py).
            "ckpt_url": ckpt_url,
            "ckpt_urls": [ckpt_url] if ckpt_url else [],
            "orig_images": [f"{base}/tunes/{tune_id}/photos/{p['id']}" for p in self.store.tune_photos(tune_id)],
            "trained_at": tune["trained_at"],
            "started_training_at": tune["started_training_at"],
            "expires_at": tune["expires_at"],
            "created_at": tune["created_at"],
            "updated_at": tune["updated_at"],
            "url": f"{base}/tunes/{tune['id']}",
            "active_step": tune["active_step"],
            "best_step": best,
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
        }

    def prompt_json(self, prompt_id: int, base_url: str | None = None, user: str | None = None) -> dict[str, Any]:
        """A prompt as the API returns it and callbacks post it: Astria's fields (id, tune_id,
        text, negative_prompt, callback, cfg_scale, steps, seed, num_images, w, h, scheduler…,
        trained_at, started_training_at, created_at, updated_at, url, and `images` as absolute
        URLs) plus status, progress, message, warnings, and per image `seeds` and `likeness`,
        with `likes_count` and whether `user` liked it (`liked`)."""
        prompt = self.get_prompt(prompt_id)
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

    def tune_checkpoints(self, tune_id: int) -> list[dict[str, Any]]:
        """The tune's checkpoints (rows with weights_path, sample_path, loss), by step; the UI
        shows their samples as a strip to pick the best step."""
        self._user_tune(tune_id)
        return self.store.tune_checkpoints(tune_id)

    def cancel_tune(self, tune_id: int) -> dict[str, Any]:
        """Cancel a tune's training: a queued tune is CANCELED at once, a running one stops at its
        next step. Conflict when there is nothing to cancel (FaceID, already finished)."""
        tune = self._user_tune(tune_id)
        job = self.store.latest_job("train", tune_id)
        if job is None or job["status"] not in (QUEUING, TRAINING):
            raise Conflict(f"Tune {tune_id} is {tune['status']}: there is no training to cancel.", field="tune_id")
        job = self.store.cancel_job(job["id"])
        if job["status"] == CANCELED:
            self._job_finished(job)
        return self.tune_json(tune_id)

    def delete_tune(self, tune_id: int, *, wait: float = 30.0) -> None:
        """Delete a tune with its photos (unless another tune uses them), crops, weights,
        embeddings, checkpoints, prompts, images and likes, on disk too. Refused (Conflict)
        while its training or one of its prompts runs, unless it was canceled first; then the
        run is given up to `wait` seconds to stop."""
        self._user_tune(tune_id)
        for job in self.store.tune_jobs(tune_id):
            if job["status"] != TRAINING:
                continue
            what = f"tune {tune_id} is training" if job["kind"] == "train" else f"prompt {job['subject_id']} is running"
            if not job["cancel_requested"]:
                raise Conflict(f"Cannot delete: {what}. Cancel it first, then delete.", field="tune_id")
            if not self._wait_for_job(job["id"], wait):
                raise Conflict(f"Cannot delete yet: {what} and is still stopping; try again shortly.", field="tune_id")
        for path in self.store.purge_tune(tune_id):
            self.files.delete(path)

    def _expiry(self) -> str | None:
        """`expires_at` for a tune made now: STUDIO_TUNE_EXPIRY_DAYS from now, None when 0."""
        days = self.settings.tune_expiry_days
        return _timestamp(datetime.now(UTC) + timedelta(days=days)) if days else None

    def sweep_expired(self, now: datetime | None = None) -> list[int]:
        """Delete every tune whose `expires_at` has passed at `now` (default: now, UTC) with
        everything it made, as Astria's DELETE does (`api_delete_tune`: its jobs are canceled
        first). Returns the ids deleted. A tune whose run does not stop in time stays for the next
        sweep. The job worker runs this daily (Worker housekeeping); a date a tune was given is
        kept even if STUDIO_TUNE_EXPIRY_DAYS changes later, since its owner was shown it."""
        deleted = []
        for tune_id in self.store.expired_tunes(_timestamp(now or datetime.now(UTC))):
            try:
                self.api_delete_tune(tune_id)
            except (Conflict, NotFound) as error:
                log.warning("expired tune %s not deleted yet: %s", tune_id, error.message)
                continue
            deleted.append(tune_id)
        if deleted:
            log.info("deleted %d expired tune(s): %s", len(deleted), ", ".join(map(str, deleted)))
        return deleted

    def set_active_checkpoint(self, tune_id: int, step: int) -> dict[str, Any]:
        """Use the weights saved at `step` for generation (and as the kohya copy) from now on."""
        tune = self._user_tune(tune_id)
        checkpoint = self.store.get_checkpoint(tune_id, step)
        if checkpoint is None:
            steps = ", ".join(str(c["step"]) for c in self.store.tune_checkpoints(tune_id)) or "none yet"
            raise NotFound(f"Tune {tune_id} has no checkpoint at step {step} (steps: {steps}).", field="step")
        scratch = self.files.scratch_dir()
        try:
            kohya = export_kohya(
                self.files.path(checkpoint["weights_path"]), scratch / KOHYA_NAME, family=tune["family"]
            )
            kohya_path = self.files.put_file(kohya, "weights")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.store.update_tune(
            tune_id, weights_path=checkpoint["weights_path"], kohya_path=kohya_path, active_step=step
        )
        for path in self.store.unreferenced([tune["kohya_path"]] if tune["kohya_path"] else []):
            self.files.delete(path)
        return self.tune_json(tune_id)

    def _user_tune(self, tune_id: int) -> dict[str, Any]:
        tune = self.store.get_tune(tune_id)
        if tune is None or tune["model_type"] == "checkpoint":
            raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
        return tune

    def _wait_for_job(self, job_id: int, timeout: float) -> bool:
        """Wait (polling the database, as the job may run in another process) until the job
        finished; False when `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.store.get_job(job_id)
            if job is None or job["status"] in FINISHED:
                return True
            time.sleep(0.05)
        return False

    def _train_tune(self, job: dict, context: JobContext) -> None:
        """The 'train' job: a LoRA from the tune's photos, with its checkpoints and kohya copy
        stored as they are written."""
        # 1. The tune, its settings, its base model and its photos (face-cropped if asked).
        tune = self._user_tune(job["subject_id"])
        if self.zero_gpu:  # queued before the studio moved to ZeroGPU
            raise InvalidInput(zerogpu.TRAINING_REFUSED, field="model_type")
        args = tune["args"] or {}
        settings = TrainSettings.from_json(args["training"])
        base = self._prompt_base(tune)
        images = self._training_images(tune, settings)
        if self._engine is not None:  # free the engine's model for the training
            self._engine.unload()

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
            return train_lora(
                self.model_path(base),
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
            )

        scratch = self.files.scratch_dir()
        try:
            # 2. An earlier attempt that was killed or stopped goes on from its latest checkpoint
            #    (losing at most `checkpointing_steps` steps); without one, its checkpoints go.
            resume_from = self._resume_folder(tune["id"], scratch)
            if resume_from is None:
                self._forget_checkpoints(tune["id"])
            # 3. Train in the scratch folder (from scratch when the checkpoint turns out damaged);
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
        # 4. Score each checkpoint's sample for likeness, so the best step shows when it is done;
        #    without a face backend the tune is still good, only unscored.
        try:
            self.score_checkpoints(tune["id"])
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

    def _training_images(self, tune: dict, settings: TrainSettings) -> list:
        """The tune's photos as PIL images: face-corrected when it asked for `face_restore` and
        the plug-in is installed (else a warning on the tune), then cut around the face at its
        crop ratio when it asked for face crops (a photo without a detected face is used whole)."""
        from studio.postprocess import PostContext

        args = tune["args"] or {}
        images = [self._photo_image(row) for row in self.store.tune_photos(tune["id"])]
        if args.get("face_restore"):
            plugin, context = self.engine.postprocessors["face_correct"], PostContext(device=self.engine.device)
            missing = plugin.missing(context)
            warnings = args.get("warnings", [])
            if missing and f"face_restore was skipped: {missing}" not in warnings:
                warnings = [*warnings, f"face_restore was skipped: {missing}"]
                self.store.update_tune(tune["id"], args={**args, "warnings": warnings})
            elif not missing:
                images = [plugin.apply(image, context) for image in images]
        if not args.get("face_crop"):
            return images
        analyzer = self.face_analyzer
        cropped = []
        for image in images:
            faces = analyzer.detect(np.asarray(image))
            if faces:
                image = face_crop(image, faces[0], args["face_crop_ratio"], settings.size)
            else:
                log.info("tune %s: a photo shows no face; it is trained on whole", tune["id"])
            cropped.append(image)
        return cropped

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

    # -- studio UI: photo sets, thumbnails, tokens, downloads (issue 7) ------------------------

    @property
    def face_analyzer(self):
        """The studio's face analyzer (STUDIO_FACE_BACKEND), loaded on first use and shared by
        inspection, FaceID and face avatars. Raises Unavailable when the backend is missing."""
        with self._face_analyzer_lock:
            if self._face_analyzer is None:
                from studio.faces import open_analyzer

                self._face_analyzer = open_analyzer(self.settings.face_backend)
            return self._face_analyzer

    def add_photos(self, files: Sequence[tuple[str, bytes]]) -> tuple[list[dict[str, Any]], list]:
        """Check and store uploads ((filename, bytes) pairs): each good one is stored
        normalised (upright, no metadata) in the private "photos" area with its inspection
        JSON, once per content (a photo uploaded again is the same row). Returns (the photo
        rows in upload order, `inspection.Rejection`s naming each refused file and why)."""
        from studio.inspection import analyze_photo, validate_uploads

        photos, rejections = validate_uploads(
            files, max_photos=self.settings.max_photos, max_bytes=self.settings.max_upload_mb * 2**20
        )
        rows = []
        for photo in photos:
            existing = self.store.find_photo(photo.sha256)
            if existing is not None:
                rows.append(existing)
                continue
            data, suffix = photo.normalised_bytes()
            photo_id = self.store.add_photo(
                {
                    "sha256": photo.sha256,
                    "path": self.files.put(data, "photos", suffix),
                    "width": photo.image.width,
                    "height": photo.image.height,
                    "format": photo.format,
                    "filename": photo.filename,
                    "inspection": analyze_photo(photo.rgb(), self.face_analyzer).to_json(),
                }
            )
            rows.append(self.store.get_photo(photo_id))
        return rows, rejections

    def inspect_photo_set(self, photo_ids: Sequence[int], name: str | None) -> dict[str, Any]:
        """Inspect stored photos as one set of a subject of class `name`: `photos` (id,
        filename, `inspection` JSON, and `level` 'ok' or 'warning' with the `reasons`, the set's
        verdicts on that photo included), `report` (`inspection.report_card`), and the
        `characteristics` most photos agree on with their `confidence` (0..1). Photos no longer
        stored are left out."""
        rows = self.get_photos(photo_ids)
        key = (tuple(row["id"] for row in rows), name)
        with self._photo_set_lock:
            if key in self._photo_set_cache:
                self._photo_set_cache.move_to_end(key)
                return copy.deepcopy(self._photo_set_cache[key])
        result = self._inspect_stored_photos(rows, name)
        with self._photo_set_lock:
            self._photo_set_cache[key] = copy.deepcopy(result)
            while len(self._photo_set_cache) > PHOTO_SET_CACHE:
                self._photo_set_cache.popitem(last=False)
        return result

    def _inspect_stored_photos(self, rows: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
        from studio.inspection import analyze_photo
        from studio.inspection_report import report_card

        analyzer = self.face_analyzer
        inspections = [analyze_photo(np.asarray(self._photo_image(row)), analyzer, name) for row in rows]
        card = report_card(inspections, analyzer.same_person_distance)
        reasons = [list(inspection.warnings) for inspection in inspections]
        for group in card["near_duplicates"]:
            for index in group:
                others = ", ".join(str(other + 1) for other in group if other != index)
                reasons[index].append(f"Nearly the same as photo {others}: keep one of them.")
        for outlier in card["identity_outliers"]:
            reasons[outlier["index"]].append("This may be a different person: remove it.")
        photos = [
            {
                "id": row["id"],
                "filename": row["filename"],
                "inspection": inspection.to_json(),
                "level": "warning" if why else "ok",
                "reasons": why,
            }
            for row, inspection, why in zip(rows, inspections, reasons)
        ]
        return {
            "photos": photos,
            "report": card,
            "characteristics": card["characteristics"],
            "confidence": card["characteristics_confidence"],
        }

    def get_photos(self, photo_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The stored photos with these ids, in that order, each with its inspection JSON. Ids
        that no longer exist (their tune was deleted with them) are left out."""
        rows = (self.store.get_photo(int(photo_id)) for photo_id in dict.fromkeys(photo_ids))
        return [row for row in rows if row is not None]

    def tune_photos(self, tune_id: int) -> list[dict[str, Any]]:
        """The photos a tune was made from, in upload order."""
        self._user_tune(tune_id)
        return self.store.tune_photos(tune_id)

    def tune_photo_file(self, tune_id: int, photo_id: int) -> Path:
        """The stored file of one of the tune's photos (what `orig_images` links to). NotFound
        unless the photo belongs to that tune, so a URL cannot be bent to another tune's photo."""
        photo = next((p for p in self.tune_photos(tune_id) if p["id"] == photo_id), None)
        if photo is None:
            raise NotFound(f"Tune {tune_id} has no photo {photo_id}.", field="photo_id")
        return self.files.path(photo["path"])

    def photo_thumbnail(self, photo_id: int, side: int = 192):
        """A stored photo as an RGB PIL image at most `side` px a side. Photos are private: the
        UI shows these renderings, never a URL of the photo file."""
        row = self.store.get_photo(photo_id)
        if row is None:
            raise NotFound(f"Photo {photo_id} does not exist; upload it again.", field="photo_id")
        return _thumbnail(self._photo_image(row), side)

    def adapter_thumbnail(self, kind: str, name: str, side: int = 192):
        """A face, style or pose avatar's image at most `side` px a side; None for a LoRA."""
        adapter = self.get_adapter(kind, name)
        if kind == "lora":
            return None
        return _thumbnail(self._decode_image(self.files.read(adapter["path"]), kind), side)

    def adapter_token(self, adapter: Mapping[str, Any]) -> str:
        """The prompt token that uses a saved adapter at its default weight, in Block Entropy's
        form, e.g. `<be-style:cartoon1:0.5>`."""
        return f"<be-{adapter['kind']}:{adapter['name']}:{format_weight(adapter['weight'])}>"

    def tune_token(self, tune_id: int, weight: float = 1.0) -> str:
        """The prompt token that uses a LoRA or FaceID tune, e.g. `<lora:12:1>`."""
        tune = self._user_tune(tune_id)
        return f"<{tune['model_type']}:{tune['id']}:{format_weight(weight)}>"

    def lora_file(self, tune_id: int) -> Path:
        """The trained tune's LoRA in kohya/A1111 layout (what other tools load), at its active
        checkpoint. Conflict when the tune has no LoRA (FaceID, or not trained yet)."""
        tune = self._user_tune(tune_id)
        if not tune.get("kohya_path"):
            what = "a FaceID tune: it has no LoRA" if tune["model_type"] == "faceid" else f"{tune['status']}"
            raise Conflict(f"Tune {tune_id} is {what}; download its LoRA once it is trained.", field="tune_id")
        return self.files.path(tune["kohya_path"])

    def public_path(self, relative: str) -> Path:
        """The absolute path of a stored file in a public area (outputs, covers, samples), for
        a UI that shows it; ValueError for a private area (photos, weights…)."""
        path = self.files.path(relative)
        if not any(path.is_relative_to(folder) for folder in self.files.public_dirs()):
            raise ValueError(f"{relative} is not in a public file area")
        return path

    # -- studio UI: generate, gallery and packs views (issue 7) --------------------------------

    def prompt_tokens(self) -> list[dict[str, str]]:
        """The tokens a prompt can use now, for the token help beside a prompt box: each trained
        LoRA and FaceID tune (`<lora:12:1>`, `<faceid:7:1>`), then each saved avatar and LoRA at
        its default weight (`<be-style:cartoon1:0.5>`). Each is {token, kind, label}."""
        tokens = [
            {"token": self.tune_token(tune["id"]), "kind": tune["model_type"], "label": tune["title"]}
            for tune in self.store.list_tunes(limit=1000)
            if tune["model_type"] in ("lora", "faceid") and tune["status"] == SUCCESS
        ]
        tokens += [
            {"token": self.adapter_token(adapter), "kind": adapter["kind"], "label": adapter["name"]}
            for adapter in self.list_adapters()
        ]
        return tokens

    def prompt_progress(self, prompt_id: int) -> dict[str, Any]:
        """`get_prompt` plus where its generation is: `queued` (its job waits in the queue; a
        QUEUING prompt that is not queued waits for its tune's training), `ahead` (unfinished
        jobs queued before it, 0 once it runs), `step` and `total` (denoising steps done and
        planned, 0 before it starts) and `eta` (ISO time, None when unknown)."""
        prompt = self.get_prompt(prompt_id)
        job = self.store.latest_job("generate", prompt_id)
        waiting = job is not None and job["status"] == QUEUING
        return {
            **prompt,
            "queued": waiting,
            "step": job["step"] if job else 0,
            "total": job["total"] if job else 0,
            "eta": job["eta"] if job and job["status"] in (QUEUING, TRAINING) else None,
            "ahead": self.store.jobs_ahead(job["id"]) if waiting else 0,
        }

    def rerun_prompt(self, prompt_id: int, image_idx: int | None = None) -> dict[str, Any]:
        """Queue a new prompt like `prompt_id`: same tune, text, negative prompt, parameters and
        input image. With `image_idx` it makes one image with that image's seed (the same image
        again, or the effect of what changed since, e.g. another active checkpoint); without, all
        of them with the same seeds. A prompt made from a pack stays linked to its pack prompt.
        Returns the new prompt (`get_prompt`); InvalidInput for an image index out of range."""
        prompt = self.get_prompt(prompt_id)
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
        request = PromptRequest(text=prompt["text"], negative_prompt=prompt["negative_prompt"] or "", **values)
        return self.create_prompt(prompt["tune_id"], request, orig_prompt_id=prompt["orig_prompt_id"])

    def delete_prompt(self, prompt_id: int) -> None:
        """Delete a prompt with its images (from disk too, unless another row shows the same
        file), likes and jobs; its pack's counts drop accordingly. Conflict while it waits or
        runs: cancel it first."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            raise NotFound(f"Prompt {prompt_id} does not exist.", field="prompt_id")
        if prompt["status"] in (QUEUING, TRAINING):
            raise Conflict(f"Prompt {prompt_id} is {prompt['status']}: stop it first, then delete.", field="prompt_id")
        for path in self.store.purge_prompt(prompt_id):
            self.files.delete(path)

    def gallery(
        self,
        *,
        tune_id: int | None = None,
        pack_id: int | None = None,
        sort: str = "newest",
        limit: int = 24,
        offset: int = 0,
        user: str | None = None,
        likeness: str = "all",
    ) -> list[dict[str, Any]]:
        """Prompts for the gallery views, `sort` 'newest', 'likes' (most liked first) or
        'likeness' (best image likeness first, unscored last), of one tune and/or made from one
        pack when given; `likeness` 'match' keeps prompts with an image of the subject, 'miss'
        those whose scored images all miss it (no face, or another person), 'all' every one.
        Each is the prompt row with `tune_title`, `pack_id`, `pack_title` (None outside packs),
        `warnings`, and `images`: per image {idx, path, seed, width, height, likes (that
        image's), liked (by `user`), likeness (record or None)}. The prompt's `likes_count`
        counts every like of it and of its images. Raises InvalidInput for a bad sort or
        likeness filter, or a limit outside 1..200."""
        if sort not in ("newest", "likes", "likeness"):
            raise InvalidInput(f"sort '{sort}' is not 'newest', 'likes' or 'likeness'.", field="sort")
        if likeness not in ("all", "match", "miss"):
            raise InvalidInput(f"likeness filter '{likeness}' is not 'all', 'match' or 'miss'.", field="likeness")
        if not 1 <= limit <= 200 or offset < 0:
            raise InvalidInput("limit must be 1 to 200 and offset at least 0.", field="limit")
        rows = self.store.gallery_prompts(
            tune_id=tune_id,
            pack_id=pack_id,
            order=sort,
            limit=limit,
            offset=offset,
            likeness=None if likeness == "all" else likeness,
        )
        return [
            {**row, "warnings": row.get("warnings") or [], "images": self.prompt_images(row["id"], user)}
            for row in rows
        ]

    def prompt_images(self, prompt_id: int, user: str | None = None) -> list[dict[str, Any]]:
        """A prompt's images in order, each {idx, path, seed, width, height, likes, liked,
        likeness}: `likes` counts that image's likes, `liked` says whether `user` liked it,
        `likeness` is its studio/likeness.py record (None: not scored)."""
        likes = self.store.image_likes(prompt_id)
        mine = set(self.store.liked_by(prompt_id, user)) if user else set()
        return [
            {
                **{k: image[k] for k in ("idx", "path", "seed", "width", "height")},
                "likes": likes.get(image["idx"], 0),
                "liked": image["idx"] in mine,
                "likeness": image["likeness"],
            }
            for image in self.store.prompt_images(prompt_id)
        ]

    # -- REST API: Astria's requests as studio calls (issue 8) ---------------------------------

    def api_create_tune(
        self, fields: Mapping[str, Any], uploads: Sequence[tuple[str, bytes]] = (), *, base_url: str | None = None
    ) -> dict[str, Any]:
        """Astria's `POST /tunes`. `fields` are the tune's fields as the API parsed them (JSON
        values, or multipart's bracketed `tune[...]` fields as strings); `uploads` its `images`
        files as (filename, bytes). Everything that can be checked is checked before a photo is
        downloaded or anything is stored: the fields, the class (`name`, one of
        packs.CLASS_NAMES) and the number of photos (uploads plus `image_urls`, at most
        max_photos, else TooLarge). The `image_urls` are then fetched (see `_fetch_photos`),
        unless the title names an existing tune, which is returned as it is (idempotency).
        Returns `create_tune`'s answer."""
        request = tune_request_from_fields(fields)
        check_request(request)
        if request.name not in packs.CLASS_NAMES:
            raise InvalidInput(
                f"name {request.name!r} is not a class the studio knows: use one of {', '.join(packs.CLASS_NAMES)}.",
                field="name",
            )
        urls = self._photo_urls(fields.get("image_urls"), len(uploads))
        photos = list(uploads)
        if self.store.find_tune_by_title(request.title.strip()) is None:
            photos += self._fetch_photos(urls)
        return self.create_tune(request, photos=photos, base_url=base_url)

    def api_tune_from_pack(
        self,
        pack_id: int | str,
        fields: Mapping[str, Any],
        uploads: Sequence[tuple[str, bytes]] = (),
        *,
        base_url: str | None = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Astria's `POST /p/:id/tunes` (pack by id or slug). With `tune_ids`, the pack's prompts
        are made on those existing tunes (`run_pack`) and returned as a list. Otherwise a tune
        is made from `title`, `name`, the photos (as in `api_create_tune`), `callback`,
        `characteristics` and `branch`, and runs the pack's prompts of its class once trained
        (`tune_from_pack`). Either way each prompt posts to `prompt_attributes.callback`, and
        `prompts_callback` gets them all once they are done. The pack, class, prompts and fields
        are checked before any photo is fetched. Returns the tune."""
        pack = self._pack_row(pack_id)
        prompt_ids = _api_ids(fields.get("prompt_ids"), "prompt_ids")
        attributes = fields.get("prompt_attributes") or {}
        if not isinstance(attributes, Mapping):
            raise InvalidInput(
                'prompt_attributes must be an object such as {"callback": "https://…"}.', field="prompt_attributes"
            )
        prompt_callback = _api_text(attributes.get("callback"))
        tune_ids = _api_ids(fields.get("tune_ids"), "tune_ids")
        if tune_ids:
            return self.run_pack(
                pack["id"],
                tune_ids,
                prompt_ids=prompt_ids,
                prompt_callback=prompt_callback,
                prompts_callback=_api_text(fields.get("prompts_callback")),
                base_url=base_url,
            )
        title, name = _api_text(fields.get("title")), _api_text(fields.get("name"))
        for value, field_name in ((title, "title"), (name, "name")):
            if not value:
                raise InvalidInput(f"{field_name} is required.", field=field_name)
        characteristics = _api_characteristics(fields.get("characteristics"))
        self._pack_runs(pack, packs.check_class_name(name), pack["token"], characteristics, prompt_ids)
        urls = self._photo_urls(fields.get("image_urls"), len(uploads))
        photos = list(uploads)
        if self.store.find_tune_by_title(title) is None:
            photos += self._fetch_photos(urls)
        return self.tune_from_pack(
            pack["id"],
            photos,
            name,
            title,
            characteristics,
            prompt_ids=prompt_ids,
            callback=_api_text(fields.get("callback")),
            prompt_callback=prompt_callback,
            prompts_callback=_api_text(fields.get("prompts_callback")),
            branch=_api_text(fields.get("branch")),
            base_url=base_url,
        )

    def api_create_prompt(
        self,
        tune_id: int,
        fields: Mapping[str, Any],
        input_image: bytes | None = None,
        *,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """Astria's `POST /tunes/:id/prompts`. `fields` as the API parsed them; the input image
        is the uploaded `input_image` file, else fetched from `input_image_url` (like
        `image_urls`), else decoded from `input_image_base64` (a data URL). Returns
        `create_prompt`'s answer."""
        extra = ("input_image", "input_image_url", "input_image_base64")
        values = {key: value for key, value in fields.items() if key not in extra}
        url, data_url = _api_text(fields.get("input_image_url")), _api_text(fields.get("input_image_base64"))
        if input_image is None and url:
            [(_, input_image)] = self._fetch_photos([url], field="input_image_url")
        elif input_image is None and data_url:
            input_image = packs.decode_data_url(data_url, "input_image_base64")
        if input_image is not None:
            values["input_image"] = input_image
        return self.create_prompt(tune_id, values, base_url=base_url)

    def api_tune(self, tune_id: int, base_url: str | None = None) -> dict[str, Any]:
        """`GET /tunes/:id`: a user tune as `tune_json` shows it, or a gallery base model as a
        tune (Astria's clients post prompts to base tunes such as 690204) with its `family`,
        `embedded` and `available`."""
        tune = self.tune_json(tune_id, base_url)
        if tune["model_type"] == "checkpoint":
            model = self.base_model(tune_id)
            tune.update(family=model["family"], embedded=model["embedded"], available=model["available"])
        return tune

    def api_delete_tune(self, tune_id: int) -> None:
        """Astria's `DELETE /tunes/:id`: API clients have no cancel call, so the tune's training
        and unfinished prompts are canceled first, then it is deleted with everything it made
        (`delete_tune`). Base models are not deletable (NotFound)."""
        self._user_tune(tune_id)
        for job in self.store.tune_jobs(tune_id):
            self.store.cancel_job(job["id"])
        self.delete_tune(tune_id)

    def api_delete_prompt(self, prompt_id: int, tune_id: int | None = None, *, wait: float = 30.0) -> None:
        """Astria's `DELETE /prompts/:id` and `DELETE /tunes/:tune_id/prompts/:id` (NotFound
        unless the prompt belongs to `tune_id` when given). As with tunes, an unfinished prompt
        is canceled first (its callbacks fire as CANCELED) and a running one is given up to
        `wait` seconds to stop; then it is deleted with its images and likes (`delete_prompt`)."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None or (tune_id is not None and prompt["tune_id"] != tune_id):
            where = f"Tune {tune_id} has no prompt {prompt_id}." if tune_id is not None else ""
            raise NotFound(where or f"Prompt {prompt_id} does not exist.", field="prompt_id")
        if prompt["status"] in (QUEUING, TRAINING):
            try:
                self.cancel_prompt(prompt_id)
            except Conflict:  # it finished meanwhile: nothing to stop
                pass
            job = self.store.latest_job("generate", prompt_id)
            if job is not None and not self._wait_for_job(job["id"], wait):
                raise Conflict(f"Prompt {prompt_id} is still stopping; try again shortly.", field="prompt_id")
        self.delete_prompt(prompt_id)

    def api_prompts(
        self,
        tune_id: int | None = None,
        *,
        limit: int = 20,
        offset: int = 0,
        before_id: int | None = None,
        base_url: str | None = None,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Prompts newest first (of one tune, or all), as `prompt_json` shows them to `user`."""
        if tune_id is not None and self.store.get_tune(tune_id) is None:
            raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
        rows = self.store.list_prompts(tune_id=tune_id, limit=limit, offset=offset, before_id=before_id)
        return _still_there(lambda prompt_id: self.prompt_json(prompt_id, base_url, user), rows)

    def api_prompt(
        self, tune_id: int, prompt_id: int, base_url: str | None = None, user: str | None = None
    ) -> dict[str, Any]:
        """`GET /tunes/:tune_id/prompts/:id`; NotFound unless the prompt belongs to the tune."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None or prompt["tune_id"] != tune_id:
            raise NotFound(f"Tune {tune_id} has no prompt {prompt_id}.", field="prompt_id")
        return self.prompt_json(prompt_id, base_url, user)

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

    def api_inspect(self, name: Any, data: bytes | None, url: Any = None) -> dict[str, Any]:
        """Astria's `POST /images/inspect`: one photo (`data`, else fetched from `url` like
        `image_urls`) of class `name` (one of packs.CLASS_NAMES), inspected with the studio's
        face analyzer: Astria's characteristics and booleans (`inspection.PhotoInspection`'s
        JSON) plus findings, warnings and faces. Nothing is stored. InvalidInput (field
        `file`) for a file that is not a usable photo."""
        from studio.inspection import analyze_photo, decode_photo

        name = _api_text(name)
        if name not in packs.CLASS_NAMES:
            raise InvalidInput(
                f"name must be the class of the subject, one of {', '.join(packs.CLASS_NAMES)}.", field="name"
            )
        if data is None:
            url = _api_text(url)
            if not url:
                raise InvalidInput("Send the photo as `file` (multipart) or as `file_url`.", field="file")
            [(_, data)] = self._fetch_photos([url], field="file_url")
        photo = decode_photo(data, "file", max_bytes=self.settings.max_upload_mb * 2**20)
        return analyze_photo(photo.rgb(), self.face_analyzer, name).to_json()

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

    def _photo_urls(self, urls: Any, uploads: int) -> list[str]:
        """`image_urls` checked without fetching: http(s) URLs (one string counts as a list of
        one) that, with the `uploads` files, make at most max_photos photos (else TooLarge)."""
        if urls is None or urls == "":
            urls = []
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise InvalidInput("image_urls must be a list of http or https URLs.", field="image_urls")
        total = uploads + len(urls)
        if total > self.settings.max_photos:
            raise TooLarge(
                f"{total} photos are too many: a tune takes at most {self.settings.max_photos} "
                "(STUDIO_MAX_PHOTOS); send your best ones.",
                field="images",
            )
        for url in urls:
            if urlsplit(url.strip()).scheme not in ("http", "https"):
                raise InvalidInput(f"image URL {url!r} must be an http or https address.", field="image_urls")
        return [url.strip() for url in urls]

    def _fetch_photos(self, urls: Sequence[str], field: str = "image_urls") -> list[tuple[str, bytes]]:
        """Download `urls` (four at a time) as (filename, bytes) uploads with `fetch_url`'s
        rules: http(s) only, public addresses unless STUDIO_ALLOW_PRIVATE_URLS, at most
        max_upload_mb each, a time limit. The first failure raises InvalidInput (or TooLarge)
        naming `field`."""
        from concurrent.futures import ThreadPoolExecutor

        from studio.fetch import fetch_url

        def fetch(url: str) -> tuple[str, bytes]:
            try:
                data = fetch_url(
                    url,
                    max_bytes=self.settings.max_upload_mb * 2**20,
                    allow_private=self.settings.allow_private_urls,
                )
            except StudioError as error:
                error.field = field
                raise
            return (Path(urlsplit(url).path).name or "image"), data

        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="studio-fetch") as pool:
            return list(pool.map(fetch, urls))

    # -- likeness: how much each image looks like its subject (issue 10) -----------------------

    def likeness_reference(self, tune_id: int) -> tuple[np.ndarray, str] | None:
        """(unit reference embedding, face backend that made it) of a subject tune, or None when
        its images are not scored: not a LoRA/FaceID tune of a person (`likeness.scores_subject`)
        or no face in its photos. A FaceID tune's is the one it generates with; a LoRA tune's is
        computed from its photos with the studio's face analyzer the first time it is asked for
        and stored like a FaceID tune's (`face_backend` set with no `embedding_path` records that
        no photo showed a face, so it is not looked for again). Unavailable when the backend is
        not installed."""
        tune = self._user_tune(tune_id)
        if not likeness.scores_subject(tune):
            return None
        if tune["embedding_path"]:
            vector = np.load(io.BytesIO(self.files.read(tune["embedding_path"])), allow_pickle=False)
            return likeness.unit(vector), tune["face_backend"]
        if tune["model_type"] != "lora" or tune["face_backend"]:
            return None
        analyzer = self.face_analyzer
        photos = (np.asarray(self._photo_image(row)) for row in self.store.tune_photos(tune_id))
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

    def score_likeness(self, tune_id: int, image) -> dict[str, Any] | None:
        """The likeness record (studio/likeness.py) of a PIL `image` against tune `tune_id`'s
        subject, scored with the backend that made its reference; None when the tune's images
        are not scored (see `likeness_reference`). Unavailable when that backend is missing."""
        found = self.likeness_reference(tune_id)
        if found is None:
            return None
        reference, backend = found
        return likeness.score_image(self._likeness_analyzer(backend), reference, np.asarray(image.convert("RGB")))

    def rescore_prompt(self, prompt_id: int) -> dict[str, Any]:
        """Score a prompt's stored images again (after its tune's photos changed, or for images
        made before likeness existed) and record the results; returns `get_prompt`."""
        prompt = self.get_prompt(prompt_id)
        stored = self.store.prompt_images(prompt_id)
        images = [self._decode_image(self.files.read(row["path"]), "image") for row in stored]
        records = self._prompt_likeness(prompt, images)
        with self.store.transaction():
            for row, record in zip(stored, records):
                self.store.set_image_likeness(prompt_id, row["idx"], record)
        return self.get_prompt(prompt_id)

    def score_checkpoints(self, tune_id: int) -> list[dict[str, Any]]:
        """Score the sample image of each of a LoRA tune's checkpoints against its subject and
        record it on the checkpoint; returns `tune_checkpoints`. `likeness.best_step` of them
        is the step `tune_json` marks best. Unavailable when the face backend is missing."""
        tune = self._user_tune(tune_id)
        for checkpoint in self.store.tune_checkpoints(tune_id):
            record = None
            if checkpoint["sample_path"]:
                image = self._decode_image(self.files.read(checkpoint["sample_path"]), "sample")
                record = self.score_likeness(tune["id"], image)
            self.store.update_checkpoint(checkpoint["id"], likeness=record)
        return self.tune_checkpoints(tune_id)

    def _prompt_likeness(self, prompt: Mapping[str, Any], images: Sequence) -> list[dict[str, Any] | None]:
        """Likeness records for a prompt's PIL `images` against the subject of its tune (or of
        the first FaceID/LoRA tune its text names); Nones when there is none. A missing face
        backend is logged, not raised: the images are good without a score."""
        tune = self.store.get_tune(prompt["tune_id"]) or {}
        subject = likeness.subject_tune_id(tune, prompt["text"])
        subject_tune = self.store.get_tune(subject) if subject is not None else None
        if subject_tune is None or not likeness.scores_subject(subject_tune):
            return [None] * len(images)
        try:
            return [self.score_likeness(subject, image) for image in images]
        except Unavailable as error:
            log.warning("prompt %s: images not scored for likeness: %s", prompt["id"], error.message)
            return [None] * len(images)

    def _likeness_analyzer(self, backend: str):
        """The analyzer of `backend` (the one that made a reference): the studio's own when it
        is that backend, else one loaded once and kept."""
        if backend == resolve_backend(self.settings.face_backend):
            return self.face_analyzer
        with self._face_analyzer_lock:
            if backend not in self._likeness_analyzers:
                self._likeness_analyzers[backend] = open_analyzer(backend)
            return self._likeness_analyzers[backend]

    # -- photos and inspection (issue 4) -------------------------------------------------------
    # `face_analyzer` and `add_photos` (store uploads with their inspection) are in the photo
    # sets section above; these are the stateless checks, nothing here is stored.

    def inspect_photo(self, data: bytes, name: str | None = None) -> dict[str, Any]:
        """Astria's image inspect for one upload of a subject of class `name` (man, woman…;
        None for any person): the `PhotoInspection` JSON (characteristics as strings, findings
        as booleans, plus each finding's score and threshold, warnings, faces, face_backend).
        Raises InvalidInput (field 'file') saying why the file is not a usable photo, and
        Unavailable when the face backend is not installed."""
        from studio.inspection import analyze_photo

        photo = decode_photo(data, "file", max_bytes=self.settings.max_upload_mb * 2**20)
        return analyze_photo(photo.rgb(), self.face_analyzer, name).to_json()

    def inspect_set(self, files: Sequence[tuple[str, bytes]], name: str | None = None) -> dict[str, Any]:
        """Inspect uploads ((filename, bytes) pairs) as one training set of class `name`.

        Returns `photos` (per accepted photo: `index`, `filename` and its inspection JSON),
        `rejected` ({filename, reason} per refused file: bad files never stop the good ones),
        `report` (`inspection.report_card`; its indexes are those of `photos`),
        `characteristics` with `characteristics_confidence`, and `face_backend`."""
        from studio.inspection import analyze_photo, validate_uploads
        from studio.inspection_report import report_card

        photos, rejections = validate_uploads(
            files, max_photos=self.settings.max_photos, max_bytes=self.settings.max_upload_mb * 2**20
        )
        analyzer = self.face_analyzer
        pool = self._pool_for(len(photos))
        if pool is not None:
            inspections = pool.analyze([photo.rgb() for photo in photos], name)
        else:
            inspections = [analyze_photo(photo.rgb(), analyzer, name) for photo in photos]
        card = report_card(inspections, analyzer.same_person_distance)
        return {
            "photos": [
                {"index": i, "filename": photo.filename, **inspection.to_json()}
                for i, (photo, inspection) in enumerate(zip(photos, inspections))
            ],
            "rejected": [rejection.to_json() for rejection in rejections],
            "report": card,
            "characteristics": card["characteristics"],
            "characteristics_confidence": card["characteristics_confidence"],
            "face_backend": analyzer.name,
        }

    def _pool_for(self, count: int):
        """Worker processes for inspecting `count` photos, or None to inspect them here: only
        the dlib backend gains from them (it holds the GIL; onnxruntime already uses every
        core), only with a second core, and only for sets big enough to repay starting them.
        Started on first use and kept until `close`."""
        import os

        from studio.inspection import InspectionPool

        workers = min(4, os.cpu_count() or 1)
        if count < 6 or workers < 2 or resolve_backend(self.settings.face_backend) != "dlib":
            return None
        with self._face_analyzer_lock:
            if self._inspection_pool is None:
                self._inspection_pool = InspectionPool("dlib", workers)
            return self._inspection_pool

    def face_backend_status(self) -> str:
        """The face backend in use and why the others are not, for the status view. Looks at
        installed files only; nothing is loaded."""
        from studio.faces import backends_report

        report = backends_report(self.settings.face_backend)
        missing = [f"{name}: {why}" for name, why in report["missing"].items() if why and name != report["backend"]]
        chosen = f"{report['backend']} (STUDIO_FACE_BACKEND={report['choice']})"
        if report["missing"].get(report["backend"]):
            chosen += f", not usable: {report['missing'][report['backend']]}"
        return chosen + ("; " + "; ".join(missing) if missing else "")

    # -- status ------------------------------------------------------------------------------

    def _device_description(self) -> str:
        """The device and dtype generation and training run on, as STUDIO_DEVICE resolves here."""
        from studio.engine_models import pick_device

        try:
            device, dtype = pick_device(self.settings.device)
        except Unavailable as error:
            return f"{self.settings.device}, not available: {error}"
        chosen = "chosen automatically" if self.settings.device == "auto" else "STUDIO_DEVICE"
        return f"{device} ({str(dtype).removeprefix('torch.')}, {chosen})"

    def status(self) -> dict[str, Any]:
        """What the Settings/status view shows: where data lives, which model and device."""
        base = self.default_base_model()
        return {
            "home": str(self.home),
            "base_model": base["title"],
            "demo_model": base["source"] == DEMO_SOURCE,
            "device": self._device_description(),
            "api_keys": len(self.settings.api_keys),
            "auth": bool(self.settings.auth),
            "face_backend": self.face_backend_status(),
            "training": "FaceID only: " + zerogpu.TRAINING_REFUSED if self.zero_gpu else "LoRA and FaceID tunes",
            "tune_expiry": (
                f"tunes are deleted {self.settings.tune_expiry_days} days after they are made (STUDIO_TUNE_EXPIRY_DAYS)"
                if self.settings.tune_expiry_days
                else "never (STUDIO_TUNE_EXPIRY_DAYS=0)"
            ),
        }


# IP-Adapters, image encoders and ControlNets for real models, per family (hub files).
HUB_ADAPTERS: dict[str, dict[str, Any]] = {
    "sd15": {
        "style": "hf://h94/IP-Adapter/models/ip-adapter_sd15.safetensors",
        "image_encoder": "hf://h94/IP-Adapter/models/image_encoder",
        "faceid": {"512": "hf://h94/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin"},
        "controlnet": {
            "pose": "hf://lllyasviel/control_v11p_sd15_openpose",
            "canny": "hf://lllyasviel/control_v11p_sd15_canny",
        },
    },
    "sdxl": {
        "style": "hf://h94/IP-Adapter/sdxl_models/ip-adapter_sdxl_vit-h.safetensors",
        "image_encoder": "hf://h94/IP-Adapter/models/image_encoder",
        "faceid": {"512": "hf://h94/IP-Adapter-FaceID/ip-adapter-faceid_sdxl.bin"},
        "controlnet": {
            "pose": "hf://thibaud/controlnet-openpose-sdxl-1.0",
            "canny": "hf://diffusers/controlnet-canny-sdxl-1.0",
        },
    },
}


def _timestamp(moment: datetime) -> str:
    """A UTC datetime in the form `storage.db.now()` writes (ISO 8601, milliseconds, Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_likeness(ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked rows, in their order, with their likeness figures (studio/likeness.py)."""
    return [likeness.with_stats(row) for row in ranked]


def _still_there(render: Callable[[int], dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`render(id)` of each listed row, leaving out those deleted since the listing: rendering
    reads each row again, and a concurrent delete must not turn a whole listing into a 404."""
    shown = []
    for row in rows:
        try:
            shown.append(render(row["id"]))
        except NotFound:
            continue
    return shown


def _prompt_fields(spec: PromptSpec) -> dict[str, Any]:
    """A tune's prompt spec as the fields `create_prompt` takes."""
    fields = {**spec.params, "text": spec.text, "negative_prompt": spec.negative_prompt, "callback": spec.callback}
    return {k: v for k, v in fields.items() if v is not None}


def _weight(ref: Reference, adapter: Mapping[str, Any]) -> float:
    """The token's weight, or the saved adapter's default when the token gave none."""
    return ref.weight if ref.explicit else float(adapter["weight"])


def _local_source(source: str) -> bool:
    """True when a base model's source names a local folder or file rather than a hub id
    (owner/name), as the engine tells them apart."""
    return source.startswith(("/", ".", "~")) or source.endswith(".safetensors") or source.count("/") != 1


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _lora_family(header: dict) -> str | None:
    """sd15 or sdxl from a LoRA's cross-attention input width (768 or 2048), else None."""
    widths = {768: "sd15", 2048: "sdxl"}
    for key, info in header.items():
        lowered = key.lower()
        if "attn2" in lowered and "to_k" in lowered and any(d in lowered for d in ("lora_down", "lora.down", "lora_a")):
            shape = info["shape"]  # a list of ints: safetensors_header checked it
            return widths.get(shape[-1]) if shape else None
    return None


def _thumbnail(image, side: int):
    """A copy of `image` shrunk (never enlarged) to fit `side` x `side`, aspect kept."""
    if side < 16:
        raise InvalidInput("A thumbnail needs a side of at least 16 px.", field="side")
    small = image.copy()
    small.thumbnail((side, side))
    return small


def _api_text(value: Any) -> str | None:
    """A text field of an API request: stripped, None when absent or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _api_ids(value: Any, field: str) -> list[int] | None:
    """A list of ids from JSON (numbers) or a form (`tune_ids[]=1`, or "1,2"); None when
    absent. InvalidInput naming `field` for anything that is not a positive whole number."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    ids = []
    for item in items:
        try:
            number = int(str(item).strip()) if not isinstance(item, bool) else 0
        except ValueError:
            number = 0
        if not 1 <= number < 2**63:
            raise InvalidInput(f"{field} must be a list of ids (positive whole numbers); got {item!r}.", field=field)
        ids.append(number)
    return ids


def _api_characteristics(value: Any) -> dict[str, Any] | None:
    """`characteristics` from JSON (an object), a form (`tune[characteristics][eye_color]=…`)
    or JSON text; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
            value = None
    if not isinstance(value, Mapping):
        raise InvalidInput(
            'characteristics must be an object of text values, e.g. {"eye_color": "blue eyes"}.',
            field="characteristics",
        )
    return dict(value)
