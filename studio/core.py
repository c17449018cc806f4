"""Studio: the one application layer. The UI and the REST API call only this.

A `Studio` owns the store, the file store and (lazily) the engine. It is built once in
`app.py` with `Studio.open(settings)` and passed to whatever needs it; nothing here is global.
Domain logic lives in the modules named after it (prompts, inspection, training, packs, jobs);
the methods here tie those to storage and turn bad input into `StudioError`s.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from storage import FileStore, Store
from studio.config import Settings
from studio.errors import NotFound

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_SOURCE = "embedded:demo"


class Studio:
    def __init__(self, settings: Settings, store: Store, files: FileStore):
        self.settings = settings
        self.store = store
        self.files = files
        self._engine = None
        self._engine_lock = threading.Lock()

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
        return studio

    def close(self) -> None:
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
        """Do the slow start-up work: build the embedded demo model on first start."""
        from studio.demo_model import ensure_demo_model

        ensure_demo_model(self.demo_model_dir)

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
        return {"id": None, "title": wanted, "family": "sd15", "source": wanted, "embedded": False, "available": True}

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
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "model_index.json")
        return isinstance(cached, str)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the Settings/status view shows: where data lives, which model and device."""
        base = self.default_base_model()
        return {
            "home": str(self.home),
            "base_model": base["title"],
            "demo_model": base["source"] == DEMO_SOURCE,
            "device": self.settings.device,
            "api_keys": len(self.settings.api_keys),
            "auth": bool(self.settings.auth),
        }
