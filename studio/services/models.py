"""Base models: the gallery (assets/base_models.json, Astria's ids), which of them can run
here, the default one (STUDIO_BASE_MODEL), and where each family's adapters live."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from storage import Store
from studio.config import Settings
from studio.domain import RUNNABLE_FAMILIES
from studio.errors import ModelNotAvailable, NotFound

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
DEMO_SOURCE = "embedded:demo"
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


class BaseModels:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store

    @property
    def demo_model_dir(self) -> Path:
        return self.settings.home.resolve() / "models" / "demo"

    def sync_gallery(self) -> None:
        """Add or update the gallery's entries from assets/base_models.json."""
        for model in json.loads((ASSETS / "base_models.json").read_text()):
            self.store.upsert_base_model(model)

    def prepare(self) -> None:
        """Do the slow start-up work: build the embedded demo model on first start. A default
        base model (STUDIO_BASE_MODEL) that cannot load here is logged, not raised: the studio
        still serves the demo model and the gallery, and prompts on it fail with the reason."""
        from studio.demo_model import ensure_demo_model

        ensure_demo_model(self.demo_model_dir)
        base = self.default_base_model()
        reason = self.why_not_here(base) if base["source"] != DEMO_SOURCE else None
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
        if model["family"] not in RUNNABLE_FAMILIES:
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

    def why_not_here(self, model: dict[str, Any]) -> str | None:
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

    def prompt_base(self, tune: dict[str, Any]) -> dict[str, Any]:
        """The gallery base model a prompt on `tune` runs on; Unavailable when it cannot run
        here (a family other than SD 1.5/SDXL, a local path that is gone, or not downloaded
        while the hub is off)."""
        if tune["model_type"] == "checkpoint":
            model = self.base_model(tune["id"])
        elif tune.get("base_tune_id"):
            model = self.base_model(tune["base_tune_id"])
        else:
            model = self.default_base_model()
        if model["family"] not in RUNNABLE_FAMILIES:
            raise ModelNotAvailable(
                f"{model['title']} is a {model['family']} model; this studio runs SD 1.5 and SDXL only. "
                "Pick another base model (or use branch=fast for the demo model).",
                field="tune_id",
            )
        if model["source"] == DEMO_SOURCE:
            from studio.demo_model import ensure_demo_model

            ensure_demo_model(self.demo_model_dir)
        elif reason := self.why_not_here(model):
            raise ModelNotAvailable(f"{reason}, or pick the demo model.", field="tune_id")
        return model

    def adapter_sources(self, base: dict[str, Any]) -> dict[str, Any]:
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

    def native_resolution(self, base: dict) -> int:
        """The image side the base model was trained at: its UNet's sample size times 8 for a
        local folder, else the family's (512 for SD 1.5, 1024 for SDXL)."""
        config = Path(self.model_path(base)) / "unet" / "config.json"
        if config.is_file():
            return int(json.loads(config.read_text())["sample_size"]) * 8
        return 1024 if base["family"] == "sdxl" else 512


def _local_source(source: str) -> bool:
    """True when a base model's source names a local folder or file rather than a hub id
    (owner/name), as the engine tells them apart."""
    return source.startswith(("/", ".", "~")) or source.endswith(".safetensors") or source.count("/") != 1
