"""Studio: the one application facade. `app.py`, the UI, the REST API and the tests call only it.

A `Studio` is built once in `app.py` with `Studio.open(settings)` and passed to whatever needs
it; nothing here is global. It wires the domain services (studio/services/, each given its
store, files, runtime and the services below it) and forwards its public methods to them, so
each capability lives in one module:

    models      BaseModels     the gallery, which base models run here, the default one
    views       Views          a prompt with its images; Astria's tune/prompt/pack JSON and URLs
    photos      Photos         uploads stored with their inspection, sets inspected, URLs fetched
    adapters    Adapters       uploaded LoRAs and face/style/pose avatars, the token help
    likeness    Likeness       reference embeddings and likeness scores of images and checkpoints
    captions    Captions       captions of training photos: made, edited, read by training
    resolver    PromptResolver prompt text and tune -> the engine's GenerateRequest
    queue       JobQueue       enqueue, the worker, finished-job follow-ups and callbacks
    prompts     Prompts        create, run (generation), cancel, rerun, delete
    tunes       Tunes          create (uploads, photo ids, image URLs), cancel, delete, expiry
    training    TrainingJob    the 'train' job: photos prepared, LoRA trained, checkpoints kept
    packs       Packs          authoring, import/export, rankings, tunes and prompts from packs
    likes       Likes          likes, the gallery by likes or likeness, prompt rankings
    keys        ApiKeys        API keys and who a key acts for

Services import only downward in that order (never this module, never each other in a loop);
`runtime` (studio/runtime.py) holds the heavy resources they share (engine, face analyzers,
inspection pool, ZeroGPU), built on first use and injectable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage import FileStore, Store
from studio import zerogpu
from studio.config import Settings
from studio.jobs import JobRunner, Worker
from studio.runtime import Runtime
from studio.services.adapters import Adapters
from studio.services.api_keys import ApiKeys
from studio.services.captions import Captions
from studio.services.likeness import Likeness
from studio.services.likes import Likes
from studio.services.models import DEMO_SOURCE, BaseModels
from studio.services.packs import Packs
from studio.services.photos import Photos
from studio.services.prompts import Prompts
from studio.services.queue import JobQueue
from studio.services.resolution import PromptResolver
from studio.services.training import TrainingJob
from studio.services.tunes import Tunes
from studio.services.views import Views


def _via(service: str, method: Callable, name: str | None = None) -> Callable:
    """A Studio method (named `name`, default the method's own) that calls `method` on the
    service held in the attribute `service`; its docstring and signature are the service's."""

    @functools.wraps(method)
    def forward(self, *args, **kwargs):
        return getattr(getattr(self, service), method.__name__)(*args, **kwargs)

    if name is not None:
        forward.__name__ = forward.__qualname__ = name
    return forward


class Studio:
    """The studio: its settings, store, file store and runtime, and the services over them
    (see the module docstring for the map)."""

    def __init__(self, settings: Settings, store: Store, files: FileStore, runtime: Runtime | None = None):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime or Runtime(settings)
        self.models = BaseModels(settings, store)
        self.views = Views(settings, store, files, self.models)
        self.photos = Photos(settings, store, files, self.runtime)
        self.adapters = Adapters(settings, store, files, self.runtime, self.photos)
        self.likeness = Likeness(store, files, self.runtime, self.photos, self.views)
        self.resolver = PromptResolver(settings, store, files, self.models, self.photos)
        self.queue = JobQueue(settings, store, files, self.views)
        self.prompts = Prompts(
            settings, store, files, self.runtime, self.photos, self.resolver, self.likeness, self.queue, self.views
        )
        self.captions = Captions(store, self.runtime, self.photos)
        self.tunes = Tunes(
            settings,
            store,
            files,
            self.runtime,
            self.models,
            self.photos,
            self.prompts,
            self.queue,
            self.views,
            self.captions,
        )
        self.training = TrainingJob(
            settings, store, files, self.runtime, self.models, self.photos, self.likeness, self.captions
        )
        self.packs = Packs(settings, store, files, self.models, self.tunes, self.prompts, self.queue)
        self.likes = Likes(store)
        self.keys = ApiKeys(settings, store)
        # The job worker's thread starts only in `start_worker`; until then `run_pending` runs
        # queued jobs in the caller's thread (tests, scripts).
        handlers = {"train": self.training.run, "generate": self.prompts.run_job}
        options = {"on_finished": self.queue.job_finished, "housekeeping": self.tunes.sweep_expired}
        if settings.ray_address:  # jobs on a Ray cluster (DESIGN.md §8); ray is imported only then
            from studio.ray_runner import RayRunner, RayWorkers

            self.runtime.remote = RayWorkers(settings)
            self.queue.worker = RayRunner(store, handlers, self.runtime.remote, **options)
        else:
            self.queue.worker = Worker(store, handlers, **options)

    @classmethod
    def open(cls, settings: Settings, runtime: Runtime | None = None) -> Studio:
        """Open (creating if needed) the studio under `settings.home`: the database, the file
        store, the base-model gallery and the starter packs. Cheap: no model is loaded here."""
        home = settings.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        studio = cls(settings, Store(home / "db" / "studio.db"), FileStore(home / "files"), runtime)
        studio.models.sync_gallery()
        studio.packs.load_starter_packs()
        return studio

    def close(self) -> None:
        """Stop the job worker (a running job goes back to the queue), send the callbacks
        already queued, stop the inspection pool, then close the database."""
        self.queue.close()
        self.runtime.close()
        self.store.close()

    # -- where things are, and what runs -------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    @property
    def demo_model_dir(self) -> Path:
        return self.models.demo_model_dir

    def private_paths(self) -> list[Path]:
        """Everything under STUDIO_HOME that must never be served (database, photos, weights…)."""
        public = {p.name for p in self.files.public_dirs()}
        private = [p for p in self.home.iterdir() if p != self.files.root]
        private += [p for p in self.files.root.iterdir() if p.name not in public]
        return private

    @property
    def worker(self) -> JobRunner:
        return self.queue.worker

    @property
    def engine(self):
        return self.runtime.engine

    @property
    def face_analyzer(self):
        return self.runtime.face_analyzer

    @property
    def zero_gpu(self) -> bool:
        return self.runtime.zero_gpu

    def status(self) -> dict[str, Any]:
        """What the Settings/status view shows: where data lives, which model and device."""
        base = self.default_base_model()
        return {
            "home": str(self.home),
            "base_model": base["title"],
            "demo_model": base["source"] == DEMO_SOURCE,
            "device": self.runtime.device_description(),
            "api_keys": len(self.settings.api_keys),
            "auth": bool(self.settings.auth),
            "face_backend": self.face_backend_status(),
            "training": "FaceID only: " + zerogpu.TRAINING_REFUSED if self.zero_gpu else "LoRA and FaceID tunes",
            "memory_options": self.runtime.memory_description(),
            "jobs_run": self.runtime.runner_description(),
            "tune_expiry": (
                f"tunes are deleted {self.settings.tune_expiry_days} days after they are made (STUDIO_TUNE_EXPIRY_DAYS)"
                if self.settings.tune_expiry_days
                else "never (STUDIO_TUNE_EXPIRY_DAYS=0)"
            ),
        }

    # -- base models ---------------------------------------------------------------------------
    prepare = _via("models", BaseModels.prepare)
    base_models = _via("models", BaseModels.base_models)
    base_model = _via("models", BaseModels.base_model)
    default_base_model = _via("models", BaseModels.default_base_model)
    model_path = _via("models", BaseModels.model_path)

    # -- photos and inspection -----------------------------------------------------------------
    add_photos = _via("photos", Photos.add_photos)
    get_photos = _via("photos", Photos.get_photos)
    photo_thumbnail = _via("photos", Photos.photo_thumbnail)
    inspect_photo = _via("photos", Photos.inspect_photo)
    inspect_set = _via("photos", Photos.inspect_set)
    inspect_photo_set = _via("photos", Photos.inspect_photo_set)
    fetch_photos = _via("photos", Photos.fetch_photos)
    face_backend_status = _via("photos", Photos.face_backend_status)
    decode_image = _via("photos", Photos.decode_image)

    # -- tunes ---------------------------------------------------------------------------------
    create_tune = _via("tunes", Tunes.create_tune)
    get_tune = _via("tunes", Tunes.get_tune)
    list_tunes = _via("tunes", Tunes.list_tunes)
    cancel_tune = _via("tunes", Tunes.cancel_tune)
    delete_tune = _via("tunes", Tunes.delete_tune)
    sweep_expired = _via("tunes", Tunes.sweep_expired)
    tune_checkpoints = _via("tunes", Tunes.tune_checkpoints)
    set_active_checkpoint = _via("tunes", Tunes.set_active_checkpoint)
    use_best_step = _via("tunes", Tunes.use_best_step)
    tune_photos = _via("tunes", Tunes.tune_photos)
    tune_photo_file = _via("tunes", Tunes.tune_photo_file)
    tune_token = _via("tunes", Tunes.tune_token)
    lora_file = _via("tunes", Tunes.lora_file)
    training_memory = _via("tunes", Tunes.training_memory)

    # -- prompts and generation ----------------------------------------------------------------
    create_prompt = _via("prompts", Prompts.create_prompt)
    run_prompt = _via("prompts", Prompts.run_prompt)
    list_prompts = _via("prompts", Prompts.list_prompts)
    cancel_prompt = _via("prompts", Prompts.cancel_prompt)
    rerun_prompt = _via("prompts", Prompts.rerun_prompt)
    delete_prompt = _via("prompts", Prompts.delete_prompt)
    prompt_progress = _via("prompts", Prompts.prompt_progress)

    # -- the job queue -------------------------------------------------------------------------
    start_worker = _via("queue", JobQueue.start_worker)
    run_pending = _via("queue", JobQueue.run_pending)
    enqueue = _via("queue", JobQueue.enqueue)
    queue_prompt = _via("queue", JobQueue.queue_prompt)

    # -- adapters: uploaded LoRAs and avatars --------------------------------------------------
    add_adapter = _via("adapters", Adapters.add_adapter)
    get_adapter = _via("adapters", Adapters.get_adapter)
    list_adapters = _via("adapters", Adapters.list_adapters)
    delete_adapter = _via("adapters", Adapters.delete_adapter)
    adapter_thumbnail = _via("adapters", Adapters.adapter_thumbnail)
    adapter_token = _via("adapters", Adapters.adapter_token)
    prompt_tokens = _via("adapters", Adapters.prompt_tokens)

    # -- likeness ------------------------------------------------------------------------------
    likeness_reference = _via("likeness", Likeness.reference, "likeness_reference")
    score_likeness = _via("likeness", Likeness.score, "score_likeness")
    rescore_prompt = _via("likeness", Likeness.rescore_prompt)
    score_checkpoints = _via("likeness", Likeness.score_checkpoints)
    # -- captions of training photos -----------------------------------------------------------
    tune_captions = _via("captions", Captions.tune_captions)
    set_captions = _via("captions", Captions.set_captions)

    # -- packs ---------------------------------------------------------------------------------
    create_pack = _via("packs", Packs.create_pack)
    update_pack = _via("packs", Packs.update_pack)
    delete_pack = _via("packs", Packs.delete_pack)
    get_pack = _via("packs", Packs.get_pack)
    list_packs = _via("packs", Packs.list_packs)
    add_pack_prompt = _via("packs", Packs.add_pack_prompt)
    add_prompt_to_pack = _via("packs", Packs.add_prompt_to_pack)
    edit_pack_prompt = _via("packs", Packs.edit_pack_prompt)
    reorder_pack_prompts = _via("packs", Packs.reorder_pack_prompts)
    remove_pack_prompt = _via("packs", Packs.remove_pack_prompt)
    get_pack_prompt = _via("packs", Packs.get_pack_prompt)
    pack_prompt_rankings = _via("packs", Packs.pack_prompt_rankings)
    lint_pack = _via("packs", Packs.lint_pack)
    export_pack = _via("packs", Packs.export_pack)
    import_pack = _via("packs", Packs.import_pack)
    tune_from_pack = _via("packs", Packs.tune_from_pack)
    run_pack = _via("packs", Packs.run_pack)

    # -- likes and rankings --------------------------------------------------------------------
    like_prompt = _via("likes", Likes.like_prompt)
    unlike_prompt = _via("likes", Likes.unlike_prompt)
    prompt_rankings = _via("likes", Likes.prompt_rankings)
    gallery = _via("likes", Likes.gallery)
    prompt_images = _via("likes", Likes.prompt_images)

    # -- what clients are shown: records, Astria's JSON, file URLs -----------------------------
    get_prompt = _via("views", Views.get_prompt)
    tune_json = _via("views", Views.tune_json)
    prompt_json = _via("views", Views.prompt_json)
    prompts_json = _via("views", Views.prompts_json)
    pack_json = _via("views", Views.pack_json)
    public_base_url = _via("views", Views.public_base_url)
    file_url = _via("views", Views.file_url)
    public_path = _via("views", Views.public_path)
    public_image = _via("views", Views.public_image)

    # -- API keys ------------------------------------------------------------------------------
    create_api_key = _via("keys", ApiKeys.create_api_key)
    list_api_keys = _via("keys", ApiKeys.list_api_keys)
    revoke_api_key = _via("keys", ApiKeys.revoke_api_key)
    api_key_user = _via("keys", ApiKeys.api_key_user)
    keyless_allowed = _via("keys", ApiKeys.keyless_allowed)
